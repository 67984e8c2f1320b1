"""Benchmark the data layer on this machine; every figure is a ratio against a baseline run here.

1. Collection steps/s: `VectorAtari` (N emulators in ALE's C++ threads, batched preprocessing)
   vs a plain loop over one gymnasium `AtariEnv`, both with random legal actions.
2. Sequence sampling: `EpisodeWindowSampler` + gather at B=16, L=64 vs a plain index gather
   (random starts, no episode logic) from the same memory-mapped dataset, and vs TorchRL's
   `SliceSampler` (``OfflineDataset.window_buffer``: trajectories by the ``episode`` column, short
   ones padded). Beside the speed, how evenly each covers the frames: a frame's expected number of
   windows, averaged over the shortest quarter of the episodes, over that of the longest quarter
   (1.0: every frame alike; TorchRL's sampler draws an episode uniformly, then a start in it, so a
   short episode's frames are drawn more often). Why training keeps its own sampler: ARCHITECTURE.md.

Usage: .venv/bin/python tools/bench_data.py [--steps 4000] [--envs 8] [--game Pong] [--sample-game Breakout]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.data import TensorStorage  # noqa: E402
from torchrl.data.replay_buffers.samplers import SliceSampler  # noqa: E402

from scaleworld.atari.envs import AtariEnv, VectorAtari  # noqa: E402
from scaleworld.atari.games import get_game  # noqa: E402
from scaleworld.data.collect import collect_dataset  # noqa: E402
from scaleworld.data.dataset import OfflineDataset  # noqa: E402
from scaleworld.data.random_policy import RandomPolicy  # noqa: E402
from scaleworld.data.sampling import EpisodeWindowSampler  # noqa: E402
from scaleworld.data.windows import WINDOWS  # noqa: E402


def single_env_steps_per_s(game, steps: int) -> float:
    env = AtariEnv(game)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    legal = np.array(game.legal_actions)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.choice(legal)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env_steps_per_s(game, steps: int, envs: int) -> float:
    rng = np.random.default_rng(0)
    legal = np.array(game.legal_actions)
    with VectorAtari(game, envs) as env:
        env.reset(seed=0)
        done = 0
        start = time.perf_counter()
        while done < steps:
            done += int(env.step(rng.choice(legal, size=envs)).acted.sum())
        return done / (time.perf_counter() - start)


def sampling(ds: OfflineDataset, batch: int, seq_len: int, iters: int) -> tuple[float, float]:
    sampler = EpisodeWindowSampler(
        episode_starts=ds.episode_starts, episode_lengths=ds.episode_lengths, seq_len=seq_len,
        generator=torch.Generator().manual_seed(0),
    )
    data = ds.data
    start = time.perf_counter()
    for _ in range(iters):
        sampler.sample_windows(data, batch)
    windows = iters * batch / (time.perf_counter() - start)

    gen = torch.Generator().manual_seed(0)
    offsets = torch.arange(seq_len)
    start = time.perf_counter()
    for _ in range(iters):
        first = torch.randint(len(ds) - seq_len, (batch,), generator=gen)
        data[(first[:, None] + offsets).reshape(-1)].reshape(batch, seq_len)
    plain = iters * batch / (time.perf_counter() - start)
    return windows, plain


def slice_sampler(ds: OfflineDataset, batch: int, seq_len: int, iters: int) -> float:
    buffer = ds.window_buffer(slice_len=seq_len, batch_size=batch, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(iters):
        buffer.sample()
    return iters * batch / (time.perf_counter() - start)


def coverage_ratio(ds: OfflineDataset, seq_len: int, draws: int) -> list[float]:
    """[ours inside, ours edge_fair, TorchRL's]: a frame's mean coverage in the shortest quarter of the
    episodes over that in the longest quarter, from `draws` windows of each sampler (padding not counted)."""
    counts = []
    for windows in WINDOWS:
        ours = EpisodeWindowSampler(episode_starts=ds.episode_starts, episode_lengths=ds.episode_lengths,
                                    seq_len=seq_len, generator=torch.Generator().manual_seed(1), windows=windows)
        index, info = ours.sample(None, draws * seq_len)
        counts.append(torch.bincount(index[info["mask"]], minlength=len(ds)))
    # the same sampler as window_buffer's, over the rows' bookkeeping columns only (it gathers what it samples)
    theirs = SliceSampler(slice_len=seq_len, traj_key="episode", strict_length=False, pad_output=True)
    theirs._rng = torch.Generator().manual_seed(1)
    storage = TensorStorage(ds.data.select("episode", "step").to_tensordict())
    index, real = [], []
    for _ in range(draws // 10_000):
        rows, info = theirs.sample(storage, 10_000 * seq_len)
        index.append(rows[0])
        real.append(info["collector", "mask"])  # False on pad_output's padding
    counts.append(torch.bincount(torch.cat(index)[torch.cat(real)], minlength=len(ds)))
    order = ds.episode_lengths.argsort()
    quarter = max(1, len(order) // 4)
    out = []
    for count in counts:
        per_episode = torch.stack([count[s: s + n].double().mean() for s, n in
                                   zip(ds.episode_starts.tolist(), ds.episode_lengths.tolist())])
        out.append(float(per_episode[order[:quarter]].mean() / per_episode[order[-quarter:]].mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--sample-game", default="Breakout", help="the sampling dataset's game (random-policy "
                        "Breakout's episodes vary in length more than Pong's)")
    args = parser.parse_args()
    game = get_game(args.game)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}")

    single = single_env_steps_per_s(game, args.steps)
    vector = vector_env_steps_per_s(game, args.steps, args.envs)
    print(f"collection ({game.name}, {args.steps} agent steps, 64x64 RGB):")
    print(f"  plain gymnasium loop, 1 env : {single:9.0f} steps/s")
    print(f"  VectorAtari, {args.envs:2d} envs        : {vector:9.0f} steps/s   ratio {vector / single:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        policy = RandomPolicy(seed=0)
        collect_dataset(game=args.sample_game, policy=policy, policy_identity=policy.identity, steps=20000,
                        out=f"{tmp}/ds", num_envs=args.envs, progress=False)
        ds = OfflineDataset.open(f"{tmp}/ds")
        windows, plain = sampling(ds, 16, 64, args.iters)
        sliced = slice_sampler(ds, 16, 64, args.iters)
        inside, edge_fair, theirs = coverage_ratio(ds, 64, 200_000)
        lengths = ds.episode_lengths
        print(f"sampling B=16, L=64 from a {len(ds)}-step memmap dataset of {args.sample_game} ({len(lengths)} "
              f"episodes of {int(lengths.min())}-{int(lengths.max())} steps):")
        print(f"  plain index gather          : {plain:9.0f} sequences/s")
        print(f"  EpisodeWindowSampler        : {windows:9.0f} sequences/s   ratio {windows / plain:.2f}x   "
              f"coverage short/long episodes {inside:.2f} (inside), {edge_fair:.2f} (edge_fair)")
        print(f"  TorchRL SliceSampler        : {sliced:9.0f} sequences/s   ratio {sliced / plain:.2f}x   "
              f"coverage short/long episodes {theirs:.2f}")


if __name__ == "__main__":
    main()
