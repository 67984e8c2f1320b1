"""The study-level numbers of `analysis.json` beyond the regimes: every model against the trivial
next-latent baselines, scaling-law fits, the matched-vs-joint test, and aggregate
normalised control scores and P(improvement) with hierarchical bootstrap intervals
(`scaleworld.analysis.hierarchical`). The seed is the unit of every comparison: a joint model per
seed plays every game, so its seeds are drawn (or averaged) once for all games.

Inputs are plain nested dicts read from job folders; outputs are JSON-safe dicts (intervals as
``{"point", "lo", "hi"}``). Every bootstrap draws from the one `numpy.random.Generator` passed in,
in a fixed order (sorted modes, sizes and games), so a seed fixes every interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scaleworld.analysis.hierarchical import aggregate_cis, improvement_ci
from scaleworld.analysis.scaling_fit import fit_scaling_law
from scaleworld.analysis.statistics import ConfidenceInterval, seed_unit_comparison
from scaleworld.errors import ScaleworldError

# curves[mode][game][params][seed] -> value
SeedCurves = dict[str, dict[str, dict[int, dict[int, float]]]]

COMPARED = (("joint", "single"), ("joint", "matched"), ("matched", "single"), ("joint", "joint_short"),
            ("joint_short", "single"))
"""(x, y) pairs reported as P(x improves on y) (a pair whose modes a study lacks draws nothing, so
adding one leaves the other pairs' intervals as they were)."""


def interval(ci: ConfidenceInterval) -> dict[str, float | None]:
    def plain(v: float) -> float | None:
        return None if math.isnan(v) else float(v)

    return {"point": plain(ci.point), "lo": plain(ci.lo), "hi": plain(ci.hi)}


def _rises(sizes: dict[int, list[float]]) -> str | None:
    """Where a curve (params -> per-seed NLLs) rises with size by more than its noise: a step up
    larger than the combined standard error of the two means (any step up with one seed); None if
    it never does."""
    params = sorted(sizes)
    for small, large in zip(params, params[1:]):
        a, b = np.asarray(sizes[small], float), np.asarray(sizes[large], float)
        se = math.sqrt(sum(v.var(ddof=1) / v.size for v in (a, b) if v.size > 1))
        if b.mean() - a.mean() > se:
            return (f"not monotone: {large:,} parameters are worse than {small:,} by {b.mean() - a.mean():.3g} "
                    f"(noise {se:.2g}): a power law does not describe it")
    return None


def scaling_fits(curves: SeedCurves, *, rng: np.random.Generator, reps: int,
                 total: SeedCurves | None = None) -> dict[str, dict[str, Any]]:
    """L(N) = E + A / N^alpha per (mode, game) with >= 3 sizes. `curves` are keyed by the models'
    block (non-embedding) parameters, N as Kaplan et al. (2020) count it; `total`, the same curves
    keyed by total parameters, adds alpha on total parameters as a second reading (embeddings and
    heads are 15.9% of paper-d2 at context 64, 0.4% of paper-d96: they bend the small end). A
    curve that rises with size beyond its noise (`_rises`) is not fitted: it is flagged, not
    reported as a law. Per size the seeds are keyed (curves[mode][game][params][seed] -> NLL): where
    every size has the same seeds the bootstrap draws them together (`fit_scaling_law`'s `paired`)."""
    out: dict[str, dict[str, Any]] = {}
    for mode in sorted(curves):
        for game in sorted(curves[mode]):
            by_seed = curves[mode][game]
            paired = len({tuple(sorted(v)) for v in by_seed.values()}) == 1
            sizes = {p: [v[seed] for seed in sorted(v)] for p, v in by_seed.items()}
            params = sorted(sizes)
            if len(params) < 3:
                out.setdefault(mode, {})[game] = {"fit": None, "reason": f"{len(params)} sizes; a fit needs 3"}
                continue
            rises = _rises(sizes)
            if rises is not None:
                out.setdefault(mode, {})[game] = {"fit": None, "reason": rises, "monotone": False}
                continue
            try:
                f = fit_scaling_law(params, [sizes[p] for p in params], rng=rng, reps=reps, paired=paired)
                by_total = None
                if total is not None:
                    t = total[mode][game]
                    by_total = fit_scaling_law(sorted(t), [[t[p][seed] for seed in sorted(t[p])] for p in sorted(t)],
                                               rng=rng, reps=reps, paired=paired)
            except ScaleworldError as exc:
                out.setdefault(mode, {})[game] = {"fit": None, "reason": str(exc)}
                continue
            held = None if f.held_out is None else {
                "params": f.held_out.params, "observed": f.held_out.observed, "predicted": f.held_out.predicted,
                "relative_error": f.held_out.relative_error}
            out.setdefault(mode, {})[game] = {
                "fit": {"E": f.fit.E, "A": f.fit.A, "alpha": f.fit.alpha, "sizes": f.fit.sizes},
                "params": "blocks", "alpha_ci": interval(f.alpha_ci), "E_ci": interval(f.E_ci), "held_out": held,
                "monotone": True, "reason": None,
                **({} if by_total is None else {"alpha_total_ci": interval(by_total.alpha_ci)})}
    return out


MATCHED_HYPOTHESES = ("H0: the mean over games of matched - joint held-out NLL is 0, per size; the seed is the "
                      "unit (per seed, the mean over games; one joint model per seed plays every game): t over "
                      "seeds, two-sided, paired where both modes have the same seeds, else Welch's (unpaired)")
"""The one line the report prints beside the matched-vs-joint result."""


def matched_vs_joint(curves: dict[str, dict[str, dict[str, dict[int, float]]]], *,
                     confidence: float = 0.95) -> dict[str, Any]:
    """Per size (curves[mode][game][size][seed] -> held-out NLL, keyed by size name: a joint model of
    a size has a few more parameters, its game embeddings): matched-compute single-game runs vs the
    joint run with the seed as the unit (`scaleworld.analysis.statistics.seed_unit_comparison`):
    per-game differences (matched - joint) with t intervals over seeds, the mean difference over
    games with its interval, and the test's p."""
    if "matched" not in curves or "joint" not in curves:
        return {}
    out = {}
    sizes = sorted({s for g in curves["joint"].values() for s in g})
    for size in sizes:
        x = {g: s[size] for g, s in curves["matched"].items() if size in s}
        y = {g: s[size] for g, s in curves["joint"].items() if size in s}
        games = sorted(set(x) & set(y))
        if not games:
            continue
        c = seed_unit_comparison({g: x[g] for g in games}, {g: y[g] for g in games}, confidence=confidence,
                                 lower_is_better=True)
        out[size] = {
            "games": list(c.games), "seeds": list(c.seeds), "paired": c.paired,
            "differences": {g: interval(d) for g, d in c.differences.items()},
            "mean_difference": None if c.mean_difference is None else interval(c.mean_difference),
            "t": c.t, "dof": c.dof, "p": c.p, "games_matched_better": c.games_x_better, "untested": c.untested}
    return out


SHARED_SEED_MODES = ("joint", "joint_short")
"""Modes whose models play every game: one model per seed, so the hierarchical bootstrap draws
their seeds once for all games."""

# values[mode][size][game][seed] -> run values (policy trials, or the one NLL of a seed's model)
NestedRuns = dict[str, dict[str, dict[str, dict[int, list[float]]]]]


def improvements(values: NestedRuns, *, rng: np.random.Generator, reps: int,
                 lower_is_better: bool = False) -> dict[str, dict[str, Any]]:
    """P(x improves on y) with a hierarchical bootstrap interval (`scaleworld.analysis.hierarchical`),
    for each pair of `COMPARED` modes at each size both have, over the games both have."""
    out: dict[str, dict[str, Any]] = {}
    for x, y in COMPARED:
        for size in sorted(set(values.get(x, {})) & set(values.get(y, {}))):
            games = sorted(set(values[x][size]) & set(values[y][size]))
            if not games:
                continue
            ci = improvement_ci({g: values[x][size][g] for g in games}, {g: values[y][size][g] for g in games},
                                x_shared=x in SHARED_SEED_MODES, y_shared=y in SHARED_SEED_MODES, rng=rng,
                                reps=reps, lower_is_better=lower_is_better)
            out.setdefault(f"{x}_vs_{y}", {})[size] = {**interval(ci), "games": games}
    return out


def fidelity_improvement(curves: dict[str, dict[str, dict[str, dict[int, float]]]], *, rng: np.random.Generator,
                         reps: int) -> dict[str, dict[str, Any]]:
    """P(improvement) between modes on held-out NLL (lower is better); curves[mode][game][size][seed] -> NLL."""
    by_size: NestedRuns = {}
    for mode, games in curves.items():
        for game, sizes in games.items():
            for size, seeds in sizes.items():
                by_size.setdefault(mode, {}).setdefault(size, {})[game] = {s: [v] for s, v in seeds.items()}
    return improvements(by_size, rng=rng, reps=reps, lower_is_better=True)


def score_summary(scores: NestedRuns, *, rng: np.random.Generator, reps: int) -> dict[str, Any]:
    """Aggregates of normalised scores per (mode, size) (`RUN_AGGREGATES`: median and mean of game
    means, IQM and optimality gap over all runs as rliable defines them, and those two of game means
    under their own names) with hierarchical bootstrap intervals, and P(improvement) between modes
    at each size. scores[mode][size][game][seed] -> normalised score of each policy trial."""
    aggregates: dict[str, dict[str, Any]] = {}
    for mode in sorted(scores):
        for size in sorted(scores[mode]):
            per_game = {g: scores[mode][size][g] for g in sorted(scores[mode][size])}
            runs = {g: [v for trials in seeds.values() for v in trials] for g, seeds in per_game.items()}
            row: dict[str, Any] = {"games": {g: float(np.mean(v)) for g, v in runs.items()},
                                   "runs": {g: len(v) for g, v in runs.items()},
                                   "seeds": {g: len(seeds) for g, seeds in per_game.items()},
                                   "shared_seeds": mode in SHARED_SEED_MODES}
            for name, ci in aggregate_cis(per_game, shared_seeds=mode in SHARED_SEED_MODES, rng=rng,
                                          reps=reps).items():
                row[name] = interval(ci)
            aggregates.setdefault(mode, {})[size] = row
    comparisons = improvements(scores, rng=rng, reps=reps)
    return {"aggregates": aggregates, "improvement": comparisons, "bootstrap": "hierarchical"}


def baseline_comparison(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """baselines[game] = {unigram, copy: held-out NLL of the two trivial predictors (nats per frame,
    `scaleworld.evaluation.baselines`), models: {mode: {size: {nll: mean over seeds, seeds, not_beating:
    the seeds whose NLL is not below both baselines}}}, flagged: "mode size" of every size with such
    a seed}. Rows are `nll_rows` (fidelity records without baselines, from before fidelity/3, are
    left out: their game is absent)."""
    out: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: (r["game"], r["mode"], r["params"], r["size"], r["seed"])):
        if not row.get("baselines"):
            continue
        game = out.setdefault(row["game"], {**row["baselines"], "models": {}, "flagged": []})
        cell = game["models"].setdefault(row["mode"], {}).setdefault(row["size"], {"nll": [], "not_beating": []})
        cell["nll"].append(row["nll"])
        if not row["nll"] < min(row["baselines"].values()):
            cell["not_beating"].append(row["seed"])
    for game in out.values():
        for mode, sizes in game["models"].items():
            for size, cell in sizes.items():
                cell["seeds"] = len(cell["nll"])
                cell["nll"] = float(np.mean(cell["nll"]))
                if cell["not_beating"]:
                    game["flagged"].append(f"{mode} {size}")
    return out
