"""A study spec expands into its graph of jobs (`scaleworld.study.graph`): per variant, every
kind's jobs with their typed stages (`scaleworld.study.kinds`), in dependency order.

Kinds, in dependency order: expert (game; PPO) -> collect (game) -> tokenizer (shared, or one per game) -> tokens (game)
-> dynamics (mode x size x seed [x game]) -> fidelity (one per dynamics run, on the game's usual held-out
episodes whatever the run trained on); anchor (game: the random and
upper scores) ; policy (dynamics run x game x trial, trained in imagination) -> control (one per policy: real-game
score) -> analysis (study: regimes of fidelity, aggregates of control scores). The data-matched control
(modes.matched.rule: data) adds a second collect and tokens job per game: G x data.steps transitions
from the same policy, under a seed of their own (`more_data_seed`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from scaleworld.data.files import sha256_file
from scaleworld.data.windows import WINDOWS
from scaleworld.imagination.config import START_SPLITS, policy_train_config
from scaleworld.models.dynamics_config import TERMINATION_TARGETS
from scaleworld.models.tokenizer_config import TokenizerConfig
from scaleworld.study.graph import Graph
from scaleworld.study.kinds import (
    AnalysisStage,
    AnchorStage,
    CollectStage,
    ControlStage,
    DynamicsStage,
    ExpertStage,
    FidelityStage,
    PolicyStage,
    TokenizerStage,
    TokensStage,
)
from scaleworld.study.spec import SpecError, expert_steps, policy_config, study_sizes, tokenizer_steps
from scaleworld.study.variants import expand_variants
from scaleworld.training.config import TrainConfig, matched_steps


def _hashed(train: Any) -> dict[str, Any]:
    """A TrainConfig as a job config: without `logger`, which changes where metrics go, not outputs."""
    config = asdict(train)
    config.pop("logger")
    return config


def _train_config(spec: Any, *, steps: int, seed: int) -> dict[str, Any]:
    t = spec.train
    return _hashed(TrainConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, warmup_steps=min(t.warmup_steps, steps),
                               eval_every=min(t.eval_every, steps), checkpoint_every=min(t.checkpoint_every, steps),
                               seed=seed))


def _collect(graph: Graph, spec: Any, tag: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any], dict[str, str],
                                                                      dict[str, dict[str, str]]]:
    """Each game's `collect` job (and `expert` job): (collect id, its stage, expert id, imported expert)
    per game."""
    protocol = asdict(spec.protocol)
    collect, collect_stage, expert_of = {}, {}, {}
    imported = {}  # game -> {source, sha256} of an imported expert
    e = spec.expert
    for game in spec.games:
        inputs, policy = [], {"source": e.source}
        if e.source == "ppo":
            expert = ExpertStage(game=game, protocol=protocol, agent_steps=expert_steps(spec), num_envs=e.num_envs,
                                 seed=e.seed, episodes=e.episodes, episodic_life=e.episodic_life,
                                 fire_reset=e.fire_reset)
            inputs = [graph.add(expert.job([], {"game": game, **tag}))]
            expert_of[game] = inputs[0]
        elif e.source != "random":  # an imported expert: its weights' hash is part of the identity
            from scaleworld.experts.checkpoint import read_expert_meta  # here: it imports torch (validate stays fast)

            folder = Path(e.source) / game
            imported[game] = {"source": str(folder.resolve()),
                              "sha256": sha256_file(folder / read_expert_meta(folder)["model"]["file"])}
            policy = dict(imported[game])
        if e.source != "random":
            policy |= {"sampling": e.sampling, "epsilon": e.epsilon}
        collect_stage[game] = CollectStage(game=game, protocol=protocol, policy=policy, steps=spec.data.steps,
                                           num_envs=spec.data.num_envs, seed=spec.data.seed)
        collect[game] = graph.add(collect_stage[game].job(inputs, {"game": game, **tag}))
    return collect, collect_stage, expert_of, imported


def _tokenizers(graph: Graph, spec: Any, collect: dict[str, str], tag: dict[str, Any]) -> dict[str, str]:
    """game -> the `tokenizer` job that learns its frames (one shared, or one per game)."""
    tok = spec.tokenizer
    tok_model = asdict(TokenizerConfig(channels=tuple(tok.channels), frame_size=spec.protocol.frame_size))
    steps = tokenizer_steps(spec)
    d = TrainConfig()  # the trainer's intervals, never longer than the run
    tok_train = _hashed(TrainConfig(steps=steps, batch_size=tok.batch_size, lr=tok.lr, seed=tok.seed,
                                    warmup_steps=min(d.warmup_steps, steps), eval_every=min(d.eval_every, steps),
                                    checkpoint_every=min(d.checkpoint_every, steps)))
    # the dynamics models' split: a tokenizer never trains on their held-out frames
    tokenizer = TokenizerStage(model=tok_model, train=tok_train, val_fraction=spec.data.val_fraction,
                               split_seed=spec.data.split_seed)
    groups = [spec.games] if tok.scope == "shared" else [[g] for g in spec.games]
    tokenizer_of = {}
    for group in groups:
        tid = graph.add(tokenizer.job([collect[g] for g in group], {"games": list(group), "scope": tok.scope, **tag}))
        tokenizer_of.update({g: tid for g in group})
    return tokenizer_of


def add_variant(graph: Graph, spec: Any, variant: str, reference: Any = None) -> None:
    """Add one variant's jobs to `graph` (jobs it shares with other variants are merged). A data
    source's variant gives its `reference` (the base spec): its data is tokenized by the reference's
    tokenizer, its models are scored on the reference's held-out episodes and its policies normalised
    by the reference's anchors, so every source is measured in the same units."""
    tag = {"variants": [variant]}
    protocol = asdict(spec.protocol)
    games = list(spec.games)
    tok = spec.tokenizer
    collect, collect_stage, expert_of, imported = _collect(graph, spec, tag)
    ref_collect, ref_expert_of, ref_imported = collect, expert_of, imported
    if reference is not None:
        ref_collect, _, ref_expert_of, ref_imported = _collect(graph, reference, tag)
    tokenizer_of = _tokenizers(graph, reference or spec, ref_collect, tag)

    def encoded(collected: dict[str, str]) -> dict[str, str]:
        return {g: graph.add(TokensStage().job([tokenizer_of[g], collected[g]], {"game": g, **tag},
                                               checks={"max_residual": tok.max_residual})) for g in games}

    tokens = encoded(collect)
    evaluated = tokens if reference is None else encoded(ref_collect)  # the held-out episodes every model is scored on

    for mode in ("joint", "joint_short"):
        if tok.scope == "per_game" and getattr(spec.modes, mode):
            raise SpecError(f"modes.{mode}: a joint model needs one shared tokenizer: set tokenizer.scope=shared")

    joint_steps = spec.train.joint_steps or spec.train.steps * len(games)
    short_steps = matched_steps(joint_steps=joint_steps, num_games=len(games), rule="tokens_per_game")
    # (mode, games, token datasets it trains on, steps); fidelity and policies read tokens[game]
    runs: list[tuple[str, list[str], list[str], int]] = []
    if spec.modes.single:
        runs += [("single", [g], [tokens[g]], spec.train.steps) for g in games]
    if spec.modes.joint:
        runs.append(("joint", games, [tokens[g] for g in games], joint_steps))
    if spec.modes.joint_short:
        runs.append(("joint_short", games, [tokens[g] for g in games], short_steps))
    if spec.modes.matched.enabled:
        rule = spec.modes.matched.rule
        m = matched_steps(joint_steps=joint_steps, num_games=len(games), rule=rule)
        trained_on = tokens
        if rule == "data":  # G x data.steps distinct transitions per game, from the same policy
            more = {g: graph.add(CollectStage(**{**asdict(collect_stage[g]), "steps": len(games) * spec.data.steps,
                                                 "seed": more_data_seed(spec.data.seed)})
                                 .job(graph.jobs[collect[g]].inputs, {"game": g, "more_data": True, **tag}))
                    for g in games}
            trained_on = encoded(more)
        runs += [("matched", [g], [trained_on[g]], m) for g in games]
    fidelity_ids, control_ids = [], []
    windows = None if spec.train.windows == WINDOWS[0] else spec.train.windows  # defaults: unset
    termination = None if spec.train.termination == TERMINATION_TARGETS[0] else spec.train.termination
    anchors = (_add_anchors(graph, reference or spec, tag, protocol, ref_expert_of, ref_imported)
               if spec.policy.enabled else {})
    # Settings shared by many jobs are built once (joint26: 23,514 jobs); job configs are never mutated.
    fidelity = FidelityStage(**asdict(spec.fidelity))
    policies = _policy_configs(spec, protocol) if spec.policy.enabled else None
    validation = spec.train.validation_fraction or None  # the default (0): unset
    train_of = {(steps, seed): _train_config(spec, steps=steps, seed=seed)
                for *_, steps in runs for seed in spec.seeds}
    for size in study_sizes(spec):
        base_model = asdict(size.config(context=spec.models.context))
        for seed in spec.seeds:
            for mode, run_games, inputs, steps in runs:
                model = {**base_model, "games": list(run_games) if len(run_games) > 1 else []}
                dynamics = DynamicsStage(model=model, train=train_of[steps, seed], val_fraction=spec.data.val_fraction,
                                         split_seed=spec.data.split_seed, windows=windows, termination=termination,
                                         validation=validation)
                labels = {"modes": [mode], "games": run_games, "size": size.name, "seed": seed, **tag}
                did = graph.add(dynamics.job(inputs, labels))
                held_out = [evaluated[g] for g in run_games]  # every mode is scored on the same held-out episodes
                trained = [t for t in inputs if t not in held_out]  # and on its own data for the training NLL
                fidelity_ids.append(graph.add(fidelity.job([did, tokenizer_of[run_games[0]], *held_out, *trained],
                                                           labels)))
                p = spec.policy
                if p.enabled and mode in p.modes and (not p.sizes or size.name in p.sizes):
                    for game in run_games:
                        control_ids += _add_policies(graph, policies, did=did, tokens=tokens[game],
                                                     tokenizer=tokenizer_of[game], anchor=anchors[game],
                                                     labels={**labels, "game": game})
    rule = {k: getattr(spec.analysis, k) for k in ("rule_version", "alpha", "delta", "margin_nats", "min_sizes",
                                                   "min_seeds", "bootstrap_reps", "seed", "weak_expert")}
    if spec.analysis.episode_bootstrap:  # the default (off) stays out of the identity
        rule["episode_bootstrap"] = True
    analysed = sorted(set(fidelity_ids)) + sorted(set(control_ids)) + sorted(anchors.values())
    graph.add(AnalysisStage(rule=rule).job(analysed, {"variant": variant, "matched_rule": spec.modes.matched.rule,
                                                      **tag}))


def more_data_seed(seed: int) -> int:
    """The collection seed of the data-matched control's larger dataset: a stream of its own, far
    from `seed` (the usual dataset's emulators are seeded seed, seed + 1, ...), so no episode repeats."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0] >> 1)  # [0, 2^31)


def _add_anchors(graph: Graph, spec: Any, tag: dict[str, Any], protocol: dict[str, Any], expert_of: dict[str, str],
                 imported: dict[str, dict[str, str]]) -> dict[str, str]:
    """One `anchor` job per game: the random policy's score and the upper anchor (expert or human)."""
    c, e = spec.control, spec.expert
    anchors = {}
    for game in spec.games:
        inputs, expert = [], None
        if e.source == "ppo":  # the expert job measured its score: the quality record, and the upper anchor
            inputs = [expert_of[game]]
        elif c.upper_anchor == "expert":  # an imported expert: scored by the anchor job
            expert = {"source": imported[game]["source"], "episodes": e.episodes, "sha256": imported[game]["sha256"]}
        anchor = AnchorStage(game=game, protocol=protocol, episodes=c.anchor_episodes, num_envs=c.num_envs,
                             seed=c.seed, upper=c.upper_anchor, expert=expert)
        anchors[game] = graph.add(anchor.job(inputs, {"game": game, **tag}))
    return anchors


def _policy_configs(spec: Any, protocol: dict[str, Any]) -> tuple[list[Any], Any]:
    """Each trial's `PolicyStage` and the `ControlStage` of every control job."""
    p, c = spec.policy, spec.control
    config = asdict(policy_config(p))
    starts = None if p.starts == START_SPLITS[0] else p.starts  # held_out: unset, identities as before it
    trials = [PolicyStage(policy=config, starts=starts, train=_hashed(policy_train_config(
        steps=p.steps, batch_size=p.batch_size, lr=p.lr, seed=trial, checkpoint_every=p.checkpoint_every)))
        for trial in range(p.trials)]
    control = ControlStage(episodes=c.episodes, num_envs=c.num_envs, seed=c.seed, greedy=c.sampling == "greedy",
                           protocol=protocol)
    return trials, control


def _add_policies(graph: Graph, policies: tuple[list[Any], Any], *, did: str, tokens: str, tokenizer: str,
                  anchor: str, labels: dict[str, Any]) -> list[str]:
    """`policy` jobs (one per trial) for one world model and game, each with its `control` job."""
    trials, control = policies
    controls = []
    for trial, stage in enumerate(trials):
        pid = graph.add(stage.job([did, tokens], {**labels, "trial": trial}))
        controls.append(graph.add(control.job([pid, did, tokenizer, anchor], {**labels, "trial": trial})))
    return controls


def build_graph(spec: Any) -> Graph:
    """The jobs of a loaded spec (a DictConfig of StudySpec) and all its variants."""
    graph = Graph()
    for variant in expand_variants(spec):  # plain dataclasses: omegaconf's attribute access costs ~30 us
        reference = None if variant.reference is None else OmegaConf.to_object(variant.reference)
        add_variant(graph, OmegaConf.to_object(variant.spec), variant.name, reference)
    return graph
