"""Policies from imagination in the real game: training from real held-out contexts, control
scores under the protocol, anchors and normalisation; exact resumption of a policy run."""

import json

import pytest
import torch

from scaleworld.atari.protocol import Protocol
from scaleworld.data.dataset import OfflineDataset
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.control import WorldModelAgent, evaluate_control, measure_anchors, normalise
from scaleworld.evaluation.scores import score_policy
from scaleworld.imagination.config import policy_train_config
from scaleworld.imagination.core import StartContexts
from scaleworld.imagination.train import train_in_imagination, train_policy
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.models.model_files import load_dynamics, load_policy, load_tokenizer
from scaleworld.models.policy_config import PolicyConfig
from scaleworld.training.config import TrainConfig
from scaleworld.training.runs import train_dynamics
from tests.conftest import SHORT
from tests.handbuilt import action_reward_model, start_contexts

POLICY = PolicyConfig(horizon=4, context_steps=3, units=32, layers=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, breakout_tokens):
    out = tmp_path_factory.mktemp("world")
    train_dynamics(token_dirs=[breakout_tokens], out=out / "dynamics",
                   model=DynamicsConfig(width=32, depth=1, heads=2, context=8),
                   train=TrainConfig(steps=4, batch_size=4, eval_every=4, checkpoint_every=4),
                   val_fraction=0.3, progress=False)
    train_policy(dynamics_dir=out / "dynamics", token_dir=breakout_tokens, out=out / "policy", config=POLICY,
                 train=policy_train_config(steps=3, batch_size=16, eval_every=3, checkpoint_every=3), progress=False)
    return out


def test_a_policy_trained_in_imagination_is_scored_in_the_real_game_under_the_frame_cap(
        world, frozen_tokenizer, tmp_path):
    agent, identity = load_policy(world / "policy")
    assert identity["game"] == "Breakout" and identity["policy"]["context_steps"] == 3
    cap = Protocol(max_episode_frames=400, noop_max=0)  # no-op starts would take frames of the cap
    anchors = measure_anchors(game="Breakout", protocol=cap, episodes=2, seed=0, num_envs=2, upper="human")
    record = evaluate_control(policy_dir=world / "policy", dynamics_dir=world / "dynamics",
                              tokenizer_dir=frozen_tokenizer, anchors=anchors, episodes=3, protocol=cap,
                              num_envs=2, out=tmp_path / "control.json")
    assert len(record["returns"]) == len(record["lengths"]) == 3
    assert all(1 <= n <= 100 for n in record["lengths"])  # 400 frames / frame skip 4
    assert 100 in record["lengths"]  # an untrained policy does not lose 5 lives in 100 steps every time
    assert record["normalised"]["upper_kind"] == "human"
    assert record["normalised"]["random_score"] == anchors["random"]["score"]
    assert json.loads((tmp_path / "control.json").read_text())["normalised"] == record["normalised"]
    # seeded: the same evaluation again gives the same episodes
    again = evaluate_control(policy_dir=world / "policy", dynamics_dir=world / "dynamics",
                             tokenizer_dir=frozen_tokenizer, anchors=anchors, episodes=3, protocol=cap, num_envs=2)
    assert again["returns"] == record["returns"] and again["lengths"] == record["lengths"]


def test_normalisation_arithmetic_and_the_anchor_it_names():
    anchors = {"random": {"score": 2.0}, "upper": {"score": 12.0, "kind": "expert"}}
    n = normalise([2.0, 7.0, 12.0, 22.0, -3.0], anchors)
    assert n["returns"] == [0.0, 0.5, 1.0, 2.0, -0.5]
    assert n["mean"] == pytest.approx(0.6)
    assert (n["random_score"], n["upper_score"], n["upper_kind"]) == (2.0, 12.0, "expert")


def test_anchors_refuse_a_missing_or_mismatched_expert_score():
    with pytest.raises(ScaleworldError, match="upper_anchor=human"):
        measure_anchors(game="Pong", protocol=SHORT, episodes=1, seed=0, num_envs=1, upper="expert")
    other = {"protocol": {**SHORT.to_dict(), "noop_max": 30}, "mean": 3.0}
    with pytest.raises(ScaleworldError, match="another protocol"):
        measure_anchors(game="Pong", protocol=SHORT, episodes=1, seed=0, num_envs=1, upper="expert",
                        expert_record=other)
    with pytest.raises(ScaleworldError, match="upper anchor 'best'"):
        measure_anchors(game="Pong", protocol=SHORT, episodes=1, seed=0, num_envs=1, upper="best")


def test_start_windows_begin_at_every_held_out_frame_with_the_history_it_has(breakout_tokens):
    ds = OfflineDataset.open(breakout_tokens)
    episodes = torch.arange(len(ds.episode_lengths))
    starts = StartContexts.from_dataset(ds, episodes, steps=4, game=None)
    rows = torch.cat([torch.arange(int(ds.episode_starts[e]), int(ds.episode_starts[e] + ds.episode_lengths[e]))
                      for e in episodes])  # the held-out rows, in StartContexts' order
    first_frames = (starts.starts + starts.history).sort().values
    assert torch.equal(first_frames, torch.arange(len(rows)))  # every frame is a first frame exactly once
    position = torch.cat([torch.arange(int(n)) for n in ds.episode_lengths])  # each frame's step in its episode
    assert torch.equal(starts.history, position[starts.starts + starts.history].clamp(max=3))


def test_imagination_starts_from_the_split_it_is_told(world, breakout_tokens, tmp_path):
    """held_out starts at every frame of the model's held-out episodes, train at every frame of its
    training episodes, all at both; the run record says which; an unknown split is refused."""
    from scaleworld.data.sampling import split_episodes
    from scaleworld.models.model_files import load_dynamics

    _, identity = load_dynamics(world / "dynamics")
    ds = OfflineDataset.open(breakout_tokens)
    train_eps, val = split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                                    seed=identity["split_seed"])
    frames = {"held_out": int(ds.episode_lengths[val].sum()), "train": int(ds.episode_lengths[train_eps].sum())}
    frames["all"] = frames["held_out"] + frames["train"]
    run = json.loads((world / "policy" / "run.json").read_text())  # the default: all episodes
    assert (run["starts"], run["start_windows"]) == ("all", frames["all"])
    for split in ("held_out", "train"):
        info = train_policy(dynamics_dir=world / "dynamics", token_dir=breakout_tokens, out=tmp_path / split,
                            config=POLICY, train=policy_train_config(steps=1, batch_size=4), starts=split,
                            progress=False)
        assert (info["starts"], info["start_windows"]) == (split, frames[split])
    with pytest.raises(ScaleworldError, match="starts='val': use one of held_out, train, all"):
        train_policy(dynamics_dir=world / "dynamics", token_dir=breakout_tokens, out=tmp_path / "x", config=POLICY,
                     train=policy_train_config(steps=1, batch_size=4), starts="val")


def test_a_policy_needs_its_world_models_game_and_a_context_the_model_holds(world, pong_tokens, breakout_tokens,
                                                                             tmp_path):
    with pytest.raises(ScaleworldError, match="trained on \\['Breakout'\\], not Pong"):
        train_policy(dynamics_dir=world / "dynamics", token_dir=pong_tokens, out=tmp_path / "p", config=POLICY,
                     train=policy_train_config(steps=1, batch_size=2))
    with pytest.raises(ScaleworldError, match="context_steps=500 exceeds the model's context"):
        train_policy(dynamics_dir=world / "dynamics", token_dir=breakout_tokens, out=tmp_path / "q",
                     config=PolicyConfig(context_steps=500), train=policy_train_config(steps=1, batch_size=2))


def test_a_resumed_policy_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    config = PolicyConfig(horizon=4, context_steps=2, units=16, layers=1)
    train = policy_train_config(steps=8, batch_size=8, lr=1e-3, eval_every=4, checkpoint_every=4)
    whole, _ = train_in_imagination(action_reward_model(), start_contexts(), config=config, train=train,
                                    out=tmp_path / "whole", progress=False)

    from scaleworld.imagination.core import Imagination

    original = Imagination.rollout
    calls = {"n": 0}

    def crash_on_call_7(self, policy, horizon):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("killed")
        return original(self, policy, horizon)

    Imagination.rollout = crash_on_call_7
    try:
        with pytest.raises(KeyboardInterrupt):
            train_in_imagination(action_reward_model(), start_contexts(), config=config, train=train,
                                 out=tmp_path / "split", progress=False)
    finally:
        Imagination.rollout = original
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["step"] == 4
    split, _ = train_in_imagination(action_reward_model(), start_contexts(), config=config, train=train,
                                    out=tmp_path / "split", progress=False)
    for (name, a), (_, b) in zip(whole.state_dict().items(), split.state_dict().items()):
        assert torch.equal(a, b), name


def test_policy_commands_train_and_score_and_name_bad_folders(world, breakout_tokens, frozen_tokenizer, tmp_path):
    import subprocess
    import sys

    def sw(*args):
        return subprocess.run([sys.executable, "-m", "scaleworld.cli", *map(str, args)], capture_output=True,
                              text=True)

    train = sw("policy", "train", "--dynamics", world / "dynamics", "--tokens", breakout_tokens, "--out",
               tmp_path / "p", "--steps", 2, "--batch-size", 4, "--horizon", 2, "--context-steps", 2, "--units", 8,
               "--layers", 1, "--device", "cpu", "--no-progress")
    assert train.returncode == 0, train.stderr
    assert "wrote" in train.stdout and (tmp_path / "p" / "policy.pt").is_file()
    score = sw("policy", "eval", "--policy", tmp_path / "p", "--dynamics", world / "dynamics", "--tokenizer",
               frozen_tokenizer, "--episodes", 1, "--envs", 1, "--anchor-episodes", 1, "--protocol",
               "max_episode_frames=200", "--out", tmp_path / "c.json")
    assert score.returncode == 0, score.stderr
    assert json.loads((tmp_path / "c.json").read_text())["normalised"]["upper_kind"] == "human"
    wrong = sw("policy", "eval", "--policy", tmp_path / "p", "--dynamics", frozen_tokenizer, "--tokenizer",
               frozen_tokenizer)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        f"error: {frozen_tokenizer}/dynamics.pt: no trained dynamics here (train it first, or check the folder)"]


def test_a_policy_refuses_another_tokenizer_and_a_run_folder_refuses_other_settings(world, tmp_path):
    from scaleworld.models.model_files import TOKENIZER_FILE, save_model
    from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(1)
    config = TokenizerConfig(channels=(8, 16, 32, 32))
    save_model(tmp_path / TOKENIZER_FILE, kind="tokenizer", config=config.to_dict(), module=Tokenizer(config),
               extra={"scope": "test", "games": []})
    anchors = {"game": "Breakout", "protocol": SHORT.to_dict(), "random": {"score": 0.0},
               "upper": {"score": 1.0, "kind": "human"}}
    with pytest.raises(ScaleworldError, match="tokens of another tokenizer"):
        evaluate_control(policy_dir=world / "policy", dynamics_dir=world / "dynamics", tokenizer_dir=tmp_path,
                         anchors=anchors, episodes=1, protocol=SHORT)
    train = policy_train_config(steps=2, batch_size=4, checkpoint_every=1)
    config = PolicyConfig(horizon=2, context_steps=2, units=8, layers=1)
    train_in_imagination(action_reward_model(), start_contexts(), config=config, train=train, out=tmp_path / "run",
                         progress=False)
    with pytest.raises(ScaleworldError, match=r"other settings \(policy.gamma: 0.985 in the checkpoint, 0.9 now"):
        train_in_imagination(action_reward_model(), start_contexts(), config=PolicyConfig(
            horizon=2, context_steps=2, units=8, layers=1, gamma=0.9), train=train, out=tmp_path / "run",
            progress=False)


def test_one_world_model_agent_scores_twice_as_two_fresh_runs(world, frozen_tokenizer):
    """Its KV-cache histories are named in the tensordict: a run that gives none (a new `score_policy`)
    starts every row afresh, so reusing the agent changes nothing, no-op starts (rows not yet is_init)
    included."""
    agent, _ = load_policy(world / "policy")
    model, _ = load_dynamics(world / "dynamics")
    tokenizer, _ = load_tokenizer(frozen_tokenizer)
    player = WorldModelAgent(tokenizer=tokenizer, model=model, agent=agent, game="Breakout", greedy=True)
    noops = Protocol(max_episode_frames=200, noop_max=6)
    first, second = (score_policy(game="Breakout", policy=player, policy_identity={}, episodes=3, protocol=noops,
                                  num_envs=2) for _ in range(2))
    assert first["returns"] == second["returns"] and first["lengths"] == second["lengths"]


def test_off_cuda_imagination_trains_on_the_eager_rollout(tmp_path, monkeypatch):
    """train_in_imagination wraps the imagination in a GraphedRollout on CUDA only: on a CPU it
    must never build one (it would refuse the device)."""
    import scaleworld.imagination.train as training

    def refuse(*args, **kwargs):
        raise AssertionError("a GraphedRollout was built off CUDA")

    monkeypatch.setattr(training, "GraphedRollout", refuse)
    train = policy_train_config(steps=1, batch_size=4, checkpoint_every=1)
    config = PolicyConfig(horizon=2, context_steps=2, units=8, layers=1)
    _, final = train_in_imagination(action_reward_model(), start_contexts(), config=config, train=train,
                                    out=tmp_path / "run", progress=False)
    assert "metric_return" in final
