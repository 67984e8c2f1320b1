"""Benchmark dynamics training throughput (tokens/s) and model FLOPs utilisation (MFU).

MFU = achieved model FLOP/s / peak matmul FLOP/s, where the peak is measured by this script on the
same device: a large fp32 matmul on CPU, a large bf16 matmul on GPU. Model FLOPs per token are
counted for training (forward + backward = 3 x forward): 6 x (matmul weights of the blocks and
heads) + 12 x depth x width x T for attention scores and values (T = sequence length).

Batches come from the real sampler (`MultiGameWindows` over synthetic token datasets, resident on the
device, `scaleworld.study.meter.synthetic_token_windows`): a step's time includes drawing and
gathering its windows, as a run's does.

Packed training (scaleworld/training/packed.py): with --pack K each size is also trained as K runs
in one batched model, and the line gives the pack's tokens/s (all K runs) and its ratio to one
separate run's: K separate runs take K times one run's time, so the ratio is the speed-up of packing.
Sizes in --unpacked are measured separately only (the large ones, which fill a GPU alone).

Usage: .venv/bin/python tools/bench_dynamics.py [--sizes paper-d2 paper-d4] [--ladders tiny small]
           [--batch 8] [--steps 5] [--pack 4]
On a GPU: --device cuda --sizes paper-d2 paper-d12 --pack 8 --unpacked paper-d48 --batch 64 (compiled on CUDA,
as the trainer is; --compile compiles on CPU too); tools/gpu_round.py measures every GPU figure in one run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

from scaleworld.models.dynamics import DynamicsModel  # noqa: E402
from scaleworld.models.ladders import get_ladder, get_size  # noqa: E402
from scaleworld.objectives.world_model import DynamicsLoss  # noqa: E402
from scaleworld.study.meter import peak_matmul_flops, synthetic_token_windows  # noqa: E402
from scaleworld.training.config import TrainConfig  # noqa: E402
from scaleworld.training.packed import PackedTrainer  # noqa: E402
from scaleworld.training.runs import DynamicsRun  # noqa: E402
from scaleworld.training.trainer import Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_token(model: DynamicsModel, seq_len: int) -> float:
    c = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6 * matmul + 12 * c.depth * c.width * seq_len


def _timed(step, *, steps: int, device: torch.device) -> float:
    for _ in range(2):  # warm-up (and compilation)
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def measure(size: str, *, batch: int, seq_len: int, steps: int, device: torch.device, compile: bool,
            tmp: str) -> tuple[float, float, int]:
    """One separate run: (tokens/s, model FLOP/s, parameters)."""
    model = DynamicsModel(get_size(size).config(context=seq_len)).to(device)
    data = synthetic_token_windows(model.config.to_dict(), device)
    trainer = Trainer(loss=DynamicsLoss(model), sample_train=data.sample, sample_val=None,
                      config=TrainConfig(steps=10**9, batch_size=batch, compile=compile), run_dir=tmp,
                      generators={}, device=device, progress=False, compile_on_cuda=True)
    tokens_per_s = steps * batch * seq_len / _timed(trainer.train_step, steps=steps, device=device)
    params = sum(p.numel() for p in model.parameters())
    return tokens_per_s, tokens_per_s * flops_per_token(model, seq_len), params


def measure_packed(size: str, *, pack: int, batch: int, seq_len: int, steps: int, device: torch.device,
                   compile: bool, tmp: str) -> tuple[float, float]:
    """K runs packed in one batched model: (tokens/s of all K runs together, model FLOP/s)."""
    from pathlib import Path

    config = TrainConfig(steps=10**9, batch_size=batch, compile=compile)
    runs = []
    for k in range(pack):
        torch.manual_seed(k)
        net = DynamicsModel(get_size(size).config(context=seq_len)).to(device)
        data = synthetic_token_windows(net.config.to_dict(), device)
        data.generator.manual_seed(k)
        runs.append(DynamicsRun(out=Path(tmp) / str(k), net=net, loss=DynamicsLoss(net), train_view=data,
                                val_view=None, generator=torch.Generator(), val_generator=torch.Generator(),
                                identity={}, describe=size, info={"model": net.config.to_dict()}, extra={},
                                keep_best=False))
    trainer = PackedTrainer(runs=runs, configs=[config] * pack, device=device, progress=False)
    tokens_per_s = pack * steps * batch * seq_len / _timed(trainer.train_step, steps=steps, device=device)
    return tokens_per_s, tokens_per_s * flops_per_token(runs[0].net, seq_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["paper-d2", "paper-d4"])
    parser.add_argument("--ladders", nargs="*", default=[], help="every size of these ladders too (e.g. tiny small)")
    parser.add_argument("--unpacked", nargs="*", default=[], help="sizes measured separately only")
    parser.add_argument("--pack", type=int, default=1, help="K: also train K runs of each size packed")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="compile on CPU too (on CUDA always)")
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
    compiled = args.compile or device.type == "cuda"
    print(f"batch {args.batch} x seq {args.seq_len}, {args.steps} timed steps, compiled={compiled}"
          + (f", packs of K={args.pack}" if args.pack > 1 else ""))
    import tempfile

    sizes = list(args.sizes) + [s.name for ladder in args.ladders for s in get_ladder(ladder)]
    for size in sizes + list(args.unpacked):
        with tempfile.TemporaryDirectory() as tmp:
            tps, flops, params = measure(size, batch=args.batch, seq_len=args.seq_len, steps=args.steps,
                                         device=device, compile=args.compile, tmp=tmp)
        print(f"  {size:10s} {params / 1e6:7.1f}M params  separate {tps:10.0f} tokens/s  "
              f"{flops / 1e12:8.4f} TFLOP/s  MFU {100 * flops / peak:5.1f}%", flush=True)
        if args.pack > 1 and size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                ptps, pflops = measure_packed(size, pack=args.pack, batch=args.batch, seq_len=args.seq_len,
                                              steps=args.steps, device=device, compile=args.compile, tmp=tmp)
            print(f"  {size:10s} {'':15s} packed x{args.pack} {ptps:9.0f} tokens/s  {pflops / 1e12:8.4f} TFLOP/s  "
                  f"MFU {100 * pflops / peak:5.1f}%  packed / separate {ptps / tps:5.2f}", flush=True)


if __name__ == "__main__":
    main()
