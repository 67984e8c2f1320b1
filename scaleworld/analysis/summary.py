"""The study-level numbers of `analysis.json` beyond the regimes: scaling-law fits, the paired
matched-vs-joint test, and aggregate normalised control scores with intervals.

Inputs are plain nested dicts read from job folders; outputs are JSON-safe dicts (intervals as
``{"point", "lo", "hi"}``). Every bootstrap draws from the one `numpy.random.Generator` passed in,
in a fixed order (sorted modes, sizes and games), so a seed fixes every interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scaleworld.analysis.scaling_fit import fit_scaling_law
from scaleworld.analysis.statistics import (
    AGGREGATES,
    ConfidenceInterval,
    paired_comparison,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from scaleworld.errors import ScaleworldError

# curves[mode][game][params] -> per-seed values; scores[mode][size][game] -> per-run values
Curves = dict[str, dict[str, dict[int, list[float]]]]
Scores = dict[str, dict[str, dict[str, list[float]]]]

COMPARED = (("joint", "single"), ("joint", "matched"), ("matched", "single"), ("joint", "joint_short"),
            ("joint_short", "single"))
"""(x, y) pairs reported as P(x improves on y) (a pair whose modes a study lacks draws nothing, so
adding one leaves the other pairs' intervals as they were)."""


def interval(ci: ConfidenceInterval) -> dict[str, float | None]:
    def plain(v: float) -> float | None:
        return None if math.isnan(v) else float(v)

    return {"point": plain(ci.point), "lo": plain(ci.lo), "hi": plain(ci.hi)}


def scaling_fits(curves: Curves, *, rng: np.random.Generator, reps: int) -> dict[str, dict[str, Any]]:
    """L(N) = E + A / N^alpha per (mode, game) with >= 3 sizes; else the reason there is none."""
    out: dict[str, dict[str, Any]] = {}
    for mode in sorted(curves):
        for game in sorted(curves[mode]):
            sizes = curves[mode][game]
            params = sorted(sizes)
            if len(params) < 3:
                out.setdefault(mode, {})[game] = {"fit": None, "reason": f"{len(params)} sizes; a fit needs 3"}
                continue
            try:
                f = fit_scaling_law(params, [sizes[p] for p in params], rng=rng, reps=reps)
            except ScaleworldError as exc:
                out.setdefault(mode, {})[game] = {"fit": None, "reason": str(exc)}
                continue
            held = None if f.held_out is None else {
                "params": f.held_out.params, "observed": f.held_out.observed, "predicted": f.held_out.predicted,
                "relative_error": f.held_out.relative_error}
            out.setdefault(mode, {})[game] = {
                "fit": {"E": f.fit.E, "A": f.fit.A, "alpha": f.fit.alpha, "sizes": f.fit.sizes},
                "alpha_ci": interval(f.alpha_ci), "E_ci": interval(f.E_ci), "held_out": held, "reason": None}
    return out


def matched_vs_joint(curves: dict[str, dict[str, dict[str, list[float]]]], *, rng: np.random.Generator,
                     reps: int) -> dict[str, Any]:
    """Per size (curves keyed by size name: a joint model of a size has a few more parameters,
    its game embeddings): matched-compute single-game runs vs the joint run, paired by game
    (held-out NLL, lower is better): per-game differences (matched - joint) with intervals and a
    Wilcoxon signed-rank test across games."""
    if "matched" not in curves or "joint" not in curves:
        return {}
    out = {}
    sizes = sorted({p for g in curves["joint"].values() for p in g})
    for size in sizes:
        x = {g: s[size] for g, s in curves["matched"].items() if size in s}
        y = {g: s[size] for g, s in curves["joint"].items() if size in s}
        games = sorted(set(x) & set(y))
        if not games:
            continue
        c = paired_comparison({g: x[g] for g in games}, {g: y[g] for g in games}, rng=rng, reps=reps,
                              lower_is_better=True)
        out[size] = {
            "games": list(c.games), "differences": {g: interval(d) for g, d in c.differences.items()},
            "mean_difference": interval(c.mean_difference), "wilcoxon_statistic": c.wilcoxon_statistic,
            "wilcoxon_p": c.wilcoxon_p, "games_matched_better": c.games_x_better}
    return out


def improvements(values: dict[str, dict[str, dict[str, list[float]]]], *, rng: np.random.Generator, reps: int,
                 lower_is_better: bool = False) -> dict[str, dict[str, Any]]:
    """P(x improves on y) with a stratified bootstrap interval, for each pair of `COMPARED` modes
    at each size both have, over the games both have; values[mode][size][game] -> per-run values."""
    out: dict[str, dict[str, Any]] = {}
    for x, y in COMPARED:
        for size in sorted(set(values.get(x, {})) & set(values.get(y, {}))):
            games = sorted(set(values[x][size]) & set(values[y][size]))
            if not games:
                continue
            ci = probability_of_improvement_ci({g: values[x][size][g] for g in games},
                                               {g: values[y][size][g] for g in games}, rng=rng, reps=reps,
                                               lower_is_better=lower_is_better)
            out.setdefault(f"{x}_vs_{y}", {})[size] = {**interval(ci), "games": games}
    return out


def fidelity_improvement(curves: dict[str, dict[str, dict[str, list[float]]]], *, rng: np.random.Generator,
                         reps: int) -> dict[str, dict[str, Any]]:
    """P(improvement) between modes on held-out NLL (lower is better); curves[mode][game][size] -> seeds."""
    by_size: dict[str, dict[str, dict[str, list[float]]]] = {}
    for mode, games in curves.items():
        for game, sizes in games.items():
            for size, values in sizes.items():
                by_size.setdefault(mode, {}).setdefault(size, {})[game] = values
    return improvements(by_size, rng=rng, reps=reps, lower_is_better=True)


def score_summary(scores: Scores, *, rng: np.random.Generator, reps: int) -> dict[str, Any]:
    """Aggregates of normalised scores per (mode, size) with stratified bootstrap intervals
    (runs resampled within each game), and P(improvement) between modes at each size."""
    aggregates: dict[str, dict[str, Any]] = {}
    for mode in sorted(scores):
        for size in sorted(scores[mode]):
            per_game = {g: scores[mode][size][g] for g in sorted(scores[mode][size])}
            row: dict[str, Any] = {"games": {g: float(np.mean(v)) for g, v in per_game.items()},
                                   "runs": {g: len(v) for g, v in per_game.items()}}
            for name, aggregate in AGGREGATES.items():
                row[name] = interval(stratified_bootstrap_ci(per_game, aggregate, rng=rng, reps=reps))
            aggregates.setdefault(mode, {})[size] = row
    comparisons = improvements(scores, rng=rng, reps=reps)
    return {"aggregates": aggregates, "improvement": comparisons}
