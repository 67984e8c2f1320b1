"""Benchmark dynamics training throughput (tokens/s) and model FLOPs utilisation (MFU).

MFU = achieved model FLOP/s / peak matmul FLOP/s, where the peak is measured by this script on the
same device: a large fp32 matmul on CPU, a large bf16 matmul on GPU. Model FLOPs per token are
counted for training (forward + backward = 3 x forward): 6 x (matmul weights of the blocks and
heads) + 12 x depth x width x T for attention scores and values (T = sequence length).

Usage: .venv/bin/python tools/bench_dynamics.py [--sizes paper-d2 paper-d4] [--batch 8] [--steps 5]
On a GPU: --device cuda --sizes paper-d2 paper-d12 paper-d48 --batch 64 [--compile]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from scaleworld.models.dynamics import DynamicsModel  # noqa: E402
from scaleworld.models.ladders import get_size  # noqa: E402
from scaleworld.objectives.world_model import WorldModelLoss  # noqa: E402
from scaleworld.training.config import TrainConfig  # noqa: E402
from scaleworld.training.trainer import Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_matmul_flops(device: torch.device, *, n: int, reps: int) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def flops_per_token(model: DynamicsModel, seq_len: int) -> float:
    c = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6 * matmul + 12 * c.depth * c.width * seq_len


def measure(size: str, *, batch: int, seq_len: int, steps: int, device: torch.device, compile: bool,
            tmp: str) -> tuple[float, float, int]:
    model = DynamicsModel(get_size(size).config(context=seq_len)).to(device)
    gen = torch.Generator().manual_seed(0)
    # Random tokens: throughput does not depend on the data's content.
    fixed = TensorDict({
        "tokens": torch.randint(0, 32, (batch, seq_len, 32), generator=gen, dtype=torch.uint8),
        "action": torch.randint(0, 18, (batch, seq_len), generator=gen),
        "next": {"reward": torch.zeros(batch, seq_len), "terminated": torch.zeros(batch, seq_len, dtype=torch.bool)},
        "mask": torch.ones(batch, seq_len, dtype=torch.bool)}, batch_size=[batch, seq_len])
    trainer = Trainer(loss=WorldModelLoss(model), sample_train=lambda b: fixed, sample_val=None,
                      config=TrainConfig(steps=10**9, batch_size=batch, compile=compile), run_dir=tmp,
                      generators={}, device=device, progress=False)
    for _ in range(2):  # warm-up (and compilation)
        trainer.train_step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    _sync(device)
    tokens_per_s = steps * batch * seq_len / (time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    return tokens_per_s, tokens_per_s * flops_per_token(model, seq_len), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["paper-d2", "paper-d4"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
        peak = peak_matmul_flops(device, n=8192, reps=50)
    else:
        name = f"CPU x{os.cpu_count()}, {torch.get_num_threads()} threads"
        peak = peak_matmul_flops(device, n=2048, reps=10)
    print(f"device: {name}; torch {torch.__version__}; measured peak matmul {peak / 1e12:.3f} TFLOP/s "
          f"({'bf16' if device.type == 'cuda' else 'fp32'})")
    print(f"batch {args.batch} x seq {args.seq_len}, {args.steps} timed steps, compile={args.compile}")
    import tempfile

    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tps, flops, params = measure(size, batch=args.batch, seq_len=args.seq_len, steps=args.steps,
                                         device=device, compile=args.compile, tmp=tmp)
        print(f"  {size:10s} {params / 1e6:7.1f}M params  {tps:10.0f} tokens/s  "
              f"{flops / 1e12:8.4f} TFLOP/s  MFU {100 * flops / peak:5.1f}% of measured peak")


if __name__ == "__main__":
    main()
