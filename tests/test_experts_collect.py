"""The expert anchor and collection: scores stored beside the checkpoint, identities in manifests,
and the collection policy (sampled, greedy, epsilon-uniform over legal actions)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from scaleworld.atari.games import get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.cli.experts import add_expert_parser
from scaleworld.data.collect import collect_dataset
from scaleworld.data.dataset import OfflineDataset, verify_dataset
from scaleworld.errors import ScaleworldError
from scaleworld.experts.anchor import score_expert
from scaleworld.experts.checkpoint import load_expert, save_expert
from scaleworld.experts.policies import make_policy
from scaleworld.experts.tasks import AtariTask

SHORT = Protocol(max_episode_frames=200, noop_max=8)
TASK = AtariTask(game="Pong", protocol=SHORT)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory):
    """A Pong expert in the checkpoint format: PPO's actor-critic, freshly initialised (seed 7)."""
    path = tmp_path_factory.mktemp("expert") / "pong"
    model = TASK.make_network(seed=7)
    save_expert(path, module=model.logits_module(), game="Pong", view=TASK.view_spec, actions=TASK.actions,
                protocol=SHORT, provenance={"trainer": "test"})
    return path


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    """Another Pong expert: the same architecture with other weights (seed 8)."""
    path = tmp_path_factory.mktemp("expert") / "other"
    save_expert(path, module=TASK.make_network(seed=8).logits_module(), game="Pong", view=TASK.view_spec,
                actions=TASK.actions)
    return path


def batch(game: str, n: int, seed: int = 0) -> TensorDict:
    """n observations of random pixels, all first of their episode, with the game's legal mask."""
    pixels = torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    mask = torch.tensor(get_game(game).action_mask()).expand(n, -1)
    return TensorDict({"pixels": pixels, "action_mask": mask, "is_init": torch.ones(n, dtype=torch.bool)}, [n])


def test_score_is_stored_beside_the_checkpoint_and_collection_records_it(expert_dir, tmp_path):
    record = score_expert(expert_dir, episodes=3, num_envs=3, seed=2)
    stored = json.loads((expert_dir / "score.json").read_text())
    assert stored["returns"] == record["returns"] and len(record["returns"]) == 3
    assert stored["protocol"] == SHORT.to_dict()  # scored under the protocol it was trained for
    assert stored["policy"]["kind"] == "expert" and stored["policy"]["sampling"] == "sample"

    policy = make_policy(str(expert_dir), seed=4, epsilon=0.05)
    manifest = collect_dataset(game="Pong", policy=policy, policy_identity=policy.identity, steps=150,
                               out=tmp_path / "ds", protocol=SHORT, seed=4, num_envs=3, progress=False)
    recorded = manifest["policy"]
    assert recorded["kind"] == "expert" and recorded["sha256"] == stored["policy"]["sha256"]
    assert recorded["path"] == str(expert_dir.resolve())
    assert (recorded["sampling"], recorded["epsilon"], recorded["seed"]) == ("sample", 0.05, 4)
    assert recorded["score"]["mean"] == pytest.approx(np.mean(record["returns"]))
    assert recorded["score"]["episodes"] == 3 and recorded["score"]["epsilon"] == 0.0
    assert verify_dataset(tmp_path / "ds")["policy"] == recorded
    actions = OfflineDataset.open(tmp_path / "ds").data["action"].unique()
    assert set(actions.tolist()) <= set(get_game("Pong").legal_actions)


def test_a_score_of_another_program_is_not_attributed(expert_dir, other_dir):
    measured_for = load_expert(expert_dir).identity["sha256"]  # a score.json copied from another expert
    (other_dir / "score.json").write_text(json.dumps({"mean": 1.0, "policy": {"sha256": measured_for}}))
    assert load_expert(other_dir).identity["score"] is None


def test_epsilon_one_is_uniform_over_legal_actions(expert_dir, other_dir):
    legal = get_game("Breakout").legal_actions  # (0, 1, 3, 4): the Pong expert's 11 and 12 are illegal here
    a = load_expert(expert_dir, seed=3, epsilon=1.0)
    b = load_expert(other_dir, seed=3, epsilon=1.0)
    draws = []
    for i in range(10):
        x = a(batch("Breakout", 200, seed=i))["action"]
        assert torch.equal(x, b(batch("Breakout", 200, seed=i))["action"])  # the network plays no part
        draws.append(x)
    counts = np.bincount(torch.cat(draws).numpy(), minlength=18)
    assert set(np.flatnonzero(counts)) == set(legal)
    expected = 2000 / len(legal)  # 500 each; 5 standard deviations is about 97
    assert np.all(np.abs(counts[list(legal)] - expected) < 5 * np.sqrt(expected * (1 - 1 / len(legal))))


def test_sampled_and_greedy_actions_follow_the_expert_and_the_mask(expert_dir):
    td = load_expert(expert_dir, sampling="greedy")(batch("Pong", 64))
    assert torch.equal(td["action"], td["logits"].argmax(-1))
    assert torch.isinf(td["logits"][:, [a for a in range(18) if a not in TASK.actions]]).all()
    sampled = load_expert(expert_dir, seed=0)
    actions = torch.cat([sampled(batch("Breakout", 500, seed=i))["action"] for i in range(4)])
    # legal in Breakout and known to the Pong expert: NOOP, FIRE, RIGHT, LEFT (an untrained net: all used)
    assert set(actions.unique().tolist()) == {0, 1, 3, 4}
    mask = torch.tensor(get_game("Freeway").action_mask())
    mask[0] = False  # Freeway's legal actions are NOOP, UP, DOWN; without NOOP none is the expert's
    with pytest.raises(ScaleworldError, match=r"none of the expert's actions .* is legal in this game: .*for Pong"):
        sampled(TensorDict({**batch("Pong", 2).to_dict(), "action_mask": mask.expand(2, -1)}, [2]))
    with pytest.raises(ScaleworldError, match=r"epsilon=1\.5 must be in \[0, 1\]"):
        load_expert(expert_dir, epsilon=1.5)


def test_expert_eval_command(expert_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_expert_parser(parser.add_subparsers(dest="group"), protocol_help="protocol override")
    args = parser.parse_args(["expert", "eval", str(expert_dir), "--episodes", "2", "--envs", "2",
                              "--out", str(tmp_path / "s.json")])
    args.func(args)
    assert "mean" in capsys.readouterr().out and json.loads((tmp_path / "s.json").read_text())["episodes"] == 2
    args = parser.parse_args(["expert", "train", "--game", "Pongg", "--frames", "10", "--out", str(tmp_path)])
    with pytest.raises(ScaleworldError, match="unknown game 'Pongg'"):
        args.func(args)


def test_acting_carries_a_policys_state_from_next_but_the_new_observation_wins():
    """`Acting` moves what a policy writes under "next" to the root of its next input, as step_mdp does;
    an entry named like an observation key never hides the new observation."""
    from scaleworld.atari.envs import VectorAtari
    from scaleworld.data.collect import Acting

    seen = []

    def counting(td):  # a policy keeping a step count in the tensordict, and writing a stale frame under "next"
        seen.append((int(td.get("count", torch.zeros(2, dtype=torch.int64))[0]), td["pixels"].clone()))
        td["action"] = torch.zeros(2, dtype=torch.int64)
        td["next"] = TensorDict({"count": td.get("count", torch.zeros(2, dtype=torch.int64)) + 1,
                                 "pixels": torch.zeros_like(td["pixels"])}, batch_size=[2])
        return td

    acting = Acting(counting, get_game("Pong"))
    with VectorAtari("Pong", 2, protocol=Protocol(noop_max=0)) as env:
        state = env.reset(seed=0)
        for _ in range(3):
            frame = torch.from_numpy(state.obs.copy())
            state = env.step(acting(state))
            assert torch.equal(seen[-1][1], frame)  # the real frame, not the carried zeros
    assert [count for count, _ in seen] == [0, 1, 2]
