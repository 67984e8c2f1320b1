"""The 26 Atari 100k games: ALE ids, legal (minimal) action sets and reference scores.

The random and human scores are the standard DQN-era table used by IRIS, DreamerV3 and STORM
(see shared/reference/atari100k-reference-scores.md). The PPO scores are what the standard Atari
PPO reaches after 10M agent steps = 40M frames (CleanRL's published benchmark of
``ppo_atari_envpool_xla_jax``; see shared/reference/ppo-reference-scores.md): how strong an expert
should be, under a protocol that differs from scaleworld's (sticky actions, 84x84), so a yardstick
rather than a target. All three are for comparison with published work; scaleworld's own
normalisation uses random and expert scores measured under its own protocol.

`needs_fire`: the game does not start until FIRE is pressed, measured with ALE by
tools/probe_fire.py (2,000 agent steps of NOOP from reset: no reward, life loss or game end;
with one FIRE first, a life is lost). Of the 26 games only Breakout; tests/test_games.py checks
Breakout and Pong against ALE.
Minimal action sets are ids in ALE's full 18-action space; `tests/test_games.py` checks them
against ALE itself so the table cannot silently drift from the ROMs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from scaleworld.errors import ScaleworldError

NUM_ACTIONS = 18  # ALE's full action space; stored data always uses these ids
ACTION_NAMES = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT",
    "DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE",
    "DOWNRIGHTFIRE", "DOWNLEFTFIRE",
)  # fmt: skip
_ALL = tuple(range(NUM_ACTIONS))


@dataclass(frozen=True)
class Game:
    """One Atari 100k game.

    `name` is the CamelCase name used everywhere in scaleworld (CLI, specs, manifests);
    `rom` is ALE's ROM id (what `ale_py.AtariVectorEnv` takes); `legal_actions` are the
    ids of the game's minimal action set in the full 18-action space.
    """

    name: str
    rom: str
    legal_actions: tuple[int, ...]
    random_score: float
    human_score: float
    ppo_score: float
    """PPO after 10M agent steps (CleanRL's benchmark): the reference an expert is measured against."""
    needs_fire: bool = False
    """The game waits for FIRE at the start (PPO presses it there for learning; see experts/train_env.py)."""

    @property
    def ale_id(self) -> str:
        """The gymnasium id, e.g. ``ALE/Pong-v5`` (scaleworld overrides all of its defaults)."""
        return f"ALE/{self.name}-v5"

    def action_mask(self) -> list[bool]:
        """Legal-action mask over the full 18-action space."""
        return [a in self.legal_actions for a in range(NUM_ACTIONS)]


GAMES: dict[str, Game] = {
    g.name: g
    for g in (
        Game("Alien", "alien", _ALL, 227.8, 7127.7, 1745.0),
        Game("Amidar", "amidar", (0, 1, 2, 3, 4, 5, 10, 11, 12, 13), 5.8, 1719.5, 617.0),
        Game("Assault", "assault", (0, 1, 2, 3, 4, 11, 12), 222.4, 742.0, 5734.0),
        Game("Asterix", "asterix", (0, 2, 3, 4, 5, 6, 7, 8, 9), 210.0, 8503.3, 3342.0),
        Game("BankHeist", "bank_heist", _ALL, 14.2, 753.1, 1193.0),
        Game("BattleZone", "battle_zone", _ALL, 2360.0, 37187.5, 24938.0),
        Game("Boxing", "boxing", _ALL, 0.1, 12.1, 92.1),
        Game("Breakout", "breakout", (0, 1, 3, 4), 1.7, 30.5, 432.0, needs_fire=True),
        Game("ChopperCommand", "chopper_command", _ALL, 811.0, 7387.8, 5556.0),
        Game("CrazyClimber", "crazy_climber", (0, 2, 3, 4, 5, 6, 7, 8, 9), 10780.5, 35829.4, 116114.0),
        Game("DemonAttack", "demon_attack", (0, 1, 3, 4, 11, 12), 152.1, 1971.0, 22825.0),
        Game("Freeway", "freeway", (0, 2, 5), 0.0, 29.6, 33.1),
        Game("Frostbite", "frostbite", _ALL, 65.2, 4334.7, 904.0),
        Game("Gopher", "gopher", (0, 1, 2, 3, 4, 10, 11, 12), 257.6, 2412.5, 11370.0),
        Game("Hero", "hero", _ALL, 1027.0, 30826.4, 24628.0),
        Game("Jamesbond", "jamesbond", _ALL, 29.0, 302.8, 504.0),
        Game("Kangaroo", "kangaroo", _ALL, 52.0, 3035.0, 7282.0),
        Game("Krull", "krull", _ALL, 1598.0, 2665.5, 9385.0),
        Game("KungFuMaster", "kung_fu_master", (0, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17),
             258.5, 22736.3, 26595.0),
        Game("MsPacman", "ms_pacman", (0, 2, 3, 4, 5, 6, 7, 8, 9), 307.3, 6951.6, 2462.0),
        Game("Pong", "pong", (0, 1, 3, 4, 11, 12), -20.7, 14.6, 20.3),
        Game("PrivateEye", "private_eye", _ALL, 24.9, 69571.3, 99.5),
        Game("Qbert", "qbert", (0, 1, 2, 3, 4, 5), 163.9, 13455.0, 16431.0),
        Game("RoadRunner", "road_runner", _ALL, 11.5, 7845.0, 19342.0),
        Game("Seaquest", "seaquest", _ALL, 68.4, 42054.7, 1230.0),
        Game("UpNDown", "up_n_down", (0, 1, 2, 5, 10, 13), 533.4, 11693.2, 430177.0),
    )
}


def get_game(name: str) -> Game:
    """Look a game up by name (case-insensitive); unknown names raise a one-line error."""
    if name in GAMES:
        return GAMES[name]
    by_lower = {g.lower(): g for g in GAMES}
    if name.lower() in by_lower:
        return GAMES[by_lower[name.lower()]]
    close = difflib.get_close_matches(name, list(GAMES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ScaleworldError(
        f"unknown game {name!r}: {hint}valid games are {', '.join(GAMES)}"
    )
