"""One script for a GPU's 15 minutes: every figure of the GPU goals, measured in one run (~8 min on an H100).

Goals (DESIGN.md, issue 37): dynamics training at >= 40% MFU from paper-d12 up and >= 25% at paper-d2
packed; imagination >= 2M imagined frames/s with the actor. Every ratio below is between figures
this run measured on this device:

  peak      the measured bf16 matmul peak (every MFU is against it, not a datasheet's)
  gpt       the minimal-GPT probe: a plain nanoGPT-style model of the reference's shape (width 512,
            8 heads, 64 tokens, a 1024-word vocabulary) compiled, at d2 and d12: what the shape allows
            without our model's heads, embeddings, sampler and loss; "ours / gpt" says what they cost
  dynamics  paper-d2 and paper-d12, each eager, compiled (the trainer's default), compiled with
            mode=max-autotune-no-cudagraphs and mode=reduce-overhead (CUDA graphs of the compiled
            forward and backward) (d2 only), and packed (K chosen by the study's packer for
            launcher.pack 8 in 80 GB): tokens/s, MFU, first-step (compile) seconds, peak memory
            against the packer's estimate, torch.compile's frames, graphs (recompiles), graph breaks
            and eager fallbacks. Batches come from the real sampler (`MultiGameWindows` over
            synthetic token datasets resident on the device), as a run pays them.
  d48       paper-d48 alone, compiled
  imagine   imagination at d2 and d12 with the actor, CUDA-graphed, with restarts (about 0.1% of
            steps end, Atari's rate) and without (no step ends): imagined frames/s; at d2 also with
            TF32 matmuls for the fp32 actor (runs keep PyTorch's default, full fp32)
  update    the actor-critic update on one [1024 x 16] rollout: ms per update, and the frames/s of
            rollout + update together
  agree     bf16 agreement: a pack of 2 against the 2 runs trained separately, and compiled against
            eager, after 3 steps from the same weights and batches (relative loss difference)

Results go to OUT/gpu_round.json (rewritten after every part, so a run cut short keeps what it
measured) and OUT/gpu_round.txt (the printed lines). --parts picks parts; --dry-run runs every part at
tiny shapes on the CPU with torch.compile's aot_eager backend (a test runs it: every code path but
the GPU's).

Usage: .venv/bin/python tools/gpu_round.py --out OUT [--parts peak gpt dynamics d48 imagine update agree]
       .venv/bin/python tools/gpu_round.py --out OUT --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_dynamics import flops_per_token  # noqa: E402  (tools/: MFU's one definition)
from torch import nn  # noqa: E402

from scaleworld.models.dynamics import DynamicsModel  # noqa: E402
from scaleworld.models.dynamics_config import DynamicsConfig, training_bytes  # noqa: E402
from scaleworld.models.ladders import get_size  # noqa: E402
from scaleworld.objectives.world_model import DynamicsLoss  # noqa: E402
from scaleworld.study.meter import peak_matmul_flops, synthetic_token_windows  # noqa: E402
from scaleworld.study.packing import pack_size_for  # noqa: E402
from scaleworld.training.config import TrainConfig  # noqa: E402
from scaleworld.training.packed import PackedTrainer  # noqa: E402
from scaleworld.training.runs import DynamicsRun  # noqa: E402
from scaleworld.training.trainer import Trainer, compile_counts  # noqa: E402

PARTS = ("peak", "gpt", "dynamics", "d48", "imagine", "update", "agree")
GOALS = {"mfu_d12": 0.40, "mfu_d2_packed": 0.25, "imagined_frames_per_s": 2e6}
PACK = 8
"""The launcher.pack the packer is asked for (it caps it by memory: `pack_size`)."""
PACK_MEMORY_GB = 80.0


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Everything the dry run shrinks."""

    d2: DynamicsConfig
    d12: DynamicsConfig
    d48: DynamicsConfig
    batch: int
    warmup: int
    steps: int
    peak_n: int
    imagine_batch: int
    horizon: int
    compile: dict[str, Any]
    modes: dict[str, dict[str, Any]]
    """torch.compile options of the other compiled lines, by the line's name."""

    @staticmethod
    def real() -> Shapes:
        return Shapes(d2=get_size("paper-d2").config(context=64), d12=get_size("paper-d12").config(context=64),
                      d48=get_size("paper-d48").config(context=64), batch=64, warmup=3, steps=20, peak_n=8192,
                      imagine_batch=1024, horizon=16, compile={},
                      modes={"autotune": {"mode": "max-autotune-no-cudagraphs"},
                             "cudagraphs": {"mode": "reduce-overhead"}})

    @staticmethod
    def dry() -> Shapes:
        def tiny(depth):
            return DynamicsConfig(width=32, depth=depth, heads=2, context=8, groups=4, classes=4, reward_bins=17)

        return Shapes(d2=tiny(1), d12=tiny(2), d48=tiny(3), batch=4, warmup=1, steps=2, peak_n=256,
                      imagine_batch=8, horizon=4, compile={"backend": "aot_eager"},
                      modes={"autotune": {"backend": "aot_eager"}, "cudagraphs": {"backend": "aot_eager"}})


class Round:
    """The run's device, shapes, output folder and results (written after every part)."""

    def __init__(self, *, out: Path, device: torch.device, shapes: Shapes):
        self.out, self.device, self.shapes = out, device, shapes
        self.results: dict[str, Any] = {"device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                   else f"cpu ({torch.get_num_threads()} threads)"),
                                        "torch": torch.__version__, "goals": GOALS, "parts": {}}
        self.lines: list[str] = []
        self.peak = float("nan")
        out.mkdir(parents=True, exist_ok=True)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)
        (self.out / "gpu_round.txt").write_text("\n".join(self.lines) + "\n")

    def keep(self, part: str, key: str, value: Any) -> None:
        self.results["parts"].setdefault(part, {})[key] = value
        (self.out / "gpu_round.json").write_text(json.dumps(self.results, indent=1, default=str))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_memory(self) -> float:
        return torch.cuda.max_memory_allocated() if self.device.type == "cuda" else float("nan")

    def timed(self, step) -> tuple[float, float]:
        """(seconds of the first step: compile and warm-up included, seconds per later step)."""
        start = time.perf_counter()
        step()
        self.sync()
        first = time.perf_counter() - start
        for _ in range(self.shapes.warmup - 1):
            step()
        self.sync()
        start = time.perf_counter()
        for _ in range(self.shapes.steps):
            step()
        self.sync()
        return first, (time.perf_counter() - start) / self.shapes.steps

    def mfu(self, flops_per_s: float) -> float:
        return flops_per_s / self.peak


# -- the minimal-GPT probe ----------------------------------------------------------------------
class ProbeGPT(nn.Module):
    """nanoGPT's shape in a few lines: token + learned position embeddings, pre-norm blocks (causal
    SDPA, GELU MLP), a final norm and a vocabulary head; the reference for what the shape allows."""

    def __init__(self, *, vocab: int, width: int, depth: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "norm1": nn.LayerNorm(width), "qkv": nn.Linear(width, 3 * width), "proj": nn.Linear(width, width),
            "norm2": nn.LayerNorm(width), "mlp": nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                                               nn.Linear(4 * width, width))}) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        x = self.tokens(idx) + self.positions(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["norm1"](x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, D]
            x = x + blk["proj"](attn.transpose(1, 2).reshape(b, t, -1))
            x = x + blk["mlp"](blk["norm2"](x))
        return F.cross_entropy(self.head(self.norm(x)).flatten(0, 1).float(), targets.flatten())


def gpt_probe(r: Round, name: str, config: DynamicsConfig) -> float:
    s, dev = r.shapes, r.device
    torch._dynamo.reset()
    vocab = config.groups * config.classes
    torch.manual_seed(0)
    model = ProbeGPT(vocab=vocab, width=config.width, depth=config.depth, heads=config.heads,
                     context=config.context).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    loss_fn = torch.compile(model, **s.compile)
    idx = torch.randint(0, vocab, (s.batch, config.context), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = loss_fn(idx, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    first, per_step = r.timed(step)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    tokens_per_s = s.batch * config.context / per_step
    mfu = r.mfu(tokens_per_s * (6 * matmul + 12 * config.depth * config.width * config.context))
    r.keep("gpt", name, {"tokens_per_s": tokens_per_s, "mfu": mfu, "first_step_s": first})
    r.say(f"  gpt probe {name:4s} {tokens_per_s:12,.0f} tokens/s  MFU {mfu:6.1%}  first step {first:5.1f} s")
    return mfu


# -- dynamics training --------------------------------------------------------------------------
def _run(config: DynamicsConfig, *, seed: int, device: torch.device, tmp: str) -> DynamicsRun:
    torch.manual_seed(seed)
    net = DynamicsModel(config).to(device)
    view = synthetic_token_windows(config.to_dict(), device)
    view.generator.manual_seed(seed)
    return DynamicsRun(out=Path(tmp) / f"run{seed}", net=net, loss=DynamicsLoss(net), train_view=view, val_view=None,
                       generator=view.generator, val_generator=torch.Generator(), identity={}, describe="",
                       info={"model": config.to_dict()}, extra={}, keep_best=False)


def _config(r: Round, *, compile: bool) -> TrainConfig:
    return TrainConfig(steps=10**9, batch_size=r.shapes.batch, compile=compile, warmup_steps=1)


def train_line(r: Round, name: str, config: DynamicsConfig, how: str) -> dict[str, Any]:
    """One (size, way) of training: eager, compiled, packed, or compiled in one of `Shapes.modes`."""
    s, dev = r.shapes, r.device
    r.reset_memory()
    torch._dynamo.reset()  # each line compiles afresh: its compile time, and no graph reused from another mode
    before = compile_counts()
    with tempfile.TemporaryDirectory() as tmp:
        if how == "packed":
            k = pack_size_for(config, batch=s.batch, size=PACK, memory_gb=PACK_MEMORY_GB)
            runs = [_run(config, seed=i, device=dev, tmp=tmp) for i in range(k)]
            trainer = PackedTrainer(runs=runs, configs=[_config(r, compile=True)] * k, device=dev, progress=False,
                                    compile_options=s.compile)
            net = runs[0].net
        else:
            k = 1
            run = _run(config, seed=0, device=dev, tmp=tmp)
            net = run.net
            options = s.modes.get(how, s.compile)
            trainer = Trainer(loss=run.loss, sample_train=run.train_view.sample, sample_val=None,
                              config=_config(r, compile=how != "eager"), run_dir=tmp, generators={}, device=dev,
                              progress=False, compile_on_cuda=how != "eager", compile_options=options)
        first, per_step = r.timed(trainer.train_step)
    counts = {key: value - before[key] for key, value in compile_counts().items()}
    tokens_per_s = k * s.batch * config.context / per_step
    mfu = r.mfu(tokens_per_s * flops_per_token(net, config.context))
    estimate = k * training_bytes(config, batch=s.batch)
    result = {"runs": k, "tokens_per_s": tokens_per_s, "mfu": mfu, "first_step_s": first,
              "peak_memory_gb": r.peak_memory() / 2**30, "estimated_memory_gb": estimate / 2**30, "compile": counts}
    r.keep("dynamics", f"{name} {how}", result)
    r.say(f"  {name:4s} {how + (f' K={k}' if k > 1 else ''):14s} {tokens_per_s:12,.0f} tokens/s  MFU {mfu:6.1%}  "
          f"first step {first:6.1f} s  peak {result['peak_memory_gb']:6.2f} GB (estimate {estimate / 2**30:6.2f})  "
          f"graphs {counts['graphs']} breaks {counts['graph_breaks']} eager fallbacks {counts['eager_fallbacks']}")
    return result


# -- imagination and the actor-critic update ---------------------------------------------------
def _imagination(r: Round, config: DynamicsConfig, *, termination_bias: float):
    from scaleworld.imagination.core import Imagination, StartContexts
    from scaleworld.imagination.graphed import GraphedRollout
    from scaleworld.models.agent import ActorCritic, ActorPolicy, AgentConfig

    dev = r.device
    torch.manual_seed(0)
    model = DynamicsModel(config).to(dev).eval().requires_grad_(False)
    with torch.no_grad():
        model.termination_head.bias.fill_(termination_bias)  # tools/bench_imagination.py: the share that ends
    if dev.type == "cuda":
        model = model.to(torch.bfloat16)
    rows, steps = 4096, 8
    gen = torch.Generator().manual_seed(1)
    starts = StartContexts(tokens=torch.randint(0, config.classes, (rows, config.groups), generator=gen,
                                                dtype=torch.uint8),
                           actions=torch.randint(0, 18, (rows,), generator=gen), steps=steps,
                           starts=torch.arange(rows - steps + 1), game=None,
                           action_mask=torch.ones(18, dtype=torch.bool)).to(dev)
    agent = ActorCritic(AgentConfig(groups=config.groups, classes=config.classes, hidden_size=config.width)).to(dev)
    imagination = Imagination(model, starts, batch=r.shapes.imagine_batch, generator=torch.Generator(device=dev),
                              horizon=r.shapes.horizon)  # as train_in_imagination makes it: a live-window cache
    policy = ActorPolicy(agent, generator=torch.Generator(device=dev))
    rollouts = GraphedRollout(imagination) if dev.type == "cuda" else None
    seed = [0]

    def rollout():
        seed[0] += 1
        imagination.generator.manual_seed(seed[0])
        policy.generator.manual_seed(seed[0])
        if rollouts is None:
            return imagination.rollout(policy, r.shapes.horizon)
        return rollouts.rollout(policy, r.shapes.horizon)

    return agent, rollout


def imagine_line(r: Round, name: str, config: DynamicsConfig, *, restarts: bool, tf32: bool = False) -> float:
    _, rollout = _imagination(r, config, termination_bias=-1.35 if restarts else -30.0)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        first, per = r.timed(rollout)
        ended = rollout()["next", "terminated"].float().mean().item()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    frames_per_s = r.shapes.imagine_batch * r.shapes.horizon / per
    way = ("graphed" if r.device.type == "cuda" else "eager") + (", tf32" if tf32 else "")
    label = f"{name} {'restarts' if restarts else 'no restarts'}{' tf32' if tf32 else ''}"
    r.keep("imagine", label, {"frames_per_s": frames_per_s, "ended_share": ended, "first_rollout_s": first,
                              "way": way})
    r.say(f"  {label:22s} {way:13s} {frames_per_s:14,.0f} frames/s  ({ended:.2%} of steps end; "
          f"first rollout {first:.1f} s)")
    return frames_per_s


def update_line(r: Round, name: str, config: DynamicsConfig) -> None:
    """The policy trainer's update (`Trainer.train_step` on `ActorCriticLoss`, bf16 autocast on CUDA,
    clipping, the guard and the slow critic's SoftUpdate, as `train_in_imagination` runs it) on one
    rollout, then rollouts alone: the update's share of a policy step."""
    from torchrl.objectives import SoftUpdate

    from scaleworld.objectives.actor_critic import ActorCriticLoss

    agent, rollout = _imagination(r, config, termination_bias=-1.35)
    loss = ActorCriticLoss(agent).to(r.device)
    slow_critic = SoftUpdate(loss, tau=0.02)
    data = rollout()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(loss=loss, sample_train=lambda batch: data, sample_val=None,
                          config=TrainConfig(steps=10**9, batch_size=r.shapes.imagine_batch), run_dir=tmp,
                          generators={}, device=r.device, progress=False, after_step=slow_critic.step)
        _, per_update = r.timed(trainer.train_step)
    _, per_rollout = r.timed(rollout)
    frames = r.shapes.imagine_batch * r.shapes.horizon
    both = frames / (per_update + per_rollout)
    r.keep("update", name, {"update_ms": per_update * 1e3, "rollout_ms": per_rollout * 1e3,
                            "frames_per_s_with_update": both})
    r.say(f"  {name:4s} update {per_update * 1e3:8.2f} ms, rollout {per_rollout * 1e3:8.2f} ms: "
          f"{both:12,.0f} frames/s with the update")


# -- agreement at bf16 --------------------------------------------------------------------------
def agree(r: Round, config: DynamicsConfig) -> None:
    """Relative loss differences after 3 steps: a pack of 2 against the same 2 runs separately, and
    compiled against eager (same weights and batches)."""
    s, dev = r.shapes, r.device

    def losses(how: str) -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            runs = [_run(config, seed=i, device=dev, tmp=tmp) for i in range(2)]
            if how == "packed":
                trainer = PackedTrainer(runs=runs, configs=[_config(r, compile=True)] * 2, device=dev,
                                        progress=False, compile_options=s.compile)
                out = [trainer.train_step()["loss_latent"] for _ in range(3)][-1]
                return out.float().tolist()
            values = []
            for run in runs:
                trainer = Trainer(loss=run.loss, sample_train=run.train_view.sample, sample_val=None,
                                  config=_config(r, compile=how == "compiled"), run_dir=tmp, generators={},
                                  device=dev, progress=False, compile_on_cuda=how == "compiled",
                                  compile_options=s.compile)
                values.append(float([trainer.train_step()["loss_latent"] for _ in range(3)][-1]))
            return values

    eager, compiled, packed = losses("eager"), losses("compiled"), losses("packed")
    packed_gap = max(abs(p - c) / abs(c) for p, c in zip(packed, compiled))
    compiled_gap = max(abs(c - e) / abs(e) for c, e in zip(compiled, eager))
    r.keep("agree", "packed_vs_separate", packed_gap)
    r.keep("agree", "compiled_vs_eager", compiled_gap)
    r.say(f"  after 3 steps, relative loss difference: packed vs separate {packed_gap:.2e}, compiled vs eager "
          f"{compiled_gap:.2e} (bf16's resolution is 3.9e-3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_round.json and gpu_round.txt")
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny shapes on the CPU")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="start no line after this many seconds (default 450: the round fits 8 minutes)")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no GPU is visible: use --dry-run to check the script on the CPU")
    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:  # aot_eager's and vmap's performance notes say nothing about a GPU
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
    shapes = Shapes.dry() if args.dry_run else Shapes.real()
    r = Round(out=Path(args.out), device=device, shapes=shapes)
    started = time.perf_counter()
    r.say(f"gpu round on {r.results['device']}, torch {torch.__version__}" + (" (DRY RUN: tiny shapes)"
                                                                              if args.dry_run else ""))
    # the peak is always measured: every MFU is against it
    r.peak = peak_matmul_flops(device, n=shapes.peak_n, reps=50 if device.type == "cuda" else 3)
    r.keep("peak", "flops", r.peak)
    r.say(f"peak matmul ({'bf16' if device.type == 'cuda' else 'fp32'}): {r.peak / 1e12:.1f} TFLOP/s")
    d2, d12 = shapes.d2, shapes.d12
    # (part, line, what measures it) in the order of what the goals need first: a run cut short by
    # --budget-s (or by the device's time) has the goal figures
    lines = [("dynamics", "d12 compiled", lambda: train_line(r, "d12", d12, "compiled")),
             ("dynamics", "d2 packed", lambda: train_line(r, "d2", d2, "packed")),
             ("dynamics", "d12 packed", lambda: train_line(r, "d12", d12, "packed")),
             ("imagine", "d2 restarts", lambda: imagine_line(r, "d2", d2, restarts=True)),
             ("imagine", "d2 no restarts", lambda: imagine_line(r, "d2", d2, restarts=False)),
             ("gpt", "d12", lambda: gpt_probe(r, "d12", d12)),
             ("gpt", "d2", lambda: gpt_probe(r, "d2", d2)),
             ("dynamics", "d2 compiled", lambda: train_line(r, "d2", d2, "compiled")),
             ("dynamics", "d2 eager", lambda: train_line(r, "d2", d2, "eager")),
             ("dynamics", "d12 eager", lambda: train_line(r, "d12", d12, "eager")),
             ("update", "d2", lambda: update_line(r, "d2", d2)),
             ("imagine", "d12 restarts", lambda: imagine_line(r, "d12", d12, restarts=True)),
             ("imagine", "d12 no restarts", lambda: imagine_line(r, "d12", d12, restarts=False)),
             ("update", "d12", lambda: update_line(r, "d12", d12)),
             ("agree", "d2", lambda: agree(r, d2)),
             ("d48", "compiled", lambda: train_line(r, "d48", shapes.d48, "compiled")),
             ("imagine", "d2 restarts tf32", lambda: imagine_line(r, "d2", d2, restarts=True, tf32=True)),
             ("dynamics", "d2 cudagraphs", lambda: train_line(r, "d2", d2, "cudagraphs")),
             ("dynamics", "d2 autotune", lambda: train_line(r, "d2", d2, "autotune"))]
    for part, line, measure in lines:
        if part not in args.parts:
            continue
        if time.perf_counter() - started > args.budget_s:
            r.keep("skipped", f"{part} {line}", "over --budget-s")
            r.say(f"  {part} {line}: skipped (past --budget-s {args.budget_s:.0f})")
            continue
        try:
            measure()
        except Exception as exc:  # one line's failure is reported; the others are still measured
            r.keep(part, f"{line} error", f"{type(exc).__name__}: {exc}")
            r.say(f"  {part} {line} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    verdicts(r)
    r.say(f"done in {time.perf_counter() - started:.0f} s; results in {r.out / 'gpu_round.json'}")


def verdicts(r: Round) -> None:
    """Each goal against what was measured (absent parts: not measured)."""
    dyn = r.results["parts"].get("dynamics", {})
    imagine = r.results["parts"].get("imagine", {})
    checks = [("MFU at d12, compiled", dyn.get("d12 compiled", {}).get("mfu"), GOALS["mfu_d12"]),
              ("MFU at d12, packed", dyn.get("d12 packed", {}).get("mfu"), GOALS["mfu_d12"]),
              ("MFU at d2, packed", dyn.get("d2 packed", {}).get("mfu"), GOALS["mfu_d2_packed"]),
              ("imagined frames/s at d2 with the actor and restarts",
               imagine.get("d2 restarts", {}).get("frames_per_s"), GOALS["imagined_frames_per_s"])]
    for what, value, goal in checks:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            r.say(f"goal {what}: not measured")
            continue
        shown = f"{value:.1%} (goal {goal:.0%})" if goal < 1 else f"{value:,.0f} (goal {goal:,.0f})"
        r.say(f"goal {what}: {shown}: {'MET' if value >= goal else 'not met'}")
        r.keep("verdicts", what, {"value": value, "goal": goal, "met": value >= goal})


if __name__ == "__main__":
    main()
