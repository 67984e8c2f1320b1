"""The checks a study spec's schema cannot express: names that must exist (games, ladders, sizes),
budgets that must be possible, settings that must agree. Each failure is one `SpecError` line
naming the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaleworld.data.windows import WINDOWS
from scaleworld.errors import MAX_COUNT, ScaleworldError
from scaleworld.imagination.config import START_SPLITS
from scaleworld.models.dynamics_config import TERMINATION_TARGETS
from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION, TokenizerConfig
from scaleworld.study.cluster import check_cluster_settings
from scaleworld.study.spec import (
    BASE_VARIANT,
    MODES,
    SEED_KEYS,
    SOURCE_POLICIES,
    SpecError,
    expert_steps,
    policy_config,
    study_sizes,
)
from scaleworld.training.config import MATCH_RULES


def _duplicated(values: Any) -> Any:
    seen = []
    for v in values:
        if v in seen:
            return v
        seen.append(v)
    return None


def check_spec(spec: Any, *, where: str = "", shares_anchors: bool = False) -> None:
    """Checks the schema cannot express: names that must exist, budgets that must be possible.
    `shares_anchors`: a data source's variant, normalised by the base spec's anchors."""
    from scaleworld.atari.games import GAMES, get_game
    from scaleworld.atari.protocol import Protocol
    from scaleworld.models.ladders import LADDERS, get_size

    def fail(key: str, msg: str) -> None:
        raise SpecError(f"{where}{key}: {msg}")

    _check_numbers(spec, fail)
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
        _check_expert_folder(spec.expert.source, spec.games, "expert.source", fail)
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
    for key in ("mem_gb", "pack_memory_gb"):
        if not 0 < launch[key] < float("inf"):
            fail(f"launcher.{key}", f"{launch[key]} must be a positive, finite number of GB")
    check_cluster_settings(launch, fail)
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
            _check_axis(f"sweep.{section}.{key}", str(key), fail)
    _check_sources(spec, fail)
    for name, overrides in spec.ablations.items():
        if str(name) == BASE_VARIANT:
            fail(f"ablations.{name}", f"{BASE_VARIANT!r} names the spec without ablations: give the ablation "
                                      "another name")
        for key in overrides or {}:
            _check_axis(f"ablations.{name}.{key}", str(key), fail)
    from scaleworld.analysis.regimes import RegimeRule

    a = spec.analysis
    try:
        RegimeRule(version=a.rule_version, alpha=a.alpha, delta=a.delta, margin_nats=a.margin_nats,
                   min_sizes=a.min_sizes, min_seeds=a.min_seeds, bootstrap_reps=a.bootstrap_reps)
    except ScaleworldError as exc:
        fail("analysis", str(exc))
    if not a.weak_expert >= 0:
        fail("analysis.weak_expert", f"{a.weak_expert} is impossible: a share of the PPO reference's margin, >= 0")
    _check_policy(spec, fail, shares_anchors=shares_anchors)
    lengths = {len(v) for v in spec.sweep.zip.values()}
    if len(lengths) > 1:
        fail("sweep.zip", f"all lists must have the same length (got {sorted(lengths)})")


def _check_numbers(spec: Any, fail: Any) -> None:
    """Every number in the spec finite, and every whole number at most MAX_COUNT (the schema's types
    let inf, nan and 1e20 through)."""
    import math

    from omegaconf import OmegaConf

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif isinstance(value, float) and not math.isfinite(value):
            fail(key, f"{value} is not a number a spec can use: give a finite one")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_COUNT:
            fail(key, f"{value} is beyond any budget or size (at most {MAX_COUNT:,}): a typo?")

    walk(OmegaConf.to_container(spec, resolve=True), "")


NOT_AN_AXIS = {"name": "the study's name", "run_root": "the study's folder", "sweep": "the sweep itself",
               "ablations": "the ablations themselves", "launcher": "where jobs run, not what they compute"}
"""Keys a sweep or an ablation may not vary: one study has one name and run root, a variant cannot add
variants, and launcher settings change no job (its variants would be the base's jobs again)."""


def _check_axis(where: str, key: str, fail: Any) -> None:
    top = key.split(".")[0]
    if top in NOT_AN_AXIS:
        fail(where, f"{top} is {NOT_AN_AXIS[top]}: a sweep or ablation cannot vary it; set it once in the spec")


def _check_expert_folder(folder: str, games: Any, key: str, fail: Any) -> None:
    """A folder of one expert checkpoint per game (DIR/<Game>/expert.json), each of its own game."""
    import json

    from scaleworld.atari.games import get_game

    for game in games:
        meta = Path(folder) / game / "expert.json"
        if not meta.is_file():
            fail(key, f"no expert checkpoint {meta}: use ppo, random, or a folder with one expert per game")
        try:
            of = get_game(str(json.loads(meta.read_text()).get("game"))).name
        except (ValueError, OSError, AttributeError, ScaleworldError) as exc:
            fail(key, f"{meta}: not an expert record of a known game ({type(exc).__name__})")
        if of != game:
            fail(key, f"{meta} is an expert of {of}, not of {game}: give each game its own expert")


def _check_sources(spec: Any, fail: Any) -> None:
    """The data-source axis (`StudySpec.sources`): each source's settings in range, names unique."""
    for name, source in spec.sources.items():
        key = f"sources.{name}"
        if str(name) == BASE_VARIANT or str(name) in spec.ablations:
            fail(key, f"{name!r} names {'the spec itself' if str(name) == BASE_VARIANT else 'an ablation'}: give "
                      "the source another name")
        if source.policy not in SOURCE_POLICIES:
            fail(f"{key}.policy", f"unknown source {source.policy!r}: use {' or '.join(SOURCE_POLICIES)}")
        if source.epsilon is not None and not 0.0 <= source.epsilon <= 1.0:
            fail(f"{key}.epsilon", f"{source.epsilon} is impossible: a share of random actions, in [0, 1]")
        if not 0.0 < source.budget_fraction <= 1.0:
            fail(f"{key}.budget_fraction", f"{source.budget_fraction} is impossible: a share of the expert's "
                                           "budget, in (0, 1]")
        if source.budget_fraction != 1.0 and (spec.expert.source != "ppo" or source.checkpoint is not None):
            fail(f"{key}.budget_fraction", "a weaker expert is a shorter PPO run: it needs expert.source=ppo and "
                                           "no checkpoint")
        if source.policy == "random" and (source.epsilon is not None or source.checkpoint is not None
                                          or source.budget_fraction != 1.0):
            fail(key, "a random source takes no epsilon, checkpoint or budget_fraction")
        if source.checkpoint is not None:
            _check_expert_folder(source.checkpoint, spec.games, f"{key}.checkpoint", fail)


def _check_policy(spec: Any, fail: Any, *, shares_anchors: bool = False) -> None:
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
    if c.upper_anchor == "expert" and spec.expert.source == "random" and not shares_anchors:
        fail("control.upper_anchor", "expert.source=random has no expert score to normalise by: "
                                     "set control.upper_anchor=human (the reference human score)")
