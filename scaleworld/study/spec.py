"""Study specs: one YAML file, validated against typed structured configs (omegaconf).

`load_spec(path, overrides)` merges the YAML and CLI dotlist overrides (``key=value``) onto the
schema below and returns a plain `StudySpec`. Every problem is one `SpecError` line naming the key
path and the fix: an unknown key (with "did you mean"), a wrong type, an unknown game, ladder or
size, a missing value, an impossible budget.

Variants: ``sweep.grid`` (every combination) and ``sweep.zip`` (lists advanced together) map dotted
spec keys to lists of values; ``ablations`` maps names to dotted overrides. Each variant is a full
spec; `expand_variants` lists them, and the planner merges their jobs (identical jobs are shared).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleworld.analysis.regimes import RULE_VERSION
from scaleworld.atari.protocol import Protocol
from scaleworld.data.windows import WINDOWS
from scaleworld.errors import ScaleworldError
from scaleworld.experts.ppo_config import PPOConfig, budget_steps
from scaleworld.imagination.config import DEFAULT_STARTS, START_SPLITS, PolicyConfig, PolicyTraining
from scaleworld.models.dynamics_config import TERMINATION_TARGETS, DynamicsConfig
from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION, TokenizerConfig, default_steps
from scaleworld.training.config import MATCH_RULES, TrainConfig


class SpecError(ScaleworldError):
    """A study spec is invalid; the message names the key path and the fix."""


# The protocol section mirrors scaleworld.atari.protocol.Protocol field for field (same defaults):
# derived from it, so a new protocol setting is a spec key without being written twice.
ProtocolSpec = dataclasses.make_dataclass(
    "ProtocolSpec", [(f.name, type(f.default), field(default=f.default)) for f in dataclasses.fields(Protocol)]
)


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
class DataSpec:
    steps: int = 100_000
    """Agent steps per game (Atari 100k: 100,000)."""
    num_envs: int = 8
    seed: int = 0
    val_fraction: float = 0.1
    """Share of each game's episodes held out for fidelity (the same split for every model)."""
    split_seed: int = 0


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
    validation_fraction: float = 0.0
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
    alpha: float = 0.05
    delta: float = 0.02
    """regime-rule/1's margin, relative to the curve's level."""
    margin_nats: float = 0.05
    """regime-rule/2's margin in nats per frame (provisional until the pilot study measures it)."""
    episode_bootstrap: bool = False
    """Also give each size's mean NLL an interval that resamples the held-out episodes with the
    seeds (analysis.json ``size_means_episodes``); off: seeds only. Only `true` enters the identity."""
    min_sizes: int = 4
    min_seeds: int = 3
    bootstrap_reps: int = 2000
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
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60
    array_parallelism: int = 64
    max_array_size: int | None = None
    """Chunk arrays below this; null = ask the cluster (MaxArraySize)."""
    requeues: int = 3
    """Times a job may be requeued after a timeout or preemption."""
    pack: int = 1
    """Dynamics jobs of one shape (settings but the seed) trained together in one process as one
    batched model, up to this many (scaleworld.study.packing; local and slurm); 1: each alone. A packed
    run's floats differ from a separate one's in the last bits (within 1e-5 of it on the final
    weights, tests/test_packed_training.py): set it per study, not per re-run."""


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


@dataclass(frozen=True)
class Variant:
    name: str
    """``base``, ``grid[train.lr=0.001]``-style names, or an ablation's name."""
    spec: Any  # an omegaconf DictConfig of StudySpec, resolved


def _keys_of(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append(path)
            out += _keys_of(node._get_node(k), path)
    return out


def _spec_error(exc: Exception, schema: Any) -> SpecError:
    """Turn an omegaconf exception into one line naming the key path and the fix."""
    from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

    key = getattr(exc, "full_key", None) or "?"
    if isinstance(exc, ConfigKeyError):
        parent, _, leaf = str(key).rpartition(".")
        siblings = [k.rpartition(".")[2] for k in _keys_of(schema)
                    if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(leaf, siblings, n=1)
        hint = f"did you mean {(parent + '.' if parent else '') + close[0]!r}? " if close else ""
        return SpecError(f"unknown key {key!r}: {hint}valid keys here are {', '.join(sorted(siblings))}")
    if isinstance(exc, MissingMandatoryValue):
        return SpecError(f"missing value for {key!r}: set it in the spec or as {key}=VALUE")
    if isinstance(exc, ValidationError):
        msg = str(exc).splitlines()[0]
        return SpecError(f"wrong type for {key!r}: {msg}")
    return SpecError(f"invalid spec at {key!r}: {str(exc).splitlines()[0]}")


def _merge(base: Any, *others: Any) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.merge(base, *others)
    except OmegaConfBaseException as exc:
        raise _spec_error(exc, base) from None


def load_spec(path: str | Path, overrides: list[str] = ()) -> Any:
    """Read, merge and validate a spec; returns a resolved, read-only DictConfig of `StudySpec`."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}): fix the syntax") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise SpecError(f"{path}: cannot be read as a text spec ({type(exc).__name__}): give a YAML file") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys to values, not a {type(raw).__name__}")
    schema = OmegaConf.structured(StudySpec)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SpecError(f"override {bad[0]!r}: write overrides as key=value, e.g. train.steps=100")
    for o in overrides:
        key = o.split("=", 1)[0]
        if not key or any(not part for part in key.split(".")):
            raise SpecError(f"override {o!r}: the key {key!r} has an empty part: write e.g. train.steps=100")
    try:
        cli = OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise SpecError(f"overrides {list(overrides)}: cannot be parsed ({str(exc).splitlines()[0]})") from None
    _check_shapes(raw, StudySpec, "")
    _check_shapes(OmegaConf.to_container(cli), StudySpec, "")
    spec = _merge(schema, OmegaConf.create(raw), cli)
    try:
        OmegaConf.to_container(spec, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise _spec_error(exc, schema) from None
    if spec.run_root is None:
        spec.run_root = str(Path("runs") / spec.name)
    else:  # where the user put it: ~ is their home, not a folder named "~" here
        spec.run_root = str(Path(spec.run_root).expanduser())
    check_spec(spec)
    for variant in expand_variants(spec):
        check_spec(variant.spec, where=f"variant {variant.name}: ")
    OmegaConf.set_readonly(spec, True)
    return spec


def _check_shapes(value: Any, schema: Any, path: str) -> None:
    """Mappings where the schema has a section, lists where it has a list, single values in lists of
    values: omegaconf's own errors for these are tracebacks or name its internals."""
    import typing

    if dataclasses.is_dataclass(schema):
        if not isinstance(value, dict):
            raise SpecError(f"{path or 'the spec'}: give a mapping of keys (e.g. {path}.KEY: VALUE), "
                            f"not {value!r}")
        fields = {f.name: f.type for f in dataclasses.fields(schema)}
        hints = typing.get_type_hints(schema)
        for key, sub in value.items():
            if key in fields:
                _check_shapes(sub, hints[key], f"{path}.{key}" if path else str(key))
        return
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if origin is typing.Union:  # X | None
        if value is None:
            return
        schema = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(f"{path}: give a list, e.g. {path}: [{value}]" if not isinstance(value, dict)
                            else f"{path}: give a list, not a mapping")
        for i, item in enumerate(value):
            if isinstance(item, (list, dict)) and args and args[0] is not Any:
                raise SpecError(f"{path}[{i}]: give a single value, not a {type(item).__name__}")
    elif origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: give a mapping, not {value!r}")
        if len(args) == 2 and typing.get_origin(args[1]) is list:
            for key, item in value.items():
                if not isinstance(item, list):
                    raise SpecError(f"{path}.{key}: give a list of values, e.g. {path}.{key}: [{item}]")
    elif schema in (int, float, str, bool) and isinstance(value, (list, dict)):
        raise SpecError(f"{path}: give a single value, not a {type(value).__name__}")


def _duplicated(values: Any) -> Any:
    seen = []
    for v in values:
        if v in seen:
            return v
        seen.append(v)
    return None


MODES = ("single", "joint", "matched", "joint_short")
"""Run kinds of dynamics models (labels ``modes``), in the order tables list them."""

SEED_KEYS = ("expert.seed", "data.seed", "data.split_seed", "tokenizer.seed", "fidelity.seed", "control.seed",
             "analysis.seed")


def expert_steps(spec: Any) -> int:
    """The PPO experts' budget in agent steps, from whichever unit the spec gave (`budget_steps`)."""
    e = spec.expert
    return budget_steps(agent_steps=e.agent_steps, frames=e.frames, frame_skip=spec.protocol.frame_skip,
                        default=PPOConfig.agent_steps, what="the expert budget")


def check_spec(spec: Any, *, where: str = "") -> None:
    """Checks the schema cannot express: names that must exist, budgets that must be possible."""
    from scaleworld.atari.games import GAMES, get_game
    from scaleworld.atari.protocol import Protocol
    from scaleworld.models.ladders import LADDERS, get_size

    def fail(key: str, msg: str) -> None:
        raise SpecError(f"{where}{key}: {msg}")

    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(spec.name)):
        fail("name", f"{spec.name!r}: use letters, digits, '_', '-' and '.' (it names runs/<name>; "
                     "put the run elsewhere with run_root)")
    if not spec.games:
        fail("games", "list at least one game, e.g. games=[Pong]")
    for i, name in enumerate(spec.games):
        if name not in GAMES:
            try:
                get_game(name)
                fail(f"games[{i}]", f"write the game as {get_game(name).name!r}")
            except ScaleworldError as exc:
                if isinstance(exc, SpecError):
                    raise
                fail(f"games[{i}]", str(exc))
    if len(set(spec.games)) != len(spec.games):
        fail("games", "a game is listed twice")
    try:
        Protocol(**dict(spec.protocol))
    except ScaleworldError as exc:
        fail("protocol", str(exc))
    if spec.models.ladder is not None and spec.models.ladder not in LADDERS:
        fail("models.ladder", f"unknown ladder {spec.models.ladder!r}: valid ladders are {', '.join(LADDERS)}")
    if spec.models.ladder is None and not spec.models.sizes:
        fail("models", "give a ladder or a list of sizes")
    for i, size in enumerate(spec.models.sizes):
        try:
            s = get_size(size)
        except ScaleworldError as exc:
            fail(f"models.sizes[{i}]", str(exc))
        if spec.models.ladder is not None and not s.name.startswith(spec.models.ladder + "-"):
            fail(f"models.sizes[{i}]", f"{size} is not in ladder {spec.models.ladder}")
    if spec.expert.source not in ("ppo", "random"):
        for game in spec.games:
            if not (Path(spec.expert.source) / game / "expert.json").is_file():
                fail("expert.source", f"no expert checkpoint {Path(spec.expert.source) / game / 'expert.json'}: "
                                      "use ppo, random, or a folder with one expert per game")
    if spec.expert.sampling not in ("sample", "greedy"):
        fail("expert.sampling", "use sample or greedy")
    if not 0.0 <= spec.expert.epsilon <= 1.0:
        fail("expert.epsilon", "must be in [0, 1]")
    if spec.expert.source == "ppo":
        try:
            expert_steps(spec)
        except ScaleworldError as exc:
            fail("expert.frames" if spec.expert.frames is not None else "expert.agent_steps", str(exc))
    if spec.tokenizer.scope not in ("shared", "per_game"):
        fail("tokenizer.scope", "use shared or per_game")
    try:
        TokenizerConfig(channels=tuple(spec.tokenizer.channels), frame_size=spec.protocol.frame_size)
    except ScaleworldError as exc:
        fail("tokenizer.channels", str(exc))
    if spec.tokenizer.batch_size < 2:
        fail("tokenizer.batch_size", f"{spec.tokenizer.batch_size}: BatchNorm needs at least 2 frames a batch")
    if not spec.tokenizer.max_residual > 0:
        fail("tokenizer.max_residual", f"{spec.tokenizer.max_residual} must be positive (the allowed residual "
                                       f"fraction; default {MAX_RESIDUAL_FRACTION})")
    if spec.train.termination not in TERMINATION_TARGETS:
        fail("train.termination", f"{spec.train.termination!r}: use {' or '.join(TERMINATION_TARGETS)}")
    if spec.train.windows not in WINDOWS:
        fail("train.windows", f"{spec.train.windows!r}: use {' or '.join(WINDOWS)}")
    if spec.modes.matched.rule not in MATCH_RULES:
        fail("modes.matched.rule", f"{spec.modes.matched.rule!r}: use {', '.join(MATCH_RULES)}")
    if not 0.0 <= spec.train.validation_fraction < 1.0:
        fail("train.validation_fraction", f"{spec.train.validation_fraction} must be in [0, 1) (0: no validation "
                                          "split, final checkpoints only)")
    if spec.launcher.kind not in ("local", "slurm"):
        fail("launcher.kind", "use local or slurm")
    if spec.launcher.workers is not None and spec.launcher.workers < 1:
        fail("launcher.workers", f"{spec.launcher.workers}: run at least 1 job at once (null = half the cores)")
    if not spec.seeds:
        fail("seeds", "list at least one seed")
    for key, values in {"seeds": spec.seeds, "models.sizes": spec.models.sizes, "policy.modes": spec.policy.modes,
                        "policy.sizes": spec.policy.sizes,
                        **{f"sweep.grid.{k}": v for k, v in spec.sweep.grid.items()},
                        **{f"sweep.zip.{k}": v for k, v in spec.sweep.zip.items()}}.items():
        twice = _duplicated(list(values))  # every one a list: _check_shapes saw to it
        if twice is not None:
            fail(key, f"{twice!r} is listed twice: list each value once")
    for i, seed in enumerate(spec.seeds):
        if seed < 0:
            fail(f"seeds[{i}]", f"{seed}: seeds are non-negative integers")
    for key in SEED_KEYS:
        section, leaf = key.split(".")
        if spec[section][leaf] < 0:
            fail(key, f"{spec[section][leaf]}: seeds are non-negative integers")
    launch = spec.launcher
    for key, value, minimum in (("launcher.gpus", launch.gpus, 0), ("launcher.cpus", launch.cpus, 1),
                                ("launcher.time_min", launch.time_min, 1), ("launcher.requeues", launch.requeues, 0),
                                ("launcher.array_parallelism", launch.array_parallelism, 1),
                                ("launcher.pack", launch.pack, 1),
                                ("launcher.max_array_size", 1 if launch.max_array_size is None
                                 else launch.max_array_size, 1)):
        if value < minimum:
            fail(key, f"{value} is impossible: it must be at least {minimum}")
    if not launch.mem_gb > 0:
        fail("launcher.mem_gb", f"{launch.mem_gb} must be positive")
    positive = {"data.steps": spec.data.steps, "data.num_envs": spec.data.num_envs,
                "tokenizer.steps": 1 if spec.tokenizer.steps is None else spec.tokenizer.steps,
                "tokenizer.batch_size": spec.tokenizer.batch_size,
                "train.steps": spec.train.steps, "train.batch_size": spec.train.batch_size,
                "train.joint_steps": 1 if spec.train.joint_steps is None else spec.train.joint_steps,
                "train.eval_every": spec.train.eval_every, "train.checkpoint_every": spec.train.checkpoint_every,
                "models.context": spec.models.context, "fidelity.rollouts": spec.fidelity.rollouts,
                "fidelity.context_steps": spec.fidelity.context_steps, "fidelity.horizon": spec.fidelity.horizon,
                "expert.num_envs": spec.expert.num_envs, "expert.episodes": spec.expert.episodes}
    for key, value in positive.items():
        if value < 1:
            fail(key, f"{value} is impossible: it must be at least 1")
    if spec.train.warmup_steps < 0:
        fail("train.warmup_steps", f"{spec.train.warmup_steps} is impossible: it must be at least 0")
    if not spec.train.lr > 0:
        fail("train.lr", f"{spec.train.lr} must be positive")
    if not 0.0 <= spec.data.val_fraction < 1.0:
        fail("data.val_fraction", "must be in [0, 1)")
    if spec.fidelity.context_steps + spec.fidelity.horizon > spec.models.context:
        fail("fidelity.horizon", f"context_steps + horizon ({spec.fidelity.context_steps} + "
                                 f"{spec.fidelity.horizon}) must fit in models.context ({spec.models.context})")
    if spec.data.steps < 2 * spec.models.context:
        fail("data.steps", f"{spec.data.steps} steps cannot fill training windows of models.context="
                           f"{spec.models.context}: collect at least {2 * spec.models.context}")
    if not (spec.modes.single or spec.modes.joint or spec.modes.matched.enabled or spec.modes.joint_short):
        fail("modes", "enable at least one of single, joint, matched, joint_short")
    if spec.modes.matched.enabled and not spec.modes.joint:
        fail("modes.matched", "a matched control needs the joint run it matches: set modes.joint=true")
    for section in ("grid", "zip"):
        for key, values in spec.sweep[section].items():
            if not isinstance(values, (list, tuple)) and not hasattr(values, "__len__"):
                fail(f"sweep.{section}.{key}", "give a list of values")
            if len(values) == 0:
                fail(f"sweep.{section}.{key}", "give at least one value (an empty list would drop the sweep)")
    from scaleworld.analysis.regimes import RegimeRule

    a = spec.analysis
    try:
        RegimeRule(version=a.rule_version, alpha=a.alpha, delta=a.delta, margin_nats=a.margin_nats,
                   min_sizes=a.min_sizes, min_seeds=a.min_seeds, bootstrap_reps=a.bootstrap_reps)
    except ScaleworldError as exc:
        fail("analysis", str(exc))
    if not a.weak_expert >= 0:
        fail("analysis.weak_expert", f"{a.weak_expert} is impossible: a share of the PPO reference's margin, >= 0")
    _check_policy(spec, fail)
    lengths = {len(v) for v in spec.sweep.zip.values()}
    if len(lengths) > 1:
        fail("sweep.zip", f"all lists must have the same length (got {sorted(lengths)})")


def _check_policy(spec: Any, fail: Any) -> None:
    p, c = spec.policy, spec.control
    if not p.enabled:
        return
    for i, mode in enumerate(p.modes):
        if mode not in MODES:
            fail(f"policy.modes[{i}]", f"unknown mode {mode!r}: use {', '.join(MODES)}")
    sizes = {s.name for s in study_sizes(spec)}
    for i, size in enumerate(p.sizes):
        if size not in sizes:
            fail(f"policy.sizes[{i}]", f"{size} is not one of the study's sizes ({', '.join(sorted(sizes))})")
    positive = {"policy.trials": p.trials, "policy.steps": p.steps, "policy.batch_size": p.batch_size,
                "policy.checkpoint_every": p.checkpoint_every, "control.episodes": c.episodes,
                "control.num_envs": c.num_envs, "control.anchor_episodes": c.anchor_episodes}
    for key, value in positive.items():
        if value < 1:
            fail(key, f"{value} is impossible: it must be at least 1")
    if p.starts not in START_SPLITS:
        fail("policy.starts", f"{p.starts!r}: use one of {', '.join(START_SPLITS)}")
    if not p.lr > 0:
        fail("policy.lr", f"{p.lr} must be positive")
    try:
        policy_config(p)
    except ScaleworldError as exc:
        fail("policy", str(exc))
    if p.context_steps - 1 > spec.models.context:
        fail("policy.context_steps", f"{p.context_steps} real steps do not fit models.context={spec.models.context}")
    if c.sampling not in ("sample", "greedy"):
        fail("control.sampling", "use sample or greedy")
    if c.upper_anchor not in ("expert", "human"):
        fail("control.upper_anchor", "use expert or human")
    if c.upper_anchor == "expert" and spec.expert.source == "random":
        fail("control.upper_anchor", "expert.source=random has no expert score to normalise by: "
                                     "set control.upper_anchor=human (the reference human score)")


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


def _apply(spec: Any, overrides: dict[str, Any], where: str) -> Any:
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(StudySpec)
    dotlist = OmegaConf.from_dotlist([f"{k}={_yaml_value(v)}" for k, v in overrides.items()])
    try:
        return _merge(schema, spec, dotlist)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _yaml_value(value: Any) -> str:
    import json

    return json.dumps(value) if isinstance(value, (list, dict, str)) else str(value)


def expand_variants(spec: Any) -> list[Variant]:
    """The base spec, one variant per sweep point (grid x zip), and one per ablation."""
    from omegaconf import OmegaConf

    base = OmegaConf.masked_copy(spec, [k for k in spec.keys() if k not in ("sweep", "ablations")])
    grid_keys = list(spec.sweep.grid.keys())
    zip_keys = list(spec.sweep.zip.keys())
    grid_points = list(itertools.product(*[list(spec.sweep.grid[k]) for k in grid_keys])) or [()]
    zip_points = list(zip(*[list(spec.sweep.zip[k]) for k in zip_keys])) or [()]
    variants = []
    for g in grid_points:
        for z in zip_points:
            overrides = dict(zip(grid_keys, g)) | dict(zip(zip_keys, z))
            name = "base" if not overrides else ",".join(f"{k}={v}" for k, v in overrides.items())
            variants.append(Variant(name, _apply(base, overrides, f"sweep {name}")))
    for name, overrides in spec.ablations.items():
        variants.append(Variant(str(name), _apply(base, dict(overrides), f"ablations.{name}")))
    return variants
