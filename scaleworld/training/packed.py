"""Packed training: K dynamics runs of one model shape trained in one process as one batched model.

A GPU is badly used by one small run (the study's batch is 64 x 64 tokens, most of its models are
small): packing K runs (the seeds of one size and game, or several games' single runs) makes every
matmul K times larger. Each run keeps all that makes it itself: its initialisation (made exactly as
a separate run makes it), its data stream (its own samplers and generator), its optimiser state,
its gradient clipping, its run folder, checkpoint, logs and metrics. The parameters of the K models
are stacked ([K, ...] per tensor, `torch.func.stack_module_state`) and the loss is `torch.func.vmap`-ed
over them and over the K batches ([K, B, T]); the loss of the pack is the sum of the K losses, so
each run's gradient is its own loss's. AdamW is elementwise, so one optimiser over the stacked
tensors steps each run as its own would; the clipping norm is computed per run.

Host time per step: the K batches are drawn by the runs' own samplers and gathered at once
(`PackedWindows`, not K gathers and a stack); the per-run clip (a norm and a multiply per parameter:
73 of each at paper-d2, 313 at d12) is compiled on CUDA, where inductor fuses it into a few kernels;
the NaN guard records one [4K] tensor. (Keeping the weights in flat [K, N] tensors instead, for a
one-kernel clip, made every weight a strided view: on CPU packed steps slowed by 15-20%, so not.)

Checkpoints are written per run in the `Trainer`'s format (the run's slice of every stacked tensor
and of the optimiser's moments), so a packed run resumes packed or alone, and a run's files do not
say whether it was packed. Equality with separate runs is not bitwise: vmap computes the K runs'
matmuls as batched GEMMs, whose summation order differs in the last bit (1e-7 on one step's
gradients on CPU); tests/test_packed_training.py states the tolerance it measured.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from scaleworld.data.files import atomic_file
from scaleworld.data.sampling import PackedWindows
from scaleworld.errors import ScaleworldError
from scaleworld.training.config import TrainConfig
from scaleworld.training.runs import DynamicsRun
from scaleworld.training.trainer import (
    CHECKPOINT,
    FiniteGuard,
    TrainingDiverged,
    TrainingLoop,
    compiled_or_eager,
    lr_factor,
    read_checkpoint,
    removing_unresumable,
    write_metrics,
)

LOSS_TERMS = ("loss_latent", "loss_reward", "loss_termination")


class PackedTrainer(TrainingLoop):
    """Trains the K `DynamicsRun`s of `runs` (same model config, same `config` but for the seed) together.

    The trainer's contract is the `Trainer`'s, per run: resume from each run's checkpoint (all at the
    same step), the NaN guard (naming the run), held-out evaluation, keep_best, metrics.json.
    """

    def __init__(self, *, runs: Sequence[DynamicsRun], configs: Sequence[TrainConfig], device: str | torch.device,
                 progress: bool = True, compile_options: dict[str, Any] | None = None):
        if not runs:
            raise ScaleworldError("a pack needs at least one run")
        models = {repr(r.info["model"]) for r in runs}
        settings = {repr({**asdict(c), "seed": 0}) for c in configs}
        if len(models) != 1 or len(settings) != 1 or len({r.loss.termination for r in runs}) != 1:
            raise ScaleworldError("a pack's runs must share the model and every training setting but the seed")
        self.runs = list(runs)
        self.configs = list(configs)
        self.config = configs[0]
        self.device = torch.device(device)
        self.progress = progress
        self.step = 0
        models = [r.net.to(self.device) for r in runs]
        self.names = [n for n, _ in models[0].named_parameters()]
        self.params, self.buffers = stack_module_state(models)  # name -> [K, ...] leaves
        self.template = copy.deepcopy(runs[0].loss).to("meta")  # the loss code; its weights are never used
        decay = [self.params[n] for n in self.names if self.params[n].dim() >= 3]  # a run's matrices
        rest = [self.params[n] for n in self.names if self.params[n].dim() < 3]
        self.order = [n for n in self.names if self.params[n].dim() >= 3] + [n for n in self.names
                                                                          if self.params[n].dim() < 3]
        c = self.config
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=c.lr, betas=(c.beta1, c.beta2), fused=self.device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, c))
        batched = vmap(self._one_run, randomness="error")  # "error": the step draws no randomness per run
        compiled = c.compile or self.device.type == "cuda"
        self._forward = compiled_or_eager(batched, enabled=compiled, options=compile_options)
        self._clip = compiled_or_eager(clip_per_run, enabled=self.device.type == "cuda", options=compile_options)
        self._guard = FiniteGuard(self.device)
        self._guard_names = ([f"run {k} ({r.out.name}): {name}" for k, r in enumerate(runs) for name in LOSS_TERMS]
                             + [f"run {k} ({r.out.name}): the gradient norm" for k, r in enumerate(runs)])
        self._train_windows = PackedWindows([r.train_view for r in runs])
        has_val = all(r.val_view is not None for r in runs)
        self._val_windows = PackedWindows([r.val_view for r in runs]) if has_val else None
        self.torch_rng = [torch.get_rng_state() for _ in runs]  # each run's, saved in its checkpoint (pack_runs)
        self.history: list[list[dict[str, float]]] = [[] for _ in runs]
        self.resumed_at: list[list[int]] = [[] for _ in runs]
        self.best: list[dict[str, Any] | None] = [None for _ in runs]
        self._val_states = [r.val_generator.get_state() for r in runs]

    def _one_run(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
        """One run's loss terms [3] (vmapped over the K runs)."""
        loss = self.template
        out = functional_call(loss.model, (params, buffers), loss.model_inputs(batch))
        terms = loss.reduce(batch, out)
        return torch.stack([terms[k] for k in LOSS_TERMS])

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    # -- checkpoints: each run's in the Trainer's format ----------------------------------------
    def _run_state(self, k: int) -> dict[str, Any]:
        optimizer = self.optimizer.state_dict()
        state = {i: {key: (v[k] if key != "step" else v).detach().cpu().clone() for key, v in s.items()}
                 for i, s in optimizer["state"].items()}
        return {
            "step": self.step,
            "loss": {f"model.{n}": self.params[n][k].detach().cpu().clone() for n in self.names},
            "optimizer": {"state": state, "param_groups": optimizer["param_groups"]},
            "scheduler": self.scheduler.state_dict(),
            "generators": {"train": self.runs[k].generator.get_state()},
            "torch_rng": self.torch_rng[k],
            "config": asdict(self.configs[k]),
            "identity": self.runs[k].identity,
            "history": self.history[k],
            "resumed_at": self.resumed_at[k],
            "best": self.best[k],
        }

    def save_checkpoints(self) -> None:
        for k, run in enumerate(self.runs):
            with atomic_file(run.out / CHECKPOINT, "wb") as f:
                torch.save(self._run_state(k), f)

    def try_resume(self) -> bool:
        states = [read_checkpoint(r.out / CHECKPOINT, config=c, identity=r.identity)
                  for r, c in zip(self.runs, self.configs)]
        if all(s is None for s in states):
            return False
        steps = {s["step"] if s else 0 for s in states}
        if len(steps) != 1:
            raise ScaleworldError(f"the runs of this pack stopped at different steps ({sorted(steps)}): train them "
                                  "separately (pack: 1)")
        with torch.no_grad():
            for n in self.names:
                self.params[n].copy_(torch.stack([s["loss"][f"model.{n}"] for s in states]))
        moments = [s["optimizer"]["state"] for s in states]
        stacked = {i: {key: (torch.stack([m[i][key] for m in moments]) if key != "step" else v)
                       for key, v in moments[0][i].items()} for i in moments[0]}
        # the groups as written (their lr is the schedule's at the checkpoint's step)
        self.optimizer.load_state_dict({"state": stacked, "param_groups": states[0]["optimizer"]["param_groups"]})
        self.scheduler.load_state_dict(states[0]["scheduler"])
        for k, (run, s) in enumerate(zip(self.runs, states)):
            run.generator.set_state(s["generators"]["train"])
            self.torch_rng[k] = s["torch_rng"]
            self.history[k] = s["history"]
            self.resumed_at[k] = s.get("resumed_at", []) + [s["step"]]
            self.best[k] = s.get("best")
        self.step = states[0]["step"]
        return True

    # -- steps ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        """One update of every run, no host-device sync; metrics are device tensors [K]."""
        batch = self._train_windows.sample(self.config.batch_size)  # [K, B, T]
        with self._autocast():
            terms = self._forward(self.params, self.buffers, batch)  # [K, 3]
        self.optimizer.zero_grad(set_to_none=True)
        terms.sum().backward()  # run k's parameters get run k's gradient only
        grad_norm = self._clip([self.params[n].grad for n in self.names], self.config.grad_clip)  # [K]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics = {**{name: terms[:, i].detach() for i, name in enumerate(LOSS_TERMS)}, "grad_norm": grad_norm}
        self._guard.record_values(self._guard_names, torch.cat([terms.detach().flatten(), grad_norm]), step=self.step)
        return metrics

    def check_finite(self) -> None:
        found = self._guard.first()
        if found is not None:
            step, what = found
            raise TrainingDiverged(f"{what} at step {step}: the pack stopped (found at step {self.step}: the guard "
                                   "reads the device every log_every steps); each run's last good checkpoint stands; "
                                   "lower train.lr or check the data")

    def read_metrics(self, metrics: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        """Per run, its metrics as floats (one device read) and the learning rate."""
        table = torch.stack([v.float() for v in metrics.values()], dim=1).tolist()  # [K, M]
        lr = self.scheduler.get_last_lr()[0]
        return [{**dict(zip(metrics, row)), "lr": lr} for row in table]

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """Per run, the mean loss terms over `eval_batches` batches of its own held-out split."""
        if self._val_windows is None:
            return [{} for _ in self.runs]
        for run, state in zip(self.runs, self._val_states):
            run.val_generator.set_state(state)
        total = torch.zeros(len(self.runs), len(LOSS_TERMS), device=self.device)
        for _ in range(self.config.eval_batches):
            with self._autocast():
                total += vmap(self._one_run, randomness="error")(
                    self.params, self.buffers, self._val_windows.sample(self.config.batch_size)).float()
        table = (total / self.config.eval_batches).tolist()
        return [{f"val_{name}": row[i] for i, name in enumerate(LOSS_TERMS)} for row in table]

    def _consider_best(self, val: list[dict[str, float]]) -> None:
        for k, run in enumerate(self.runs):
            if not run.keep_best:
                continue
            value = val[k]["val_loss_latent"]
            if self.best[k] is None or value < self.best[k]["value"]:
                state = {n: self.params[n][k].detach().to("cpu", copy=True) for n in self.names}
                self.best[k] = {"step": self.step, "value": value, "state": state}

    # -- the loop's per-run view ---------------------------------------------------------------
    def describe_loop(self) -> str:
        return f"{self.runs[0].describe} x{len(self.runs)} packed"

    def read_runs(self, step_metrics: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        return self.read_metrics(step_metrics)

    def evaluate_runs(self) -> list[dict[str, float]]:
        return self.evaluate()

    def histories(self) -> list[list[dict[str, float]]]:
        return self.history

    def keep_best_runs(self, val: list[dict[str, float]]) -> None:
        self._consider_best(val)

    def fit(self) -> list[dict[str, Any]]:
        """Train every run to `config.steps` (resuming from their checkpoints); returns each run's final
        metrics, with the trained weights back in each run's `net`."""
        from torchrl.record.loggers import get_logger

        new = [not r.out.exists() for r in self.runs]
        for r in self.runs:
            r.out.mkdir(parents=True, exist_ok=True)
        with removing_unresumable([r.out for r in self.runs], new):
            self.try_resume()
            loggers = [get_logger(self.config.logger, logger_name=str(r.out), experiment_name="logs")
                       for r in self.runs]
            self.loop(loggers)
        finals = [write_metrics(r.out / "metrics.json", history=self.history[k], best=self.best[k],
                                select_by="val_loss_latent", resumed_at=self.resumed_at[k])
                  for k, r in enumerate(self.runs)]
        with torch.no_grad():
            for k, r in enumerate(self.runs):
                for n, p in r.net.named_parameters():
                    p.copy_(self.params[n][k])
        return finals


def clip_per_run(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each run's gradient to `max_norm` as clip_grad_norm_ would alone: grads are the stacked
    parameters' gradients [K, ...]; returns each run's norm before clipping [K]."""
    per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1).float(), dim=1) for g in grads])  # [P, K]
    grad_norm = torch.linalg.vector_norm(per_param, dim=0)  # [K]
    scale = (max_norm / (grad_norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return grad_norm


def pack_runs(specs: Sequence[dict[str, Any]], *, device: str | torch.device = "cpu",
              progress: bool = True) -> list[dict[str, Any]]:
    """Train the dynamics runs described by `specs` (each `train_dynamics`'s keyword arguments but
    progress and device) as one pack; returns each run's run.json record, as `train_dynamics` would."""
    from scaleworld.training.runs import finish_dynamics, prepare_dynamics

    runs, rngs = [], []
    for spec in specs:
        runs.append(prepare_dynamics(**spec, device=device))  # initialised exactly as a separate run is
        rngs.append(torch.get_rng_state())  # what a separate run would checkpoint (training draws nothing)
    trainer = PackedTrainer(runs=runs, configs=[s["train"] for s in specs], device=device, progress=progress)
    trainer.torch_rng = rngs  # a resume replaces them with the checkpoints'
    finals = trainer.fit()
    return [finish_dynamics(r, final=f, best=b) for r, f, b in zip(runs, finals, trainer.best)]

