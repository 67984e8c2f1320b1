"""The dynamics kind: a dynamics transformer on token datasets (one game: single; several: joint),
alone or packed with others of its shape (`launcher.pack`: scaleworld.study.packing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.errors import ScaleworldError
from scaleworld.study.assumptions import flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RunContext, TrainingStage
from scaleworld.study.kinds.tokens import TokensStage
from scaleworld.study.meter import WorkContext, dynamics_shape, shape_key, synthetic_token_windows


@dataclass(frozen=True, kw_only=True)
class DynamicsStage(TrainingStage):
    """A dynamics transformer on the token datasets of its inputs (one: single; all: joint)."""

    KIND = "dynamics"
    ARTIFACT = "dynamics.pt"
    PACKS = True
    windows: str | None = None
    """Training windows other than the default ``inside`` (scaleworld.data.windows); unset
    for the default, so the identities of studies that do not choose are those of before."""

    termination: str | None = None
    """A termination target other than the default ``game_over``
    (scaleworld.models.dynamics_config.TERMINATION_TARGETS); unset for the default."""

    validation: float | None = None
    """Share of the training episodes held out as the validation split that picks the best
    checkpoint (early stopping as a second reading); unset: none, final checkpoint only."""

    def check(self) -> None:
        super().check()
        from scaleworld.data.windows import WINDOWS
        from scaleworld.models.dynamics_config import TERMINATION_TARGETS

        if self.validation is not None and not 0.0 < self.validation < 1.0:
            raise ScaleworldError(f"validation={self.validation} must be in (0, 1), or unset for none")

        if self.windows not in (None, *WINDOWS[1:]):
            raise ScaleworldError(f"windows={self.windows!r}: use {' or '.join(WINDOWS)}")
        if self.termination not in (None, *TERMINATION_TARGETS[1:]):
            raise ScaleworldError(f"termination={self.termination!r}: use {' or '.join(TERMINATION_TARGETS)}")

    def model_config(self) -> Any:
        from scaleworld.models.dynamics_config import DynamicsConfig

        return DynamicsConfig.from_dict(self.model)

    def parameters(self) -> int:
        from scaleworld.models.dynamics_config import parameter_counts

        return parameter_counts(self.model_config())["total"]

    def model_files(self) -> int:
        return 2 if self.validation else 1  # dynamics.pt, and dynamics_best.pt with a validation split

    def arguments(self, ctx: RunContext) -> dict[str, Any]:
        """`train_dynamics`'s keyword arguments for this job (but progress and device)."""
        from scaleworld.data.windows import WINDOWS
        from scaleworld.models.dynamics_config import TERMINATION_TARGETS

        return dict(token_dirs=ctx.artifacts(TokensStage), out=ctx.out, model=self.model_config(),
                    train=self.train_config(), windows=self.windows or WINDOWS[0],
                    termination=self.termination or TERMINATION_TARGETS[0],
                    validation_fraction=self.validation or 0.0, val_fraction=self.val_fraction,
                    split_seed=self.split_seed)

    def outputs(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"dynamics": self.ARTIFACT, "params": info["params"], "tokens_seen": info["tokens_seen"],
                "final": info["final"], **({"best": info["best"]} if "best" in info else {})}

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.training.runs import train_dynamics
        from scaleworld.training.trainer import resolve_device

        return self.outputs(train_dynamics(**self.arguments(ctx), progress=False, device=resolve_device()))

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Tokens trained (steps x batch x context) at the Trainer's rate on DynamicsLoss (compiled on
        CUDA, as runs are), and held-out batches at the forward rate."""
        from scaleworld.objectives.world_model import DynamicsLoss

        meter, shape = ctx.meter, dynamics_shape(ctx)
        train, tokens = shape.train, shape.tokens
        rate = meter.rate(shape_key(self.KIND, shape.model, train["batch_size"]), lambda: meter.training(
            DynamicsLoss(shape.net(meter.device)), synthetic_token_windows(shape.model, meter.device), train, tokens,
            compile_on_cuda=True))
        evaluation = (train["steps"] // train["eval_every"] + 1) * train["eval_batches"] * tokens
        return train["steps"] * tokens / rate + evaluation / shape.forward, f"{rate:,.0f} tokens/s", False

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Its training FLOPs (`training_flops`); held-out batches left out (a few percent)."""
        return flops_seconds(self.training_flops())

    def training_flops(self) -> float:
        """Training FLOPs: 6 x parameters x tokens (one token per time step)."""
        from scaleworld.models.dynamics_config import parameter_counts

        model = self.model_config()
        return 6.0 * parameter_counts(model)["total"] * self.train["steps"] * self.train["batch_size"] * model.context


def run_pack(stages: list[DynamicsStage], contexts: list[RunContext]) -> list[dict[str, Any]]:
    """Several dynamics jobs trained as one pack (scaleworld.training.packed); each one's outputs."""
    from scaleworld.training.packed import pack_runs
    from scaleworld.training.trainer import resolve_device

    infos = pack_runs([s.arguments(c) for s, c in zip(stages, contexts)], progress=False, device=resolve_device())
    return [{**s.outputs(info), "packed_with": [c.job.id for c in contexts]}
            for s, c, info in zip(stages, contexts, infos)]
