"""One trainer for the tokenizer and the dynamics model.

AdamW (fused on CUDA), linear warmup + cosine decay, gradient clipping, bf16 autocast on CUDA
(fp32 on CPU), torch.compile (when asked; dynamics runs always on CUDA), periodic held-out evaluation,
TorchRL CSV logs, a rich progress bar, atomic checkpoints every N steps and exact resumption:
everything that decides the next step (weights, optimiser, schedule, step, the samplers'
generators, torch's global RNG) is in the checkpoint, so on CPU a resumed run ends bit-identical
to an uninterrupted one.

A training step reads nothing back from the device: its metrics stay device scalars and the NaN
guard (`FiniteGuard`) records on the device; both are read at log, evaluation and checkpoint
steps only, so the host runs ahead of the GPU between them.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from scaleworld.data.files import atomic_file, load_tensors, write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.progress import progress_bar
from scaleworld.training.config import TrainConfig

CHECKPOINT = "checkpoint.pt"


class TrainingDiverged(ScaleworldError):
    """A loss term or the gradient norm became NaN/inf."""


def resolve_device(name: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible (e.g. one SLURM gave the job), else ``cpu``."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base LR at `step` (0-based): linear warmup, then cosine to min_lr_ratio."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(module: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2),
                             fused=device.type == "cuda")


def _loss_terms(td: TensorDictBase) -> dict[str, torch.Tensor]:
    return {k: v for k, v in td.items() if isinstance(k, str) and k.startswith("loss_")}


def first_difference(written: Any, wanted: Any, path: str = "") -> str | None:
    """The first setting (dotted path) where two JSON-like values differ, said as
    "PATH: A in the checkpoint, B now"; None when they are equal."""
    if isinstance(written, dict) and isinstance(wanted, dict):
        for key in sorted(set(written) | set(wanted), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in written or key not in wanted:
                before = repr(written[key]) if key in written else "absent"
                now = repr(wanted[key]) if key in wanted else "absent"
                return f"{sub}: {before} in the checkpoint, {now} now"
            found = first_difference(written[key], wanted[key], sub)
            if found is not None:
                return found
        return None
    if isinstance(written, (list, tuple)) and isinstance(wanted, (list, tuple)) and len(written) == len(wanted):
        for i, (a, b) in enumerate(zip(written, wanted)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if written == wanted else f"{path}: {written!r} in the checkpoint, {wanted!r} now"


def read_checkpoint(path: Path, *, config: TrainConfig, identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The checkpoint at `path` (None when there is none), refused when it cannot be read or was
    written by a run of other settings (the first differing setting named)."""
    if not path.is_file():
        return None
    state = load_tensors(path, fix="delete it to start over")
    written = {"train": state["config"], **(state.get("identity") or {})}
    wanted = {"train": asdict(config), **(identity or {})}
    if "identity" not in state:
        written = {**written, **{k: v for k, v in wanted.items() if k != "train"}}
    if all(isinstance(d, str) for d in written.get("datasets") or [None]) and "datasets" in wanted:
        written["datasets"] = wanted["datasets"]  # an older checkpoint named datasets by absolute path
    difference = first_difference(written, wanted)
    if difference is not None:
        raise ScaleworldError(
            f"{path}: written by a run of other settings ({difference}): use another run "
            "folder, or the checkpoint's settings to resume it"
        )
    return state


def compiled_or_eager(fn: Callable[..., Any], *, enabled: bool,
                      options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """`fn` compiled by torch.compile when `enabled`; if compiling fails (at the first call: a missing
    compiler, an unsupported op) the run goes on eagerly after one warning line, since compiling only
    decides speed. An error of `fn` itself is raised again by the eager call. `options`: torch.compile's
    keyword arguments (mode, backend: tools/gpu_round.py compares them; runs keep the default).
    A recompile past dynamo's limit would run eagerly without a word: `compile_counts` tells."""
    if not enabled:
        return fn
    compiled = torch.compile(fn, **(options or {}))
    chosen: list[Callable[..., Any]] = []

    def call(*args: Any) -> Any:
        if chosen:
            return chosen[0](*args)
        try:
            out = compiled(*args)
        except Exception as exc:  # any compiler failure: fall back (the eager call re-raises real errors)
            print(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                  "training eagerly", file=sys.stderr)
            chosen.append(fn)
            return fn(*args)
        chosen.append(compiled)
        return out

    return call


def compile_counts() -> dict[str, int]:
    """The process's torch.compile tallies so far (differences between two readings count a part's):
    frames compiled, graphs made (more than the frames: recompiles), graph breaks, and frames that
    fell back to eager (`recompile_limit` hit or a failure)."""
    from torch._dynamo.utils import counters

    return {"frames": counters["frames"]["total"], "graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
            "eager_fallbacks": counters["frames"]["total"] - counters["frames"]["ok"]}


class FiniteGuard:
    """The first step at which a watched quantity (a loss term, the gradient norm) was not finite,
    kept on the device: `record` launches a few scalar kernels and reads nothing back, `first` reads
    once. (The trainer's NaN guard without a host-device sync per step.)"""

    def __init__(self, device: torch.device):
        self.device = device
        self.names: list[str] = []
        self._step = torch.full((), -1, dtype=torch.int64, device=device)  # the first bad step; -1: none yet
        self._bad = self._values = None  # bool / float32 [len(names)] at that step

    def record(self, named: list[tuple[str, torch.Tensor]], *, step: int) -> None:
        self.record_values([n for n, _ in named], torch.stack([v.detach().float().reshape(()) for _, v in named]),
                           step=step)

    def record_values(self, names: list[str], values: torch.Tensor, *, step: int) -> None:
        """`values` float [n] (already one tensor: a pack's K x 4 quantities in a few kernels, not
        4K scalar selects), named by `names`."""
        values = values.detach().float()
        if self._bad is None or names != self.names:
            self.names = list(names)
            self._bad = torch.zeros(len(names), dtype=torch.bool, device=self.device)
            self._values = torch.zeros(len(names), device=self.device)
        bad = ~torch.isfinite(values)
        newly = bad.any() & (self._step < 0)
        self._step = torch.where(newly, step, self._step)
        self._bad = torch.where(newly, bad, self._bad)
        self._values = torch.where(newly, values, self._values)

    def first(self) -> tuple[int, str] | None:
        """(step, "NAME is VALUE") of the first non-finite record, or None."""
        step = int(self._step)
        if step < 0:
            return None
        i = self._bad.tolist().index(True)
        return step, f"{self.names[i]} is {self._values.tolist()[i]}"


def write_metrics(path: Path, *, history: list[dict[str, float]], best: dict[str, Any] | None, select_by: str,
                  resumed_at: list[int]) -> dict[str, Any]:
    """A run's metrics.json: its last evaluation as ``final``, the best checkpoint's step and value
    (when one is kept), every evaluation and the steps it was resumed at; returns ``final``."""
    final = history[-1] if history else {}
    record = {} if best is None else {"best": {"step": best["step"], select_by: best["value"]}}
    write_json_atomic(path, {"final": final, **record, "history": history, "resumed_at": resumed_at})
    return final


@contextlib.contextmanager
def removing_unresumable(run_dirs: list[Path], fresh: list[bool]) -> Iterator[None]:
    """Around a training call: if it raises, every run folder without a checkpoint (nothing to
    resume) loses its logs, and one the call created (`fresh`) is removed when left empty."""
    try:
        yield
    except BaseException:
        for run_dir, new in zip(run_dirs, fresh):
            if not (run_dir / CHECKPOINT).is_file():
                shutil.rmtree(run_dir / "logs", ignore_errors=True)
                if new and run_dir.is_dir() and not any(run_dir.iterdir()):
                    run_dir.rmdir()
        raise


class TrainingLoop:
    """The loop the `Trainer` (one run) and the `PackedTrainer` (K runs) share: step, read the device
    at log, evaluation and checkpoint steps only (the NaN guard first), log, evaluate and keep the
    best, checkpoint, advance the progress bar. A subclass gives per-run lists of what it reads."""

    config: TrainConfig
    step: int
    progress: bool

    def describe_loop(self) -> str:
        raise NotImplementedError

    def train_step(self) -> Any:
        raise NotImplementedError

    def check_finite(self) -> None:
        raise NotImplementedError

    def read_runs(self, step_metrics: Any) -> list[dict[str, float]]:
        """Per run, the step's metrics as floats (one device read)."""
        raise NotImplementedError

    def evaluate_runs(self) -> list[dict[str, float]]:
        """Per run, its held-out evaluation (empty dicts without a held-out split)."""
        raise NotImplementedError

    def histories(self) -> list[list[dict[str, float]]]:
        raise NotImplementedError

    def keep_best_runs(self, val: list[dict[str, float]]) -> None:
        raise NotImplementedError

    def save_checkpoints(self) -> None:
        raise NotImplementedError

    def loop(self, loggers: list[Any]) -> None:
        cfg = self.config
        note = ""
        with progress_bar(self.progress, self.describe_loop(), cfg.steps, completed=self.step) as advance:
            while self.step < cfg.steps:
                step_metrics = self.train_step()
                last = self.step == cfg.steps
                log, evaluate = self.step % cfg.log_every == 0 or last, self.step % cfg.eval_every == 0 or last
                save = self.step % cfg.checkpoint_every == 0 or last
                if log or evaluate or save:  # the only steps that read the device
                    self.check_finite()
                    metrics = self.read_runs(step_metrics)
                    losses = [sum(v for k, v in m.items() if k.startswith("loss_")) for m in metrics]
                    note = (f"loss {losses[0]:.4f}" if len(losses) == 1 else
                            f"mean loss {sum(losses) / len(losses):.4f}")
                if log:
                    for logger, m in zip(loggers, metrics):
                        for k, v in m.items():
                            logger.log_scalar(k, v, step=self.step)
                if evaluate:
                    val = self.evaluate_runs()
                    for logger, m, v, history in zip(loggers, metrics, val, self.histories()):
                        for k, value in v.items():
                            logger.log_scalar(k, value, step=self.step)
                        history.append({"step": self.step, **m, **v})
                    self.keep_best_runs(val)
                if save:
                    self.save_checkpoints()
                advance(1, note=note)


class Trainer(TrainingLoop):
    """Trains `loss` (a TorchRL LossModule holding the model) on batches from `sample_train`.

    Every ``loss_*`` entry the loss returns is summed and minimised; ``metric_*`` entries are logged.

    `sample_train(batch_size)` and `sample_val(batch_size)` return TensorDicts; they must draw
    their randomness from the generators passed in `generators` (saved in checkpoints).
    `identity` (JSON-like: model settings, input SHA-256s) is saved too; a checkpoint written with
    another config or identity is refused rather than resumed.

    `keep_best` (a module inside `loss`, e.g. the model): after every evaluation, if its
    `select_by` entry is the lowest so far, a CPU copy of the module's weights is kept as
    ``self.best`` = {step, value, state} (in the checkpoint too, so a resumed run keeps the same
    best); early stopping as a reading, not a stop: training still runs to `config.steps`.
    """

    def __init__(
        self,
        *,
        loss: nn.Module,
        sample_train: Callable[[int], TensorDictBase],
        sample_val: Callable[[int], TensorDictBase] | None,
        config: TrainConfig,
        run_dir: str | Path,
        generators: dict[str, torch.Generator],
        val_generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
        describe: str = "train",
        identity: dict[str, Any] | None = None,
        keep_best: nn.Module | None = None,
        select_by: str = "val_loss_latent",
        compile_on_cuda: bool = False,
        after_step: Callable[[], None] | None = None,
        after_resume: Callable[[], None] | None = None,
        compile_options: dict[str, Any] | None = None,
    ):
        self.loss = loss
        self.after_step = after_step  # e.g. TorchRL's SoftUpdate.step: a target network follows each update
        self.after_resume = after_resume  # called once a checkpoint is loaded
        self.sample_train = sample_train
        self.sample_val = sample_val
        self.config = config
        self.run_dir = Path(run_dir)
        self.generators = generators
        self.val_generator = val_generator
        self.device = torch.device(device)
        self.progress = progress
        self.describe = describe
        self.identity = identity  # what else decides the run (model, data): resume only the same run
        self.step = 0
        self.optimizer = _optimizer(loss, config, self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, config))
        # Compiled when train.compile asks, and on CUDA when `compile_on_cuda` (a setting of speed, not of
        # results: the dynamics runs set it; the tokenizer's and policy's losses are not checked compiled).
        self._forward = compiled_or_eager(loss, enabled=config.compile or (compile_on_cuda and
                                                                             self.device.type == "cuda"),
                                          options=compile_options)
        self._guard = FiniteGuard(self.device)
        self._val_state = val_generator.get_state() if val_generator is not None else None
        if keep_best is not None and sample_val is None:
            raise ScaleworldError("keeping the best checkpoint needs held-out batches to choose it: pass sample_val")
        self.keep_best = keep_best
        self.select_by = select_by
        self.best: dict[str, Any] | None = None  # {step, value, state}: the kept weights, lowest `select_by`
        self.history: list[dict[str, float]] = []
        self.resumed_at: list[int] = []  # steps at which this run was resumed from its checkpoint

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "torch_rng": torch.get_rng_state(),
            "config": asdict(self.config),
            "identity": self.identity,
            "history": self.history,
            "resumed_at": self.resumed_at,
            "best": self.best,
        }
        with atomic_file(self.checkpoint_path, "wb") as f:
            torch.save(state, f)

    def try_resume(self) -> bool:
        state = read_checkpoint(self.checkpoint_path, config=self.config, identity=self.identity)
        if state is None:
            return False
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.history = state["history"]
        self.resumed_at = state.get("resumed_at", []) + [self.step]
        self.best = state.get("best")
        if self.after_resume is not None:
            self.after_resume()
        return True

    def _consider_best(self, val: dict[str, float]) -> None:
        """Keep the weights of `keep_best` if this evaluation is the best so far (ties: the earlier)."""
        if self.keep_best is None:
            return
        if self.select_by not in val:
            raise ScaleworldError(f"the best checkpoint is chosen by {self.select_by}, which the evaluation does not "
                                  "give: the run needs a validation split")
        value = val[self.select_by]
        if self.best is None or value < self.best["value"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.keep_best.state_dict().items()}
            self.best = {"step": self.step, "value": value, "state": state}

    # -- steps ---------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def train_step(self) -> dict[str, torch.Tensor]:
        """One update, with no host-device sync: returns the step's metrics as device scalars
        (`read_metrics` reads them), and records a non-finite loss term or gradient norm on the
        device (`check_finite` raises on it; `fit` calls it before every log, evaluation and
        checkpoint, so a NaN is reported at most ``log_every`` - 1 steps after it happened and
        never reaches a checkpoint)."""
        self.loss.train()
        batch = self.sample_train(self.config.batch_size).to(self.device, non_blocking=True)
        with self._autocast():
            out = self._forward(batch)
        terms = _loss_terms(out)
        total = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.loss.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step()
        self.scheduler.step()
        self.step += 1
        metrics = {**{k: v.detach() for k, v in terms.items()},
                   **{k: v.detach() for k, v in out.items() if isinstance(k, str) and k.startswith("metric_")},
                   "grad_norm": grad_norm.detach()}
        self._guard.record([*terms.items(), ("the gradient norm", grad_norm)], step=self.step)
        return metrics

    def read_metrics(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        """The step's metrics as floats (one device read for all of them) and the learning rate."""
        values = torch.stack([v.float() for v in metrics.values()]).tolist()
        return {**dict(zip(metrics, values)), "lr": self.scheduler.get_last_lr()[0]}

    def check_finite(self) -> None:
        """Raise TrainingDiverged naming the first step and term that was not finite (one device read)."""
        found = self._guard.first()
        if found is not None:
            step, what = found
            self._diverged(f"{what} at step {step}", seen=self.step)

    def _diverged(self, what: str, *, seen: int | None = None) -> None:
        where = (f"the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path.is_file()
                 else "no checkpoint was written yet")
        late = f" (found at step {seen}: the guard reads the device every log_every steps)" if seen else ""
        raise TrainingDiverged(f"{what}: training stopped{late}; {where}; lower train.lr or check the data")

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss terms over `eval_batches` validation batches; the same batches every time."""
        if self.sample_val is None:
            return {}
        self.loss.eval()
        if self._val_state is not None:
            self.val_generator.set_state(self._val_state)
        sums: dict[str, torch.Tensor] = {}
        for _ in range(self.config.eval_batches):
            with self._autocast():
                out = self.loss(self.sample_val(self.config.batch_size).to(self.device, non_blocking=True))
            for k, v in _loss_terms(out).items():
                sums[k] = sums.get(k, 0.0) + v.float()
        values = torch.stack(list(sums.values())).tolist() if sums else []  # one device read
        return {f"val_{k}": v / self.config.eval_batches for k, v in zip(sums, values)}

    # -- the loop's per-run view of one run ------------------------------------------------------
    def describe_loop(self) -> str:
        return self.describe

    def read_runs(self, step_metrics: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        return [self.read_metrics(step_metrics)]

    def evaluate_runs(self) -> list[dict[str, float]]:
        return [self.evaluate()]

    def histories(self) -> list[list[dict[str, float]]]:
        return [self.history]

    def keep_best_runs(self, val: list[dict[str, float]]) -> None:
        self._consider_best(val[0])

    def save_checkpoints(self) -> None:
        self.save_checkpoint()

    def fit(self) -> dict[str, Any]:
        """Train to `config.steps` (resuming if a checkpoint exists); returns the final metrics."""
        from torchrl.record.loggers import get_logger

        new = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with removing_unresumable([self.run_dir], [new]):
            self.try_resume()
            try:
                logger = get_logger(self.config.logger, logger_name=str(self.run_dir), experiment_name="logs")
            except ImportError as exc:
                raise ScaleworldError(f"train.logger={self.config.logger}: {exc}; install it or use csv") from None
            self.loop([logger])
        return write_metrics(self.run_dir / "metrics.json", history=self.history, best=self.best,
                             select_by=self.select_by, resumed_at=self.resumed_at)
