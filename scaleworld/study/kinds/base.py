"""What every job kind has: its typed stage (the config a job of the kind is built from and run with),
the name of what it leaves in its folder, whether it wants a GPU, and how it runs.

A stage's `config()` is the job's hashed config, field for field (optional fields left out when
unset), so job identities are those of the untyped dicts the graph wrote before (pinned by
tests/test_job_identities.py). Nested settings stay plain dicts: each has its own dataclass
(Protocol, PPOConfig, TokenizerConfig, DynamicsConfig, TrainConfig, PolicyConfig, RegimeRule) that
the runner builds from it through the stage's methods, and `check()` builds them all: `job()` calls
it, so a setting a job would refuse is refused when the graph is built (`scaleworld validate`),
by the same code, before anything runs.

Kind modules import what their runner needs inside `run`: the graph, `scaleworld validate` and
`plan` import every kind module, and must not wait for torch.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from scaleworld.errors import ScaleworldError
from scaleworld.study.graph import Graph, Job
from scaleworld.study.meter import WorkContext

RECORD_BYTES = 100_000
"""Disk of a job's records (job.json, done.json, logs, metrics): at most this, measured on the smoke
study (its largest, the analysis job's, is 48 kB)."""
BYTES_PER_PARAMETER = 4
"""Model files hold float32 weights (measured on the smoke study: dynamics.pt 4.0 bytes a parameter)."""
CHECKPOINT_SIZE = 3.0
"""A trainer's checkpoint.pt over its model file: weights and AdamW's two moments (measured on the smoke
study: tokenizer 3.0x, dynamics 3.0x)."""


def at_least(minimum: int, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < minimum:
            raise ScaleworldError(f"{name}={value!r} must be an integer of at least {minimum}")


@dataclass
class RunContext:
    """One job being run: where its inputs and its own folder are."""

    store: Any
    """The run root (`scaleworld.study.store.RunStore`: it imports the kinds, so not imported here)."""
    graph: Graph
    job: Job
    out: Path
    """The job's own folder."""

    def inputs(self, kind: str) -> list[Path]:
        """The folders of the job's inputs of `kind`, in input order."""
        return [self.store.job_dir(self.graph.jobs[i]) for i in self.job.inputs if self.graph.jobs[i].kind == kind]

    def artifacts(self, stage: type[Stage]) -> list[Path]:
        """The artifact of each input of `stage`'s kind (a dataset folder, a token folder, ...)."""
        return [folder / stage.ARTIFACT for folder in self.inputs(stage.KIND)]

    def fresh(self, artifact: str) -> None:
        """Remove staging folders and an artifact whose done.json was never written: a kind that
        does not resume (collection, encoding) starts again from nothing."""
        for stale in self.out.glob(".*.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if (self.out / artifact).exists():
            shutil.rmtree(self.out / artifact)


@dataclass(frozen=True, kw_only=True)
class Stage:
    KIND: ClassVar[str]
    ARTIFACT: ClassVar[str]
    """The file or folder in the job's folder that its consumers read."""
    GPU: ClassVar[bool] = False
    """Does a job of this kind use a GPU when one is given? (Executors pin such jobs to a GPU of their own.)"""
    PACKS: ClassVar[bool] = False
    """May jobs of this kind train together as one pack (``launcher.pack``: scaleworld.study.packing)?"""
    RUNS_ON_WHAT_FINISHED: ClassVar[bool] = False
    """Does a job of this kind run once every input has ended, finished or not (failed, or never run
    because a failure upstream blocked it), on the inputs that finished? Its done.json then names the
    inputs it went without; once one of them finishes it is stale and runs again (RunStore)."""
    RESUME_STATE: ClassVar[tuple[str, ...]] = ()
    """Files in the job's folder that only a resumed run reads (weights, optimiser moments, RNG states):
    dropped once the job is done unless ``launcher.keep_checkpoints`` (no consumer reads them)."""

    def config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (getattr(self, f.name) is None and f.default is None)}

    def check(self) -> None:
        """Build every typed setting the runner will build (each raises `ScaleworldError` on a
        value it refuses)."""
        if "protocol" in self.__dataclass_fields__:
            self.protocol_config()
        for name in ("seed", "split_seed"):
            if name in self.__dataclass_fields__:
                at_least(0, **{name: getattr(self, name)})

    def protocol_config(self) -> Any:
        from scaleworld.atari.protocol import Protocol

        return Protocol(**self.protocol)  # type: ignore[attr-defined]

    def job(self, inputs: list[str], labels: dict[str, Any], checks: dict[str, Any] | None = None) -> Job:
        try:
            self.check()
        except ScaleworldError as exc:
            what = " ".join(f"{k}={v}" for k, v in labels.items() if k != "variants")
            raise ScaleworldError(f"the {self.KIND} job ({what}) would refuse its settings: {exc}") from None
        return Job(self.KIND, self.config(), inputs, labels, checks=checks or {})

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Run the job from its inputs' folders into `ctx.out`; returns done.json's ``outputs``."""
        raise NotImplementedError

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """`plan --calibrate`: (seconds of this job on the calibrating machine, the rate it used, is the
        figure an upper bound). A kind that does not override it is not measured (seconds of numpy)."""
        return 0.0, "not measured (seconds)", False

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """`plan`'s estimate of this job's seconds under the stated assumptions
        (`scaleworld.study.assumptions`); every kind states its own."""
        raise NotImplementedError(f"the {self.KIND} kind states no assumed cost")

    def training_flops(self) -> float:
        """FLOPs of the job's training, for the MFU `plan --calibrate` reports (0: none counted)."""
        return 0.0

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        """What a finished job of this kind leaves on disk, estimated before it runs from its settings
        and its input jobs' (`inputs`): the files its consumers read, plus its resume state when
        `keep` (``launcher.keep_checkpoints``). A kind that does not override it writes records only."""
        return RECORD_BYTES


@dataclass(frozen=True, kw_only=True)
class TrainingStage(Stage):
    """A model trained on its inputs' datasets, their episodes split by `split_seed`."""

    GPU = True
    RESUME_STATE = ("checkpoint.pt",)  # scaleworld.training.trainer.CHECKPOINT
    model: dict[str, Any]
    train: dict[str, Any]
    val_fraction: float
    split_seed: int

    def train_config(self) -> Any:
        from scaleworld.training.config import TrainConfig

        return TrainConfig(**self.train)

    def model_config(self) -> Any:
        raise NotImplementedError

    def parameters(self) -> int:
        """The trained model's parameter count, by formula (for `disk_bytes`)."""
        raise NotImplementedError

    def model_files(self) -> int:
        """Model files a finished job keeps (the final weights; dynamics: and the best)."""
        return 1

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        weights = BYTES_PER_PARAMETER * self.parameters()
        return weights * (self.model_files() + (CHECKPOINT_SIZE if keep else 0)) + RECORD_BYTES

    def check(self) -> None:
        super().check()
        self.train_config()
        self.model_config()
        if not 0.0 <= self.val_fraction < 1.0:
            raise ScaleworldError(f"val_fraction={self.val_fraction} must be in [0, 1)")
