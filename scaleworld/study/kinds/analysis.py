"""The analysis kind: the study's regimes, fits, headline tests and aggregate scores, from every
finished fidelity, control and anchor job (the statistics: scaleworld.analysis.study_analysis)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.assumptions import ASSUMED_ANALYSIS_S_PER_INPUT_REP
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.anchor import AnchorStage
from scaleworld.study.kinds.base import RunContext, Stage, at_least


@dataclass(frozen=True, kw_only=True)
class AnalysisStage(Stage):
    """The study's regimes, fits, paired tests and aggregate scores. `rule`: the regime rule's
    settings and the bootstrap's reps and seed."""

    KIND = "analysis"
    ARTIFACT = "analysis.json"
    RUNS_ON_WHAT_FINISHED = True  # a study of thousands of jobs is analysed although some failed
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
        at_least(0, seed=self.rule["seed"])
        if self.statistics != AnalysisStage.statistics:
            raise ScaleworldError(f"statistics={self.statistics!r}: this scaleworld computes "
                                  f"{AnalysisStage.statistics!r}; run the study with the scaleworld that planned it")

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """In proportion to its inputs and bootstrap replicates (measured on the smoke study)."""
        return ASSUMED_ANALYSIS_S_PER_INPUT_REP * len(job.inputs) * self.rule["bootstrap_reps"]

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Scaling regimes of held-out NLL per (mode, game), under the spec's rule, at the final
        checkpoints (``modes``) and, for runs that kept one, at the best (``modes_best``), with
        everything else analysis.json holds."""
        from scaleworld.analysis.study_analysis import analyse, expert_quality  # here: scipy
        from scaleworld.study.results import control_episodes, control_rows, nll_readings
        from scaleworld.training.config import JOINT_SHORT, MATCH_RULES

        r, rule = self.rule, self.regime_rule()
        inputs = [ctx.graph.jobs[i] for i in ctx.job.inputs]
        readings = nll_readings(ctx.store, ctx.graph, inputs)
        modes = {row["mode"] for row in readings["final"]}
        comparison_modes = {**({"matched": MATCH_RULES[ctx.job.labels.get("matched_rule", "tokens_per_game")]}
                       if "matched" in modes else {}),
                    **({"joint_short": JOINT_SHORT} if "joint_short" in modes else {})}
        anchors = [json.loads(path.read_text()) for path in ctx.artifacts(AnchorStage)]
        record = analyse(rows=readings["final"], best_rows=readings["best"],
                         control_runs=control_episodes(ctx.store, ctx.graph, inputs),
                         control_scores=control_rows(ctx.store, inputs),
                         experts=expert_quality(anchors, weak_below=r["weak_expert"]), rule=rule, seed=r["seed"],
                         reps=r["bootstrap_reps"], episode_intervals=bool(r.get("episode_bootstrap")),
                         comparison_modes=comparison_modes)
        record["missing"] = missing_inputs(ctx.store, ctx.graph, inputs)
        if record["missing"]["inputs"] or record["missing"].get("unmeasured"):
            from scaleworld.analysis.missing_games import what_missing_games_could_change

            record["missing"]["could_change"] = what_missing_games_could_change(record, _games(inputs))
        write_json_atomic(ctx.out / self.ARTIFACT, record)
        regimes = lambda key: {mode: {g: v["regime"] for g, v in games.items()}
                               for mode, games in record[key].items()}
        return {"analysis": self.ARTIFACT, "regimes": regimes("modes"),
                **({"regimes_best": regimes("modes_best")} if "modes_best" in record else {})}


def missing_inputs(store: Any, graph: Any, inputs: list[Any]) -> dict[str, Any]:
    """analysis.json ``missing``: the inputs the analysis went without (the study's jobs that failed,
    or never ran because a failure upstream blocked them), per kind, with the games they would have
    added and the first distinct failures that caused it (the job and its reason); the analysis runs
    again once any of them finishes. ``unmeasured``: the games a finished joint fidelity job could
    not measure, each with its job and reason."""
    from scaleworld.study.graph import describe

    missing = [job for job in inputs if not store.is_done(job)]
    by_kind: dict[str, dict[str, int]] = {}
    reasons: list[str] = []
    for job in missing:
        counts = by_kind.setdefault(job.kind, {"failed": 0, "not_run": 0})
        counts["failed" if store.failure(job) else "not_run"] += 1
        todo, seen = [job], set()
        while todo and len(reasons) < 3:  # the failures upstream (or its own) that kept it from finishing
            upstream = todo.pop()
            reason = store.failure(upstream)
            line = f"{describe(upstream)}: {reason}"
            if reason and line not in reasons:
                reasons.append(line)
            elif not reason:
                todo += [graph.jobs[i] for i in upstream.inputs if i not in seen and not store.is_done(graph.jobs[i])]
                seen.update(upstream.inputs)
    # A finished joint fidelity job that could not measure a game (no held-out transition) names it.
    unmeasured = []
    for job in inputs:
        if job.kind == "fidelity" and store.is_done(job):
            for game, why in sorted(store.read_json(job, store.artifact(job)).get("unmeasured", {}).items()):
                unmeasured.append({"job": describe(job), "game": game, "reason": why})
    games = sorted(set(_games(missing)) | {u["game"] for u in unmeasured})
    return {"inputs": len(missing), "of": len(inputs), "by_kind": by_kind, "games": games, "reasons": reasons,
            **({"unmeasured": unmeasured} if unmeasured else {})}


def _games(jobs: list[Any]) -> list[str]:
    """The games these jobs read (a joint job's every game)."""
    return sorted({g for job in jobs for g in job.labels.get("games", [job.labels.get("game")]) if g})
