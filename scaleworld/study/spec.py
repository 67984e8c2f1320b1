"""The study spec's schema: one YAML file, validated against these typed structured configs
(omegaconf). Every section's defaults; the constants and derived values the rest of the study reads
(`expert_steps`, `tokenizer_steps`, `study_sizes`, `policy_config`).

Loading a file: `scaleworld.study.spec_load.load_spec`; the checks the schema cannot express:
`scaleworld.study.spec_check`; variants (``sweep.grid``, ``sweep.zip``, ``ablations``):
`scaleworld.study.variants`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from scaleworld.analysis.regimes import RULE_VERSION, RegimeRule
from scaleworld.atari.protocol import Protocol
from scaleworld.data.held_out import SPLIT_SEED, VAL_FRACTION, VALIDATION_FRACTION
from scaleworld.data.windows import WINDOWS
from scaleworld.errors import ScaleworldError
from scaleworld.experts.ppo_config import PPOConfig, budget_steps
from scaleworld.imagination.config import DEFAULT_STARTS, PolicyTraining
from scaleworld.models.dynamics_config import TERMINATION_TARGETS, DynamicsConfig
from scaleworld.models.policy_config import PolicyConfig
from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION, TokenizerConfig, default_steps
from scaleworld.training.config import TrainConfig


class SpecError(ScaleworldError):
    """A study spec is invalid; the message names the key path and the fix."""


# The protocol section mirrors scaleworld.atari.protocol.Protocol field for field (same defaults):
# derived from it, so a new protocol setting is a spec key without being written twice.
ProtocolSpec = dataclasses.make_dataclass(
    "ProtocolSpec", [(f.name, type(f.default), field(default=f.default)) for f in dataclasses.fields(Protocol)]
)


BASE_VARIANT = "base"
"""The name of the spec's own variant (no sweep point, no ablation): the report labels its results so."""

@dataclass
class ExpertSpec:
    source: str = "ppo"
    """Who collects the data: ``ppo`` (an `expert` job trains one per game), ``random``, or the path
    of a folder holding one expert checkpoint per game (``DIR/<Game>/expert.json``)."""
    agent_steps: int | None = None
    """PPO budget in agent steps (source ppo). Give this or `frames`, not both; neither is the standard
    Atari PPO run (PPOConfig.agent_steps: 10M agent steps = 40M frames)."""
    frames: int | None = None
    """PPO budget in emulator frames: agent steps x protocol.frame_skip (a whole number of agent steps)."""
    episodic_life: bool = PPOConfig.episodic_life
    """A lost life ends the episode for learning only (stored data and scores keep whole episodes)."""
    fire_reset: bool = PPOConfig.fire_reset
    """FIRE at the start of each episode for learning, in the games that wait for it (Breakout)."""
    num_envs: int = PPOConfig.num_envs
    seed: int = PPOConfig.seed
    episodes: int = 10
    """Full episodes that measure the expert's score: the upper anchor of normalised scores."""
    sampling: str = "sample"
    """How the expert collects: ``sample`` from its distribution or ``greedy``."""
    epsilon: float = 0.0
    """Share of uniformly random legal actions during collection."""


@dataclass
class SourceSpec:
    """One data source of the study's `sources` axis: who collects a variant's data. Every source's
    models are tokenized by the spec's own tokenizer and scored on the spec's own held-out episodes
    and anchors, so their NLLs and scores are in the same units (scaleworld.study.expand)."""

    policy: str = "expert"
    """``expert`` (the spec's expert, or `checkpoint`'s) or ``random`` (uniform legal actions)."""
    epsilon: float | None = None
    """Share of uniformly random legal actions mixed into the expert's, in [0, 1] (null: expert.epsilon)."""
    budget_fraction: float = 1.0
    """A weaker expert: PPO trained on this share of the expert's budget, in (0, 1] (expert.source ppo;
    its own, shorter run with the same seed: its learning rate anneals over its own budget)."""
    checkpoint: str | None = None
    """A folder of expert checkpoints, one per game (DIR/<Game>/expert.json), instead of the spec's expert."""


SOURCE_POLICIES = ("expert", "random")


@dataclass
class DataSpec:
    steps: int = 100_000
    """Agent steps per game (Atari 100k: 100,000)."""
    num_envs: int = 8
    seed: int = 0
    val_fraction: float = VAL_FRACTION
    """Share of each game's episodes held out for fidelity (the same split for every model)."""
    split_seed: int = SPLIT_SEED


@dataclass
class TokenizerSpec:
    scope: str = "shared"
    """``shared`` (one tokenizer over all games) or ``per_game``."""
    channels: list[int] = field(default_factory=lambda: list(TokenizerConfig.channels))
    steps: int | None = None
    """Gradient steps; null = enough for FRAMES_PER_GAME frames of every game it learns
    (scaleworld.models.tokenizer_config, where the measurement behind it is)."""
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_residual: float = MAX_RESIDUAL_FRACTION
    """The gate of the ``tokens`` jobs: a game whose held-out residual fraction (the share of its frames'
    variance the codes leave unexplained; scaleworld.models.tokenizer_quality) is above this is not
    encoded. Not part of any job's identity: changing it redoes nothing."""


@dataclass
class ModelsSpec:
    ladder: str | None = "paper"
    """A ladder preset (``scaleworld model ladder NAME``), or null to use `sizes`."""
    sizes: list[str] = field(default_factory=list)
    """Explicit size names (e.g. paper-d12); with a ladder, restricts it to these."""
    context: int = DynamicsConfig.context
    """Attention window in time steps, also every training window's length (DynamicsConfig.context)."""


@dataclass
class TrainSpec:
    steps: int = 2000
    """Gradient steps of each single-game run."""
    joint_steps: int | None = None
    """Gradient steps of the joint run; null = steps x number of games (same tokens per game)."""
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    warmup_steps: int = TrainConfig.warmup_steps
    eval_every: int = TrainConfig.eval_every
    checkpoint_every: int = TrainConfig.checkpoint_every
    windows: str = WINDOWS[0]
    """Dynamics training windows: ``inside`` episodes, or ``edge_fair`` (clipped at episode ends so
    first and terminal steps are trained on as often as any: scaleworld.data.sampling). Only a
    non-default choice enters the dynamics jobs' identities. ``inside`` stays the default from
    measurement (tools/window_study.py, pilot_cpu's games, tiny-d2, 4 seeds, 40k fresh steps a
    game): edge_fair left held-out NLL within seed noise (-0.03 and +0.00 nats/frame), cut Boxing's
    first-4-step NLL by 2.3 nats (CrazyClimber's by 0.01), did not improve the last 4 steps before
    a game over, and termination F1 stayed 0 under both."""
    termination: str = TERMINATION_TARGETS[0]
    """What the dynamics models' termination head learns: ``game_over``, or ``life_loss`` (a game
    over or a lost life: expert data hold few game-overs). A learning signal only; to be decided by
    the pilot study. Only a non-default choice enters the identities."""
    validation_fraction: float = VALIDATION_FRACTION
    """Share of each game's training episodes held out as a validation split (never the fidelity
    split): the trainer's evaluation reads it, and every dynamics run keeps its best checkpoint
    (lowest validation next-latent NLL) beside the final one; fidelity and the analysis then read
    both (early stopping as a second reading). 0: no validation split, final checkpoints only
    (the evaluation logs the fidelity split). Only a non-zero value enters the identities."""


@dataclass
class MatchedSpec:
    enabled: bool = True
    rule: str = "tokens_per_game"
    """What the single-game control holds equal to the joint run (scaleworld.training.config.MATCH_RULES):
    ``tokens_per_game`` (its exposure per game), ``total_steps`` (its gradient steps), or ``data`` (its
    exposure per game on G x data.steps distinct transitions of the game, collected by the same expert
    in a collect job of its own: this breaks the Atari 100k budget on purpose; fidelity still reads the
    game's usual held-out episodes)."""


@dataclass
class ModesSpec:
    single: bool = True
    joint: bool = True
    matched: MatchedSpec = field(default_factory=MatchedSpec)
    joint_short: bool = False
    """Also a joint run at 1/G of the joint run's exposure per game (joint_steps / G steps; mode
    ``joint_short``): exposure against diversity."""


@dataclass
class FidelitySpec:
    context_steps: int = 8
    horizon: int = 8
    rollouts: int = 32
    seed: int = 0


# The policy section: the study's own keys, then PolicyTraining's and PolicyConfig's fields (same names and
# defaults), so a new actor-critic setting becomes a spec key without being written twice.
PolicySpec = dataclasses.make_dataclass("PolicySpec", [
    ("enabled", bool, field(default=True)),
    ("trials", int, field(default=1)),  # independent policies (seeds 0 .. trials-1) per world model and game
    ("modes", list[str], field(default_factory=lambda: ["single", "joint", "matched", "joint_short"])),
    ("sizes", list[str], field(default_factory=list)),  # only models of these sizes; empty = every size
    ("starts", str, field(default=DEFAULT_STARTS)),  # imagination starts from: held_out, train or all episodes
    # steps (actor-critic updates), batch_size (imagined rollouts per update), lr, checkpoint_every
    *[(f.name, type(f.default), field(default=f.default)) for f in dataclasses.fields(PolicyTraining)],
    *[(f.name, type(f.default), field(default=f.default)) for f in dataclasses.fields(PolicyConfig)],
])


@dataclass
class ControlSpec:
    """Scoring the policies in the real games (`control` jobs) and the anchors (`anchor` jobs, per game)."""

    episodes: int = 8
    """Full episodes per policy, under the spec's protocol (the test against random needs 2+)."""
    num_envs: int = 8
    seed: int = 0
    sampling: str = "sample"
    """How the policy acts: ``sample`` from its distribution or ``greedy``."""
    upper_anchor: str = "expert"
    """Upper anchor of normalised scores: ``expert`` (its measured score) or ``human`` (the reference table)."""
    anchor_episodes: int = 16
    """Episodes of the random policy that measure the lower anchor (the test against random needs 2+)."""


@dataclass
class AnalysisSpec:
    rule_version: str = RULE_VERSION
    """The regime rule (scaleworld.analysis.regimes; the earlier versions stay selectable)."""
    alpha: float = RegimeRule.alpha
    delta: float = RegimeRule.delta
    """regime-rule/1's margin, relative to the curve's level."""
    margin_nats: float = RegimeRule.margin_nats
    """regime-rule/2's margin in nats per frame (provisional until the pilot study measures it)."""
    episode_bootstrap: bool = False
    """Also give each size's mean NLL an interval that resamples the held-out episodes with the
    seeds (analysis.json ``size_means_episodes``); off: seeds only. Only `true` enters the identity."""
    min_sizes: int = RegimeRule.min_sizes
    min_seeds: int = RegimeRule.min_seeds
    bootstrap_reps: int = RegimeRule.bootstrap_reps
    seed: int = 0
    weak_expert: float = 0.5
    """The report flags an expert as weak when its margin over random is below this share of the standard
    PPO run's (the game table's PPO reference): a flag for the reader, not a gate (half: a judgement)."""


@dataclass
class LauncherSpec:
    kind: str = "local"
    """``local`` (this machine, no services) or ``slurm`` (submitit job arrays)."""
    workers: int | None = None
    """local: jobs at once (null: one per visible GPU plus one CPU job, or 1 without a GPU); a GPU job
    is pinned to a GPU of its own."""
    partition: str | None = None
    gpus: int = 0
    """GPUs of a job of a GPU kind (scaleworld.study.cluster: a CPU kind asks for none)."""
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per kind, any of gpus / cpus / mem_gb / time_min for its jobs instead of the four above, e.g.
    ``{control: {gpus: 0, cpus: 8}}`` (local: a kind given 0 GPUs runs as a CPU job); ``driver``: the
    detached driver's job (default 1 CPU, 4 GB, time_min)."""
    account: str | None = None
    """slurm: the account to charge (null: the user's default)."""
    qos: str | None = None
    constraint: str | None = None
    """slurm: node features a GPU job needs, e.g. a GPU type (``a100|h100``); CPU jobs go anywhere."""
    job_name: str = "scaleworld"
    """slurm: job names are ``<job_name>-<kind>``."""
    setup: list[str] = field(default_factory=list)
    """slurm: shell lines run on the node before every job (module loads, activating an environment)."""
    sbatch: dict[str, Any] = field(default_factory=dict)
    """slurm: any other sbatch option by its long name, e.g. ``{mail-user: me@lab.org, exclude: node7}``
    (the ones with a key above are refused here; scaleworld.study.cluster lists what passes)."""
    array_parallelism: int = 64
    max_array_size: int | None = None
    """Chunk arrays below this; null = ask the cluster (MaxArraySize)."""
    requeues: int = 3
    """Times a job may be requeued after a timeout or preemption."""
    keep_checkpoints: bool = False
    """Keep a finished training job's resume state (checkpoint.pt: weights, AdamW moments and RNG
    states, about 3x its model file) beside the model files its consumers read; false: dropped when
    the job is done (a dynamics folder shrinks about 4x; `plan` prints the disk per kind). An
    interrupted job keeps it and resumes either way."""
    pack: int = 1
    """Dynamics jobs of one shape (settings but the seed) trained together in one process as one
    batched model, up to this many (scaleworld.study.packing; local and slurm); 1: each alone. A packed
    run's floats differ from a separate one's in the last bits (within 1e-5 of it on the final
    weights, tests/test_packed_training.py): set it per study, not per re-run."""
    pack_memory_gb: float = 80.0
    """The memory one pack may fill: one GPU's (80: an H100 or A100 80GB). A model size whose `pack`
    runs would not fit by their estimated training memory packs fewer (scaleworld.study.packing: at
    batch 64, paper-d96 packs 6); a setting of the spec, not of the device, so packs are the same
    wherever the study runs. Like `pack`, set it per study, not per re-run: it moves the packs'
    boundaries, and a pack stopped mid-training resumes only as the same pack."""


@dataclass
class SweepSpec:
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class StudySpec:
    name: str = "???"
    games: list[str] = "???"  # type: ignore[assignment]
    run_root: str | None = None
    """Where jobs live; null = runs/<name> under the current folder."""
    seeds: list[int] = field(default_factory=lambda: [0])
    protocol: ProtocolSpec = field(default_factory=ProtocolSpec)
    expert: ExpertSpec = field(default_factory=ExpertSpec)
    data: DataSpec = field(default_factory=DataSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    models: ModelsSpec = field(default_factory=ModelsSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    modes: ModesSpec = field(default_factory=ModesSpec)
    fidelity: FidelitySpec = field(default_factory=FidelitySpec)
    policy: PolicySpec = field(default_factory=PolicySpec)
    control: ControlSpec = field(default_factory=ControlSpec)
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    launcher: LauncherSpec = field(default_factory=LauncherSpec)
    sweep: SweepSpec = field(default_factory=SweepSpec)
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    """The data-source axis: a variant per named source (SourceSpec), beside the spec's own data (the
    base variant); not crossed with sweeps or ablations."""


MODES = ("single", "joint", "matched", "joint_short")
"""Run kinds of dynamics models (labels ``modes``), in the order tables list them."""

SEED_KEYS = ("expert.seed", "data.seed", "data.split_seed", "tokenizer.seed", "fidelity.seed", "control.seed",
             "analysis.seed")


def expert_steps(spec: Any) -> int:
    """The PPO experts' budget in agent steps, from whichever unit the spec gave (`budget_steps`)."""
    e = spec.expert
    return budget_steps(agent_steps=e.agent_steps, frames=e.frames, frame_skip=spec.protocol.frame_skip,
                        default=PPOConfig.agent_steps, what="the expert budget")


def source_overrides(spec: Any, source: Any) -> dict[str, Any]:
    """The expert settings (dotted keys) that give a source's data (`SourceSpec`)."""
    if source.policy == "random":
        return {"expert.source": "random"}
    out: dict[str, Any] = {}
    if source.checkpoint is not None:
        out["expert.source"] = source.checkpoint
    if source.epsilon is not None:
        out["expert.epsilon"] = source.epsilon
    if source.budget_fraction != 1.0:
        out |= {"expert.agent_steps": max(1, round(expert_steps(spec) * source.budget_fraction)),
                "expert.frames": None}
    return out


def policy_config(section: Any) -> PolicyConfig:
    """The `PolicyConfig` in a spec's ``policy`` section."""
    return PolicyConfig(**{f.name: getattr(section, f.name) for f in dataclasses.fields(PolicyConfig)})


def tokenizer_steps(spec: Any) -> int:
    """The tokenizer's steps: the spec's, or the default for the games one tokenizer learns."""
    t = spec.tokenizer
    if t.steps is not None:
        return t.steps
    return default_steps(games=len(spec.games) if t.scope == "shared" else 1, batch_size=t.batch_size)


def study_sizes(spec: Any) -> list[Any]:
    """The study's model sizes (a ladder, possibly restricted, or an explicit list)."""
    from scaleworld.models.ladders import get_ladder, get_size

    if spec.models.ladder is None:
        return [get_size(s) for s in spec.models.sizes]
    ladder = get_ladder(spec.models.ladder)
    return [s for s in ladder if not spec.models.sizes or s.name in spec.models.sizes]
