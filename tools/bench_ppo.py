"""Benchmark PPO expert training on this machine; figures are ratios against raw env stepping here.

Frames are emulator frames (agent steps x frame skip), the unit of PPO's budget. Three figures,
all in this process, one game, N emulators:

1. raw env: `VectorAtari.step` with random legal actions (ALE + the protocol's preprocessing);
2. collection: TorchRL `Collector` over `MaskedVectorEnv` with the Nature-CNN policy (expert view,
   policy forward, TensorDict overhead), no learning;
3. PPO: `train_ppo` updates (collection + GAE + epochs x minibatches of Adam), steady state (the
   first update, which includes warm-up, is left out);
4. with --device cuda, also collection and PPO with the network on the GPU (`train_ppo(device=...)`:
   it learns and acts there, sampling with a seeded CUDA generator; the emulators stay on the
   CPU), as ratios against 1: a GPU run is meant to be limited by the emulators.

Each figure is the best of `--updates` repetitions of one update's worth of steps (envs x
rollout steps), so that a machine shared with other jobs disturbs the ratios less.

Usage: .venv/bin/python tools/bench_ppo.py [--game Pong] [--envs 8] [--rollout-steps 128]
       [--updates 4] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scaleworld.atari.envs import VectorAtari  # noqa: E402
from scaleworld.atari.games import get_game  # noqa: E402
from scaleworld.experts.ppo import PPOConfig, SampledPolicy, train_ppo  # noqa: E402
from scaleworld.experts.tasks import AtariTask  # noqa: E402
from scaleworld.experts.train_env import MaskedVectorEnv  # noqa: E402


def raw_env_frames_per_s(task: AtariTask, envs: int, steps: int, repeats: int) -> float:
    """Best of `repeats` runs of `steps` vector steps (the machine may be shared: take the least disturbed)."""
    game = get_game(task.game)
    rng = np.random.default_rng(0)
    legal = np.array(game.legal_actions)
    best = 0.0
    with VectorAtari(game, envs, protocol=task.protocol) as env:
        env.reset(seed=0)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                env.step(rng.choice(legal, size=envs))
            best = max(best, steps * envs * task.frames_per_step / (time.perf_counter() - start))
    return best


def collection_frames_per_s(task: AtariTask, envs: int, rollout_steps: int, batches: int,
                            device: str = "cpu") -> float:
    """Best batch of `batches` (after a warm-up batch); the policy acts on `device`, as in `train_ppo`."""
    from torchrl.collectors import Collector

    env = MaskedVectorEnv(task, envs, seed=0, episodic_life=True, fire_reset=task.needs_fire)
    model = task.make_network(seed=0).to(device)
    policy = SampledPolicy(model, torch.Generator(device=device).manual_seed(0))
    collector = Collector(env, policy, frames_per_batch=envs * rollout_steps, total_frames=-1,
                          env_device="cpu", policy_device=device, storing_device=device)
    iterator = iter(collector)
    next(iterator)  # warm-up
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        next(iterator)
        best = min(best, time.perf_counter() - start)
    collector.shutdown()
    return envs * rollout_steps * task.frames_per_step / best


def ppo_frames_per_s(task: AtariTask, envs: int, rollout_steps: int, updates: int, device: str = "cpu") -> float:
    """Best update of `updates` (after a warm-up update), collection included."""
    config = PPOConfig(agent_steps=10**9, num_envs=envs, rollout_steps=rollout_steps, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        train_ppo(task, config, tmp, device=device, progress=False, stop_after=updates + 1)
        with open(f"{tmp}/training/updates.csv", newline="") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)][1:]  # drop the warm-up update
    return envs * rollout_steps * task.frames_per_step / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--rollout-steps", type=int, default=128)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="also time PPO learning on this device (e.g. cuda)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = AtariTask(game=args.game)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{task.game}, {args.envs} envs, {args.rollout_steps} steps/update, 64x64 RGB -> 4x64x64 luma view, "
          "Nature CNN; frames = agent steps x 4")
    raw = raw_env_frames_per_s(task, args.envs, args.rollout_steps, args.updates)
    collect = collection_frames_per_s(task, args.envs, args.rollout_steps, args.updates)
    ppo = ppo_frames_per_s(task, args.envs, args.rollout_steps, args.updates)
    print(f"  raw env stepping (VectorAtari)      : {raw:9.0f} frames/s")
    print(f"  collection (Collector + CNN policy) : {collect:9.0f} frames/s   ratio {collect / raw:.2f}x")
    print(f"  PPO training (collect + learn)      : {ppo:9.0f} frames/s   ratio {ppo / raw:.2f}x")
    if args.device != "cpu":
        collect_on = collection_frames_per_s(task, args.envs, args.rollout_steps, args.updates, device=args.device)
        ppo_on = ppo_frames_per_s(task, args.envs, args.rollout_steps, args.updates, device=args.device)
        print(f"  collection, acting on {args.device:<6}        : {collect_on:9.0f} frames/s   "
              f"ratio {collect_on / raw:.2f}x")
        print(f"  PPO, learning and acting on {args.device:<6}  : {ppo_on:9.0f} frames/s   "
              f"ratio {ppo_on / raw:.2f}x, {ppo_on / ppo:.2f}x the CPU's")


if __name__ == "__main__":
    main()
