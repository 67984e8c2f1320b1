"""PPO on a real Atari game: a few updates, a stop with a checkpoint, a resume that finishes."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from scaleworld.atari.protocol import Protocol
from scaleworld.errors import ScaleworldError
from scaleworld.experts.checkpoint import load_expert
from scaleworld.experts.ppo import PPOConfig, train_ppo
from scaleworld.experts.ppo_logs import RunLogs
from scaleworld.experts.ppo_state import load_state
from scaleworld.experts.tasks import AtariTask

# 200-frame episodes (at most 50 agent steps) so that episodes end within a few updates
TASK = AtariTask(game="Breakout", protocol=Protocol(max_episode_frames=200, noop_max=8))
CONFIG = PPOConfig(agent_steps=6 * 4 * 32, num_envs=4, rollout_steps=32, checkpoint_every=2, seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _updates(run) -> list[int]:
    with open(run / "training" / "updates.csv", newline="") as f:
        return [int(row["update"]) for row in csv.DictReader(f)]


def test_atari_ppo_stops_resumes_and_exports_an_expert(tmp_path):
    run = tmp_path / "run"
    first = train_ppo(TASK, CONFIG, run, progress=False, stop_after=3)
    assert (first.updates_done, first.total_updates, first.finished) == (3, 6, False)
    assert load_state(run / "training")["updates_done"] == 3
    assert not (run / "expert.json").exists()  # no expert until the budget is spent
    assert _updates(run) == [0, 1, 2]
    shutil.copytree(run, tmp_path / "twin")

    with pytest.raises(ScaleworldError, match=r"other settings \(config.seed: \d+ in the checkpoint, 4 now\)"):
        train_ppo(TASK, PPOConfig(**{**CONFIG.to_dict(), "seed": 4}), run, progress=False)

    resumed = train_ppo(TASK, CONFIG, run, progress=False)
    assert (resumed.updates_done, resumed.frames_done, resumed.finished) == (6, 6 * 512, True)
    assert _updates(run) == [0, 1, 2, 3, 4, 5]  # the resumed run continued at update 3
    assert resumed.episode_returns, "200-frame episodes must end within 3 updates"
    with open(run / "training" / "episodes.csv", newline="") as f:
        episodes = list(csv.DictReader(f))
    assert all(int(e["length"]) <= 50 for e in episodes) and len(episodes) >= len(resumed.episode_returns)

    expert = load_expert(run)
    assert expert.identity["provenance"]["frames"] == 6 * 512  # both units: 128 agent steps x 4 frames
    assert expert.identity["provenance"]["agent_steps"] == 6 * 128
    assert expert.identity["provenance"]["learning_signals"]["episodic_life"] is True
    assert expert.identity["provenance"]["learning_signals"]["fire_reset"] is True  # Breakout waits for FIRE
    assert expert.identity["provenance"]["learned_on"] == "cpu"
    assert expert.identity["actions"] == list(TASK.actions)

    again = train_ppo(TASK, CONFIG, run, progress=False)  # a finished run is left as it is
    assert again.finished and again.updates_done == 6 and again.episode_returns == []
    (run / "expert.json").unlink()  # as if killed after the last checkpoint, before the export
    train_ppo(TASK, CONFIG, run, progress=False)
    assert load_expert(run).identity["provenance"]["updates"] == 6

    # resuming the same checkpoint twice gives the same weights: a resume is deterministic
    train_ppo(TASK, CONFIG, tmp_path / "twin", progress=False)
    a = load_state(run / "training")["model"]
    b = load_state(tmp_path / "twin" / "training")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_logs_drop_rows_written_after_the_resumed_checkpoint(tmp_path):
    logs = RunLogs(tmp_path, keep_updates_below=0)
    stats = dict.fromkeys(("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx",
                           "clip_fraction"), 0.0)
    for update in range(5):
        logs.episode(update=update, frames=update, env=0, ret=1.0, length=1)
        logs.update(update=update, frames=update, stats=stats, episodes=1, seconds=1.0, frames_per_s=1.0)
    logs.close()
    RunLogs(tmp_path, keep_updates_below=3).close()  # a run resumed from the checkpoint at update 3
    for name in ("episodes.csv", "updates.csv"):
        with open(tmp_path / name, newline="") as f:
            assert [int(r["update"]) for r in csv.DictReader(f)] == [0, 1, 2]
