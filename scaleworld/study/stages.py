"""One home per job kind: the typed config a job of that kind is built from and run with, and the
name of what it leaves in its folder. The graph builds a `Job` from a stage (`Stage.job`), the
runner reads the stage back (`stage_of`), and readers of a finished job find its artifact by name.

A stage's `config()` is the job's hashed config, field for field (optional fields left out when
unset), so job identities are those of the untyped dicts the graph wrote before (pinned by
tests/test_job_identities.py). Nested settings stay plain dicts: each has its own dataclass
(Protocol, PPOConfig, TokenizerConfig, DynamicsConfig, TrainConfig, PolicyConfig, RegimeRule) that
the runner builds from it through the stage's methods, and `check()` builds them all: `job()` calls
it, so a setting a job would refuse is refused when the graph is built (`scaleworld validate`),
by the same code, before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from scaleworld.errors import ScaleworldError
from scaleworld.study.graph import KINDS, Job


def _at_least(minimum: int, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < minimum:
            raise ScaleworldError(f"{name}={value!r} must be an integer of at least {minimum}")


@dataclass(frozen=True, kw_only=True)
class Stage:
    KIND: ClassVar[str]
    ARTIFACT: ClassVar[str]
    """The file or folder in the job's folder that its consumers read."""

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
                _at_least(0, **{name: getattr(self, name)})

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


@dataclass(frozen=True, kw_only=True)
class ExpertStage(Stage):
    """A PPO expert trained on the game for `agent_steps` (x frame skip = frames), then scored: the
    upper anchor. `episodic_life`, `fire_reset`: PPOConfig's learning-only signals."""

    KIND = "expert"
    ARTIFACT = "expert"
    game: str
    protocol: dict[str, Any]
    agent_steps: int
    num_envs: int
    seed: int
    episodes: int
    episodic_life: bool
    fire_reset: bool

    def ppo_config(self) -> Any:
        from scaleworld.experts.ppo_config import PPOConfig

        return PPOConfig(agent_steps=self.agent_steps, seed=self.seed, num_envs=self.num_envs,
                         episodic_life=self.episodic_life, fire_reset=self.fire_reset)

    def check(self) -> None:
        super().check()
        self.ppo_config()
        _at_least(1, episodes=self.episodes)


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

    def check(self) -> None:
        super().check()
        _at_least(1, steps=self.steps, num_envs=self.num_envs)


@dataclass(frozen=True, kw_only=True)
class _TrainingStage(Stage):
    """A model trained on its inputs' datasets, their episodes split by `split_seed`."""

    model: dict[str, Any]
    train: dict[str, Any]
    val_fraction: float
    split_seed: int

    def train_config(self) -> Any:
        from scaleworld.training.config import TrainConfig

        return TrainConfig(**self.train)

    def model_config(self) -> Any:
        raise NotImplementedError

    def check(self) -> None:
        super().check()
        self.train_config()
        self.model_config()
        if not 0.0 <= self.val_fraction < 1.0:
            raise ScaleworldError(f"val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class TokenizerStage(_TrainingStage):
    """One tokenizer for the games of its collect inputs, on the dynamics models' episode split."""

    KIND = "tokenizer"
    ARTIFACT = "tokenizer.pt"

    def model_config(self) -> Any:
        from scaleworld.models.tokenizer_config import TokenizerConfig

        return TokenizerConfig.from_dict(self.model)


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


@dataclass(frozen=True, kw_only=True)
class FidelityStage(Stage):
    """Held-out NLL, reward and termination errors, open-loop PSNR of one dynamics model."""

    KIND = "fidelity"
    ARTIFACT = "fidelity.json"
    context_steps: int
    horizon: int
    rollouts: int
    seed: int
    measures: str = "fidelity/3"
    """What the job measures, so that a new measure redoes finished fidelity jobs: ``fidelity/3`` adds
    the unigram and copy-last-frame baselines; ``fidelity/2`` the training-split NLL (regime-rule/2's
    mechanism check); ``fidelity/1`` (absent) before."""

    def check(self) -> None:
        super().check()
        _at_least(1, context_steps=self.context_steps, horizon=self.horizon, rollouts=self.rollouts)
        if self.measures != FidelityStage.measures:
            raise ScaleworldError(f"measures={self.measures!r}: this scaleworld measures {FidelityStage.measures!r}; "
                                  "run the study with the scaleworld that planned it")


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

    def check(self) -> None:
        super().check()
        _at_least(1, episodes=self.episodes, num_envs=self.num_envs)
        if self.upper not in ("expert", "human"):
            raise ScaleworldError(f"upper={self.upper!r}: use expert or human")
        if self.expert is not None:
            _at_least(1, episodes=self.expert["episodes"])


@dataclass(frozen=True, kw_only=True)
class PolicyStage(Stage):
    """An actor-critic trained purely inside one world model, for one game."""

    KIND = "policy"
    ARTIFACT = "policy.pt"
    policy: dict[str, Any]
    train: dict[str, Any]
    starts: str | None = None
    """Which episodes of the model's split imagination starts from (`START_SPLITS`); None: held_out
    (what every policy job did before the choice existed, so those jobs keep their identities)."""

    def policy_config(self) -> Any:
        from scaleworld.imagination.config import PolicyConfig

        return PolicyConfig(**self.policy)

    def start_split(self) -> str:
        """The split imagination starts from (unset: held_out)."""
        from scaleworld.imagination.config import START_SPLITS

        return self.starts or START_SPLITS[0]

    def train_config(self) -> Any:
        from scaleworld.training.config import TrainConfig

        return TrainConfig(**self.train)

    def check(self) -> None:
        super().check()
        self.policy_config()
        self.train_config()
        from scaleworld.imagination.config import START_SPLITS

        if self.starts is not None and self.starts not in START_SPLITS[1:]:
            raise ScaleworldError(f"starts={self.starts!r}: use one of {', '.join(START_SPLITS[1:])} (or leave it "
                                  "unset for held_out)")


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

    def check(self) -> None:
        super().check()
        _at_least(1, episodes=self.episodes, num_envs=self.num_envs)


@dataclass(frozen=True, kw_only=True)
class AnalysisStage(Stage):
    """The study's regimes, fits, paired tests and aggregate scores. `rule`: the regime rule's
    settings and the bootstrap's reps and seed."""

    KIND = "analysis"
    ARTIFACT = "analysis.json"
    rule: dict[str, Any]
    statistics: str = "statistics/4"
    """Which definitions of the aggregates and intervals the job computes, so a change of them
    redoes finished analyses (their identity changes). ``statistics/4``: "joint stabilises scaling"
    as an intersection-union test per game (scaleworld.analysis.interaction), matched vs joint with
    the seed as the unit, regime-rule/3's paired tests within seeds and pairing decided per game, the
    hierarchical bootstrap over seeds only, expanded intervals wherever one is printed, BH across
    the control table (tools/stats_calibration.py measures each); ``statistics/3``: adds the control evidence
    against random (scaleworld.analysis.versus_random); ``statistics/2``: IQM and optimality gap
    over all runs x games (rliable), hierarchical bootstrap over world-model seeds then trials
    with expanded percentile intervals (scaleworld.analysis.hierarchical); ``statistics/1`` (the
    field absent, before): aggregates of game means, runs resampled as if independent."""

    def regime_rule(self) -> Any:
        from scaleworld.analysis.regimes import RegimeRule

        r = self.rule
        return RegimeRule(version=r["rule_version"], alpha=r["alpha"], delta=r["delta"],
                          margin_nats=r.get("margin_nats", RegimeRule.margin_nats), min_sizes=r["min_sizes"],
                          min_seeds=r["min_seeds"], bootstrap_reps=r["bootstrap_reps"])

    def check(self) -> None:
        super().check()
        self.regime_rule()
        _at_least(0, seed=self.rule["seed"])
        if self.statistics != AnalysisStage.statistics:
            raise ScaleworldError(f"statistics={self.statistics!r}: this scaleworld computes "
                                  f"{AnalysisStage.statistics!r}; run the study with the scaleworld that planned it")


STAGES: dict[str, type[Stage]] = {s.KIND: s for s in (ExpertStage, CollectStage, TokenizerStage, TokensStage,
                                                      DynamicsStage, FidelityStage, AnchorStage, PolicyStage,
                                                      ControlStage, AnalysisStage)}


assert tuple(STAGES) == KINDS, "one stage per kind, in dependency order"


def stage_of(job: Job) -> Any:
    """The typed config of `job` (a Stage subclass instance, by its kind)."""
    return STAGES[job.kind](**job.config)
