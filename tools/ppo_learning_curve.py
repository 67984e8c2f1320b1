"""A PPO learning curve for one game at a budget that fits, against the random policy and the reference.

Trains `train_ppo` with the standard settings (PPOConfig: CleanRL ppo_atari's, learning-only
episodic life and FIRE) for --agent-steps, then prints the raw return of the protocol's episodes
that ended in each tenth of the budget, next to the random policy's score measured here under the
same protocol and the published PPO figure at 10M agent steps (the game table). The learning-rate
schedule anneals over the budget given, so a short run is not the first part of a 10M-step run:
it answers "does the expert learn, and how fast", not "is it as good as the reference yet".

The last figure, share of PPO = (late return - random) / (PPO reference - random), is the
report's yardstick for experts (`scaleworld.evaluation.control.expert_quality`).

Usage: .venv/bin/python tools/ppo_learning_curve.py --game Boxing --agent-steps 100000
       [--envs 8] [--device cpu|cuda] [--random-episodes 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402

from scaleworld.atari.games import get_game  # noqa: E402
from scaleworld.data.random_policy import RandomPolicy  # noqa: E402
from scaleworld.evaluation.scores import score_policy  # noqa: E402
from scaleworld.experts.ppo import PPOConfig, train_ppo  # noqa: E402
from scaleworld.experts.tasks import AtariTask  # noqa: E402


def curve(run: Path, total_frames: int, bins: int = 10) -> list[tuple[int, int, float]]:
    """(end frame of the bin, episodes, mean raw return) for each bin of the budget that saw episodes end."""
    with open(run / "training" / "episodes.csv", newline="") as f:
        rows = [(int(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
    out = []
    for b in range(bins):
        lo, hi = total_frames * b / bins, total_frames * (b + 1) / bins
        returns = [ret for frames, ret in rows if lo < frames <= hi]
        if returns:
            out.append((int(hi), len(returns), float(np.mean(returns))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Boxing")
    parser.add_argument("--agent-steps", type=int, default=100_000)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the run folder here (default: a temporary one)")
    args = parser.parse_args()
    task, game = AtariTask(game=args.game), get_game(args.game)
    config = PPOConfig(agent_steps=args.agent_steps, num_envs=args.envs, seed=args.seed, checkpoint_every=10**6)
    random = score_policy(game=game, policy=RandomPolicy(seed=args.seed), policy_identity={"kind": "random"},
                          episodes=args.random_episodes, protocol=task.protocol, seed=args.seed, num_envs=args.envs)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.out or tmp)
        start = time.perf_counter()
        result = train_ppo(task, config, run, device=args.device, progress=False)
        seconds = time.perf_counter() - start
        points = curve(run, result.frames_done)
    r = random["mean"]
    print(f"{args.game}: PPO for {result.frames_done // task.frames_per_step:,} agent steps = "
          f"{result.frames_done:,} frames on {args.device} in {seconds:.0f} s "
          f"({result.frames_done / seconds:.0f} frames/s)")
    print(f"  random policy (measured here, {args.random_episodes} episodes): {r:.1f} +- {random['sem']:.1f}; "
          f"PPO reference at 40M frames: {game.ppo_score:g}; human {game.human_score:g}")
    print("  frames     episodes  mean return   share of PPO")
    for frames, n, mean in points:
        print(f"  {frames:>9,}  {n:8d}  {mean:11.1f}   {(mean - r) / (game.ppo_score - r):12.3f}")


if __name__ == "__main__":
    main()
