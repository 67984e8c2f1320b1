"""What verifying a dataset costs, as a ratio to one epoch of reading it, on this machine.

Collects (or reuses, with --data) a random-policy pixel dataset of --steps agent steps, then times,
each on a fresh copy of the file metadata (the stamp removed) where it matters:

1. verify: `verify_dataset` (SHA-256 of every file, then every manifest claim against the rows),
   what the first `OfflineDataset.open` of a dataset pays;
2. stamped open: `OfflineDataset.open` when the stamp matches (every later open);
3. baseline, one epoch of reading: every row's pixels read out of the memory map in batches of
   1,024 frames, in order, as the tokenizer takes them (uint8 -> float in [0, 1]); both timings
   see the same page cache (the dataset was just written or read).

Usage: .venv/bin/python tools/bench_verify.py [--steps 100000] [--game Pong] [--data DIR]
(--data: reuse the dataset there, or collect it there if it does not exist)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

from scaleworld.data.collect import collect_dataset  # noqa: E402
from scaleworld.data.dataset import OfflineDataset, verify_dataset  # noqa: E402
from scaleworld.data.layout import STAMP  # noqa: E402
from scaleworld.data.random_policy import RandomPolicy  # noqa: E402


def read_epoch(path: Path, batch: int = 1024) -> float:
    ds = OfflineDataset.open(path)
    pixels = ds.data["pixels"]
    start = time.perf_counter()
    total = 0.0
    for i in range(0, len(ds), batch):
        total += float((torch.as_tensor(pixels[i : i + batch]).float() / 255.0).sum())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--data", type=Path, help="a pixel dataset to reuse, or where to collect it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        path = args.data or Path(tmp) / "data"
        if not path.exists():
            policy = RandomPolicy(seed=0)
            start = time.perf_counter()
            collect_dataset(game=args.game, policy=policy, policy_identity=policy.identity, steps=args.steps,
                            out=path, seed=0, progress=False)
            print(f"collected {args.steps:,} steps of {args.game} in {time.perf_counter() - start:.1f} s")
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
        epoch = min(read_epoch(path) for _ in range(5))  # warm: both sides read from the page cache
        (path / STAMP).unlink(missing_ok=True)
        start = time.perf_counter()
        verify_dataset(path)
        verify = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(10):
            OfflineDataset.open(path)
        stamped = (time.perf_counter() - start) / 10
        print(f"dataset: {size:.2f} GiB, {args.steps:,} rows")
        print(f"one epoch of reading (baseline): {epoch:.2f} s ({size / epoch:.1f} GiB/s)")
        print(f"verify (first open): {verify:.2f} s ({size / verify:.1f} GiB/s) = {verify / epoch:.2f} x one epoch")
        print(f"stamped open (every later open): {stamped * 1e3:.1f} ms = {stamped / epoch:.4f} x one epoch")


if __name__ == "__main__":
    main()
