import ale_py
import pytest

from scaleworld.atari.games import GAMES, NUM_ACTIONS, get_game
from scaleworld.errors import ScaleworldError


def test_table_has_the_26_games_with_reference_scores():
    assert len(GAMES) == 26
    assert (GAMES["Alien"].random_score, GAMES["Alien"].human_score) == (227.8, 7127.7)
    assert (GAMES["Pong"].random_score, GAMES["Pong"].human_score) == (-20.7, 14.6)
    assert all(g.human_score > g.random_score for g in GAMES.values())


@pytest.mark.parametrize("name", sorted(GAMES))
def test_every_game_loads_and_its_minimal_action_set_matches_ale(name):
    game = GAMES[name]
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.loadROM(ale_py.roms.get_rom_path(game.rom))
    assert tuple(a.value for a in ale.getMinimalActionSet()) == game.legal_actions
    assert len(ale.getLegalActionSet()) == NUM_ACTIONS
    assert sum(game.action_mask()) == len(game.legal_actions)


def test_lookup_is_case_insensitive_and_unknown_names_list_valid_ones():
    assert get_game("pong").name == "Pong"
    with pytest.raises(ScaleworldError, match="did you mean 'Pong'.*valid games are Alien,"):
        get_game("Pongg")


def test_needs_fire_matches_ale_for_a_game_that_waits_and_one_that_does_not():
    from scaleworld.atari.envs import events_after_reset

    assert [g.name for g in GAMES.values() if g.needs_fire] == ["Breakout"]  # tools/probe_fire.py over all 26
    assert events_after_reset("Breakout", steps=100, fire_first=False) == 0  # the ball is never served
    assert events_after_reset("Breakout", steps=100, fire_first=True) > 0
    assert events_after_reset("Pong", steps=100, fire_first=False) > 0  # Pong serves by itself


def test_ppo_reference_scores_are_the_published_ones():
    assert (GAMES["Pong"].ppo_score, GAMES["Breakout"].ppo_score, GAMES["Krull"].ppo_score) == (20.3, 432.0, 9385.0)
    assert all(g.ppo_score > g.random_score for g in GAMES.values())
