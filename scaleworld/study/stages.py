"""One home per job kind: the typed config a job of that kind is built from and run with, and the
name of what it leaves in its folder. The graph builds a `Job` from a stage (`Stage.job`), the
runner reads the stage back (`stage_of`), and readers of a finished job find its artifact by name.

A stage's `config()` is the job's hashed config, field for field (optional fields left out when
unset), so job identities are those of the untyped dicts the graph wrote before (pinned by
tests/test_job_identities.py). Nested settings stay plain dicts: each has its own dataclass
(Protocol, TokenizerConfig, DynamicsConfig, TrainConfig, PolicyConfig, RegimeRule's fields) that
the runner builds from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from scaleworld.study.graph import KINDS, Job


@dataclass(frozen=True, kw_only=True)
class Stage:
    KIND: ClassVar[str]
    ARTIFACT: ClassVar[str]
    """The file or folder in the job's folder that its consumers read."""

    def config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (getattr(self, f.name) is None and f.default is None)}

    def job(self, inputs: list[str], labels: dict[str, Any], checks: dict[str, Any] | None = None) -> Job:
        return Job(self.KIND, self.config(), inputs, labels, checks=checks or {})


@dataclass(frozen=True, kw_only=True)
class ExpertStage(Stage):
    """A PPO expert trained on the game, then scored: the upper anchor."""

    KIND = "expert"
    ARTIFACT = "expert"
    game: str
    protocol: dict[str, Any]
    frames: int
    num_envs: int
    seed: int
    episodes: int


@dataclass(frozen=True, kw_only=True)
class CollectStage(Stage):
    """The fixed offline dataset of a game. `policy`: {source: random | ppo | a folder, sha256 of an
    imported expert's weights, sampling, epsilon}."""

    KIND = "collect"
    ARTIFACT = "dataset"
    game: str
    protocol: dict[str, Any]
    policy: dict[str, Any]
    steps: int
    num_envs: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class _TrainingStage(Stage):
    """A model trained on its inputs' datasets, their episodes split by `split_seed`."""

    model: dict[str, Any]
    train: dict[str, Any]
    val_fraction: float
    split_seed: int


@dataclass(frozen=True, kw_only=True)
class TokenizerStage(_TrainingStage):
    """One tokenizer for the games of its collect inputs, on the dynamics models' episode split."""

    KIND = "tokenizer"
    ARTIFACT = "tokenizer.pt"


@dataclass(frozen=True, kw_only=True)
class TokensStage(Stage):
    """A game's dataset encoded by its tokenizer (behind the quality gate, a `Job.checks` entry)."""

    KIND = "tokens"
    ARTIFACT = "tokens"


@dataclass(frozen=True, kw_only=True)
class DynamicsStage(_TrainingStage):
    """A dynamics transformer on the token datasets of its inputs (one: single; all: joint)."""

    KIND = "dynamics"
    ARTIFACT = "dynamics.pt"


@dataclass(frozen=True, kw_only=True)
class FidelityStage(Stage):
    """Held-out NLL, reward and termination errors, open-loop PSNR of one dynamics model."""

    KIND = "fidelity"
    ARTIFACT = "fidelity.json"
    context_steps: int
    horizon: int
    rollouts: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class AnchorStage(Stage):
    """A game's normalisation anchors: the random policy's score and the upper one (`upper`: expert
    or human). `expert`: {source, episodes, sha256} of an imported expert the job scores itself."""

    KIND = "anchor"
    ARTIFACT = "anchor.json"
    game: str
    protocol: dict[str, Any]
    episodes: int
    num_envs: int
    seed: int
    upper: str
    expert: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyStage(Stage):
    """An actor-critic trained purely inside one world model, for one game."""

    KIND = "policy"
    ARTIFACT = "policy.pt"
    policy: dict[str, Any]
    train: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ControlStage(Stage):
    """A policy's score in its real game, raw and normalised by the game's anchors."""

    KIND = "control"
    ARTIFACT = "control.json"
    episodes: int
    num_envs: int
    seed: int
    greedy: bool
    protocol: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class AnalysisStage(Stage):
    """The study's regimes, fits, paired tests and aggregate scores. `rule`: the regime rule's
    settings and the bootstrap's reps and seed."""

    KIND = "analysis"
    ARTIFACT = "analysis.json"
    rule: dict[str, Any]


STAGES: dict[str, type[Stage]] = {s.KIND: s for s in (ExpertStage, CollectStage, TokenizerStage, TokensStage,
                                                      DynamicsStage, FidelityStage, AnchorStage, PolicyStage,
                                                      ControlStage, AnalysisStage)}


assert tuple(STAGES) == KINDS, "one stage per kind, in dependency order"


def stage_of(job: Job) -> Any:
    """The typed config of `job` (a Stage subclass instance, by its kind)."""
    return STAGES[job.kind](**job.config)
