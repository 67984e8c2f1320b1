"""Aggregate scores as published (rliable) with a hierarchical bootstrap over world-model seeds.

A study's control runs are nested: each world model (one per seed) gets several policy trials, so
a game's runs are ``runs[game][seed] -> trial values`` (a held-out NLL is the case of one "trial"
per seed). Treating a game's 16 runs (8 seeds x 2 trials) as independent, and games as independent
when one joint model per seed plays all of them, makes intervals too narrow whenever the seed
effect dominates (tests/test_analysis_hierarchical.py measures it).

Aggregates over a set of games (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice", and their rliable library):

- ``median``, ``mean``: of the per-game mean scores.
- ``iqm``: the interquartile mean of all runs of all games pooled (trim_mean(., 0.25) of the
  runs x games matrix flattened: floor(n/4) runs dropped on each side). Games with more runs weigh
  more, as in the pooled matrix.
- ``optimality_gap``: gamma - mean(min(score, gamma)) over all runs of all games, gamma = 1 (the
  expert): the pooled shortfall below the expert.
- ``iqm_of_game_means``, ``optimality_gap_of_game_means``: the same two of the per-game means
  (scaleworld's earlier definitions, kept under their own names).

The hierarchical bootstrap, per replicate: draw the seeds with replacement (as many as there
are), then for each drawn seed its trials with replacement (as many as the game's most trials per
seed, so a seed that lost a trial to a failed job weighs as much as the others). Seeds are drawn
per game, or once for all games when they share their models (`shared_seeds`: a joint model per
seed plays every game, so the same draw applies to every game). The set of games stays fixed, as in
rliable's stratified bootstrap.

Intervals are *expanded* percentile intervals (Hesterberg 2015, "What Teachers Should Know About
the Bootstrap", section 4.5): a plain percentile interval of a mean of n seeds covers less than
nominal (the bootstrap variance is (n-1)/n of the truth, and it ignores that the spread itself is
estimated from n values: 88% measured for a 95% interval with 8 seeds shared by all games), so the
percentiles are taken at tail' = Phi(-sqrt(n / (n-1)) t_{1 - tail, dof}) in place of tail = (1 -
confidence) / 2. n is the number of seeds (the fewest of any game); dof = n - 1 when the seeds are
shared, else the sum over games of (seeds - 1) (independent games pool their spreads). With one
seed there is nothing to expand: plain percentiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from scaleworld.analysis.statistics import (
    ConfidenceInterval,
    as_values,
    check_bootstrap,
    iqm,
    mean,
    median,
    optimality_gap,
    win_rate,
)
from scaleworld.errors import ScaleworldError

Runs = Mapping[str, Mapping[int, Sequence[float]]]
"""runs[game][seed] -> the values of that seed's runs (policy trials; one value for an NLL)."""


def _pooled_iqm(runs: list[np.ndarray]) -> np.ndarray:
    return iqm(np.concatenate(runs, axis=-1))


def _pooled_gap(runs: list[np.ndarray]) -> np.ndarray:
    return optimality_gap(np.concatenate(runs, axis=-1))


def _of_means(aggregate: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], np.ndarray]:
    return lambda runs: aggregate(np.stack([r.mean(axis=-1) for r in runs], axis=-1))


RUN_AGGREGATES: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "median": _of_means(median), "iqm": _pooled_iqm, "mean": _of_means(mean), "optimality_gap": _pooled_gap,
    "iqm_of_game_means": _of_means(iqm), "optimality_gap_of_game_means": _of_means(optimality_gap),
}
"""Each reduces a list (one per game, sorted) of run arrays [..., n_game] to [...]: see the module
docstring for the definitions."""


def _as_runs(runs: Runs, *, what: str) -> dict[str, tuple[list[int], np.ndarray, np.ndarray]]:
    """game -> (seeds, values [S, T] NaN-padded, trials per seed [S]), games and seeds sorted."""
    if not isinstance(runs, Mapping) or not runs:
        raise ScaleworldError(f"{what} has no games; pass game -> seed -> run values")
    out = {}
    for game in sorted(runs):
        per_seed = runs[game]
        if not isinstance(per_seed, Mapping) or not per_seed:
            raise ScaleworldError(f"{what}[{game!r}] has no seeds; pass seed -> run values")
        seeds = sorted(per_seed)
        arrays = [as_values(per_seed[s], what=f"{what}[{game!r}][{s!r}]") for s in seeds]
        width = max(a.size for a in arrays)
        padded = np.full((len(seeds), width), np.nan)
        for row, a in enumerate(arrays):
            padded[row, : a.size] = a
        out[game] = (seeds, padded, np.array([a.size for a in arrays]))
    return out


def _flat(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.concatenate([values[s, :c] for s, c in enumerate(counts)])


def expanded_interval(point: float, replicates: np.ndarray, *, confidence: float, seeds: int,
                      dof: int) -> ConfidenceInterval:
    """The expanded percentile interval of the module docstring (nominal `confidence` recorded)."""
    from scipy import stats  # here: the spec and plan never import scipy

    tail = (1.0 - confidence) / 2.0
    if seeds >= 2 and dof >= 1:
        tail = float(stats.norm.cdf(-np.sqrt(seeds / (seeds - 1)) * stats.t.ppf(1.0 - tail, dof)))
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return ConfidenceInterval(point=float(point), lo=float(lo), hi=float(hi), reps=int(replicates.size),
                              confidence=float(confidence))


def _expansion(table: dict[str, tuple[list[int], np.ndarray, np.ndarray]], shared: bool) -> dict[str, int]:
    seeds = min(len(s) for s, _, _ in table.values())
    return {"seeds": seeds, "dof": seeds - 1 if shared else sum(len(s) - 1 for s, _, _ in table.values())}


def _is_shared(table: dict[str, tuple[list[int], np.ndarray, np.ndarray]], shared_seeds: bool) -> bool:
    return shared_seeds and len({tuple(seeds) for seeds, _, _ in table.values()}) == 1


def resample_runs(runs: Runs, *, shared_seeds: bool, reps: int, rng: np.random.Generator,
                  what: str = "runs") -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """(points, replicates, expansion): per game (sorted), its runs [n] and `reps` hierarchical
    resamples [reps, S x T], and the {seeds, dof} of the expanded interval. `shared_seeds` draws
    the seeds once for all games; it needs every game to have the same seeds (else games are drawn
    independently: they do not share models)."""
    table = _as_runs(runs, what=what)
    shared = _is_shared(table, shared_seeds)
    first = len(next(iter(table.values()))[0])
    common = rng.integers(0, first, size=(reps, first)) if shared else None  # one draw of seeds for every game
    points, replicates = [], []
    for seeds, values, counts in table.values():
        picks = common if shared else rng.integers(0, len(seeds), size=(reps, len(seeds)))  # [reps, S]
        width = values.shape[1]
        trials = np.floor(rng.random((reps, len(seeds), width)) * counts[picks][..., None]).astype(int)
        replicates.append(values[picks[..., None], trials].reshape(reps, -1))  # [reps, S x T]
        points.append(_flat(values, counts))
    return points, replicates, _expansion(table, shared)


def hierarchical_ci(runs: Runs, aggregate: str = "mean", *, shared_seeds: bool, rng: np.random.Generator,
                    reps: int = 2000, confidence: float = 0.95) -> ConfidenceInterval:
    """`RUN_AGGREGATES[aggregate]` of the runs with a hierarchical bootstrap interval."""
    if aggregate not in RUN_AGGREGATES:
        raise ScaleworldError(f"unknown aggregate {aggregate!r}: use {', '.join(RUN_AGGREGATES)}")
    return aggregate_cis(runs, shared_seeds=shared_seeds, rng=rng, reps=reps, confidence=confidence)[aggregate]


def aggregate_cis(runs: Runs, *, shared_seeds: bool, rng: np.random.Generator, reps: int = 2000,
                  confidence: float = 0.95) -> dict[str, ConfidenceInterval]:
    """Every `RUN_AGGREGATES` entry with its interval, all from one set of replicates."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    points, replicates, expansion = resample_runs(runs, shared_seeds=shared_seeds, reps=reps, rng=rng)
    return {name: expanded_interval(float(reduce(points)), np.asarray(reduce(replicates)), confidence=confidence,
                                    **expansion) for name, reduce in RUN_AGGREGATES.items()}


def improvement_ci(x: Runs, y: Runs, *, x_shared: bool, y_shared: bool, rng: np.random.Generator,
                   reps: int = 2000, confidence: float = 0.95, lower_is_better: bool = False) -> ConfidenceInterval:
    """P(x improves on y): per game, the share of run pairs where x beats y (ties count 1/2), mean
    over games with equal weight; interval from hierarchical resamples of each (x and y are other
    models, so drawn independently of each other)."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    if sorted(x) != sorted(y):
        raise ScaleworldError(f"x and y must cover the same games (x: {sorted(x)}, y: {sorted(y)})")
    sign = -1.0 if lower_is_better else 1.0
    x_points, x_reps, x_exp = resample_runs(x, shared_seeds=x_shared, reps=reps, rng=rng, what="x")
    y_points, y_reps, y_exp = resample_runs(y, shared_seeds=y_shared, reps=reps, rng=rng, what="y")
    point = np.mean([win_rate(sign * a, sign * b) for a, b in zip(x_points, y_points)])
    replicates = np.mean([win_rate(sign * a, sign * b) for a, b in zip(x_reps, y_reps)], axis=0)
    # two independent samples: the fewer seeds and the smaller dof decide the expansion (conservative)
    return expanded_interval(float(point), replicates, confidence=confidence,
                             seeds=min(x_exp["seeds"], y_exp["seeds"]), dof=min(x_exp["dof"], y_exp["dof"]))


def episode_size_means(runs: Sequence[np.ndarray], *, rng: np.random.Generator, reps: int = 2000,
                       confidence: float = 0.95) -> list[ConfidenceInterval]:
    """Per size, the mean held-out NLL over seeds with an interval that resamples the held-out
    episodes too (the held-out set is fixed and can be 1-2 episodes: seed variance does not cover
    it). runs[k]: [S_k, E, 2], per seed and held-out episode its summed nats and scored frames.
    Each replicate draws the seeds of each size with replacement and one set of E episodes for
    every size and seed (all are scored on the same episodes); a run's NLL is its drawn episodes'
    nats over their frames. Plain percentile intervals (the point: the mean of the runs' NLLs)."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    arrays = [np.asarray(r, dtype=float) for r in runs]
    episodes = {a.shape[1] for a in arrays}
    if any(a.ndim != 3 or a.shape[2] != 2 or a.shape[0] == 0 for a in arrays) or len(episodes) != 1:
        raise ScaleworldError("per size, give [seeds, episodes, (nats, frames)] with the same held-out episodes")
    picks = rng.integers(0, episodes.pop(), size=(reps, arrays[0].shape[1]))  # [reps, E]: shared by every size
    out = []
    for a in arrays:
        point = float(np.mean(a[:, :, 0].sum(1) / a[:, :, 1].sum(1)))
        seeds = rng.integers(0, a.shape[0], size=(reps, a.shape[0]))  # [reps, S]
        drawn = a[seeds[:, :, None], picks[:, None, :]]  # [reps, S, E, 2]
        replicates = (drawn[..., 0].sum(-1) / drawn[..., 1].sum(-1)).mean(-1)  # [reps]
        tail = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
        out.append(ConfidenceInterval(point=point, lo=float(lo), hi=float(hi), reps=reps, confidence=confidence))
    return out
