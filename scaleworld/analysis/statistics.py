"""Scores over games with honest error bars: normalisation, aggregates, intervals, comparisons.

Conventions used throughout:

- ``scores`` is a mapping ``game -> per-seed values`` (one value per run: a normalised score, or a
  held-out NLL). Games may have different numbers of seeds. Games are always processed in sorted
  name order, so results do not depend on the mapping's insertion order.
- The bootstraps (`scaleworld.analysis.hierarchical`) resample seeds with replacement within each
  game, or once for all games when one model per seed plays every game, then apply the aggregate
  across games. The set of games is fixed: an interval describes the uncertainty that comes from
  finite seeds, which is what more seeds shrink.
- Plain percentile intervals of a bootstrap cover less than nominal with few seeds (the bootstrap
  variance of a mean of n is (n-1)/n of the truth, and the spread itself is estimated from n
  values): 88% for a 95% interval with 8 seeds, 80% with 4 (tools/stats_calibration.py). Every
  interval the report prints is therefore an *expanded* percentile interval (`expanded_interval`)
  or a t interval (`t_interval`), chosen per statistic from measured coverage (ARCHITECTURE.md,
  "Statistics, calibrated").
- ``lower_is_better=True`` flips the meaning of "improvement" (held-out NLL is lower-is-better).
- Randomness comes only from the ``rng`` argument (a ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from scaleworld.errors import ScaleworldError

Aggregate = Callable[[np.ndarray], np.ndarray]
"""Reduces the last axis (games) of an array: 1-D -> scalar, (reps, games) -> (reps,)."""


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with its interval (a bootstrap's when `reps` > 0, else a t interval)."""

    point: float
    lo: float
    hi: float
    reps: int
    """Bootstrap replicates behind the interval."""
    confidence: float
    """Nominal coverage, e.g. 0.95."""

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    @property
    def width(self) -> float:
        return self.hi - self.lo


# ---------------------------------------------------------------------------------------------
# Input checks: every public function funnels its inputs through these.


def as_values(values: object, *, what: str) -> np.ndarray:
    """A 1-D float array of finite values (a scalar counts as one seed)."""
    array = np.atleast_1d(np.asarray(values, dtype=float))
    if array.ndim != 1:
        raise ScaleworldError(f"{what} must be 1-D (one value per seed), got shape {array.shape}; flatten it")
    if array.size == 0:
        raise ScaleworldError(f"{what} is empty; pass at least one value per seed")
    if not np.all(np.isfinite(array)):
        raise ScaleworldError(f"{what} contains NaN or infinite values; drop or re-run the failed seeds first")
    return array


def as_scores(scores: Mapping[str, object], *, what: str = "scores") -> dict[str, np.ndarray]:
    """Validated ``game -> 1-D array`` in sorted game order."""
    if not isinstance(scores, Mapping):
        raise ScaleworldError(f"{what} must be a mapping game -> per-seed values, got {type(scores).__name__}")
    if not scores:
        raise ScaleworldError(f"{what} has no games; pass at least one game with per-seed values")
    return {game: as_values(scores[game], what=f"{what}[{game!r}]") for game in sorted(scores)}


def check_bootstrap(*, rng: object, reps: int, confidence: float) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ScaleworldError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                              "pass rng=np.random.default_rng(seed)")
    if int(reps) != reps or reps < 1:
        raise ScaleworldError(f"reps={reps} must be a positive integer (e.g. 2000)")
    if not 0.0 < confidence < 1.0:
        raise ScaleworldError(f"confidence={confidence} must lie strictly between 0 and 1 (e.g. 0.95)")


# ---------------------------------------------------------------------------------------------
# Normalisation and aggregates.


def normalize_scores(scores: object, *, random_score: float, expert_score: float) -> np.ndarray:
    """Expert-random normalised scores: 0 = the random policy, 1 = the expert."""
    values = as_values(scores, what="scores")
    if not (np.isfinite(random_score) and np.isfinite(expert_score)):
        raise ScaleworldError(f"random_score={random_score} and expert_score={expert_score} must be finite")
    if expert_score == random_score:
        raise ScaleworldError(f"expert_score equals random_score ({expert_score}): normalisation is undefined; "
                              "re-measure the expert or leave this game out of normalised aggregates")
    return (values - random_score) / (expert_score - random_score)


def _aggregate_input(values: object) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ScaleworldError("an aggregate needs at least one game; pass a non-empty array of per-game values")
    if not np.all(np.isfinite(array)):
        raise ScaleworldError("aggregate input contains NaN or infinite values; drop the failed games first")
    return array


def mean(values: object) -> np.ndarray:
    """Mean over the last axis (games)."""
    return np.mean(_aggregate_input(values), axis=-1)


def median(values: object) -> np.ndarray:
    """Median over the last axis (games)."""
    return np.median(_aggregate_input(values), axis=-1)


def iqm(values: object) -> np.ndarray:
    """Interquartile mean over the last axis: drop the lowest and highest 25% (floor(n/4) values
    each side, as scipy.stats.trim_mean does), average the rest. Robust like the median, but uses
    half the games instead of one or two, so its interval is tighter."""
    from scipy import stats  # here: `scaleworld validate` reads RegimeRule, and must not wait for scipy

    return stats.trim_mean(_aggregate_input(values), 0.25, axis=-1)


def optimality_gap(values: object, *, threshold: float = 1.0) -> np.ndarray:
    """Mean shortfall below `threshold` over the last axis: mean(max(0, threshold - x)). Scores above
    the threshold earn nothing extra, so one game far above the expert cannot hide others below it."""
    return np.mean(np.maximum(0.0, threshold - _aggregate_input(values)), axis=-1)


AGGREGATES: dict[str, Aggregate] = {"median": median, "iqm": iqm, "mean": mean, "optimality_gap": optimality_gap}


def game_means(scores: Mapping[str, object]) -> dict[str, float]:
    """Per-game mean over seeds, in sorted game order."""
    return {game: float(values.mean()) for game, values in as_scores(scores).items()}


# ---------------------------------------------------------------------------------------------
# Bootstrap.


def expanded_interval(point: float, replicates: np.ndarray, *, confidence: float, seeds: int, dof: float,
                      expand: bool = True) -> ConfidenceInterval:
    """The expanded percentile interval (Hesterberg 2015, "What Teachers Should Know About the
    Bootstrap", section 4.5): the replicates' percentiles at tail' = Phi(-sqrt(n / (n-1)) t_{1-tail,
    dof}) in place of tail = (1 - confidence) / 2, n = `seeds` (the sample size of the resampled
    unit) and `dof` the degrees of freedom of its spread. It widens a plain percentile interval of a
    mean of n by the two factors it misses: the bootstrap's (n-1)/n variance and a t quantile in
    place of a normal one. `expand=False`: plain percentiles. Fewer than 2 seeds: no interval (lo and
    hi NaN: one seed says nothing of the spread)."""
    from scipy import stats  # here: the spec and plan never import scipy

    if seeds < 2:
        return ConfidenceInterval(point=float(point), lo=math.nan, hi=math.nan, reps=int(np.size(replicates)),
                                  confidence=float(confidence))
    tail = (1.0 - confidence) / 2.0
    if expand and dof >= 1:
        tail = float(stats.norm.cdf(-np.sqrt(seeds / (seeds - 1)) * stats.t.ppf(1.0 - tail, dof)))
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return ConfidenceInterval(point=float(point), lo=float(lo), hi=float(hi), reps=int(np.size(replicates)),
                              confidence=float(confidence))


def t_interval(values: object, *, confidence: float = 0.95) -> ConfidenceInterval:
    """Mean of n independent values with the t interval mean +- t_{n-1} sd / sqrt(n) (exact for
    normal values; `reps` 0: no bootstrap). One value: the point, with lo and hi NaN (no spread)."""
    from scipy import stats  # here: the spec and plan never import scipy

    array = as_values(values, what="values")
    point = float(array.mean())
    if array.size < 2:
        return ConfidenceInterval(point=point, lo=math.nan, hi=math.nan, reps=0, confidence=float(confidence))
    half = float(stats.t.ppf(0.5 + confidence / 2, array.size - 1)) * float(array.std(ddof=1)) / np.sqrt(array.size)
    return ConfidenceInterval(point=point, lo=point - half, hi=point + half, reps=0, confidence=float(confidence))


# ---------------------------------------------------------------------------------------------
# Comparing two settings.


def win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of pairs (x_i, y_j) with x_i > y_j, ties counting one half; reduces the last axis
    of both (x: (..., n), y: (..., m) -> (...))."""
    diff = x[..., :, None] - y[..., None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


SeedValues = Mapping[str, Mapping[int, float]]
"""values[game][seed] -> one value per model (e.g. a held-out NLL)."""


@dataclass(frozen=True)
class SeedComparison:
    """x vs y over games with the seed as the unit (e.g. matched-compute single-game runs vs the
    joint run). Differences are x - y in the values' own units, whatever the direction of
    improvement; `untested` says why there is no test (then p and the interval are None)."""

    games: tuple[str, ...]
    seeds: tuple[int, ...]
    """The seeds the test used: every game has them in x (and in y when `paired`)."""
    paired: bool
    """One-sample t on per-seed differences (x and y share these seeds), else Welch over seeds."""
    differences: Mapping[str, ConfidenceInterval]
    """Per game: mean(x seeds) - mean(y seeds) with a t interval over the game's seeds (paired where
    the game has the same seeds in both, else Welch); lo and hi NaN with one seed on a side."""
    mean_difference: ConfidenceInterval | None
    """The mean over games of x - y, with the t interval of the seed-level test."""
    t: float | None
    """None when untested, or when the differences have no spread (then the sign decides p)."""
    dof: float | None
    p: float | None
    """Two-sided p of H0: the mean over games of x - y is 0."""
    games_x_better: int
    """Games where x's seed mean improves on y's (respecting lower_is_better): descriptive, no test."""
    untested: str | None


def _welch_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite dof)."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if va + vb > 0 else a.size + b.size - 2.0
    return float(a.mean() - b.mean()), float(np.sqrt(va + vb)), float(dof)


def difference_test(x: np.ndarray, y: np.ndarray, *, paired: bool,
                     confidence: float) -> tuple[ConfidenceInterval, float | None, float, float]:
    """(interval of mean(x) - mean(y), t, dof, two-sided p): paired (one-sample t on x - y) or Welch."""
    from scipy import stats  # here: the spec and plan never import scipy

    if paired:
        d = x - y
        diff, se, dof = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)), float(d.size - 1)
    else:
        diff, se, dof = _welch_t(x, y)
    if se == 0:  # no spread: the sign decides; t has no finite value (None)
        t, p = None, (1.0 if diff == 0 else 0.0)
    else:
        t = float(diff / se)
        p = float(2 * stats.t.sf(abs(t), dof))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return (ConfidenceInterval(point=diff, lo=diff - half, hi=diff + half, reps=0, confidence=float(confidence)),
            t, dof, p)


def seed_unit_comparison(x: SeedValues, y: SeedValues, *, confidence: float = 0.95,
                         lower_is_better: bool = False) -> SeedComparison:
    """Is the mean over games of x - y zero? The seed is the unit, so a model that plays every game
    (a joint run: one per seed) counts once per seed, not once per game.

    Per seed s (the seeds every game has): X_s = mean over games of x[g][s], likewise Y_s. Where x
    and y have the same such seeds (>= 2), a one-sample t test on X_s - Y_s (n - 1 dof; the pairing
    is harmless where seeds share nothing); else Welch's t on the X_s against the Y_s (>= 2 seeds a
    side: no seed is dropped to make pairs). The interval of the mean difference is that test's t
    interval. Games independent of each other on one side (single-game runs) or not (a joint run)
    leave the X_s, Y_s independent over seeds, so the test holds its size either way
    (tools/stats_calibration.py)."""
    if sorted(x) != sorted(y) or not x:
        raise ScaleworldError(f"x and y must cover the same games (x: {sorted(x)}, y: {sorted(y)})")
    games = tuple(sorted(x))
    for side, values in (("x", x), ("y", y)):
        for game in games:
            as_values(list(values[game].values()), what=f"{side}[{game!r}]")  # finite, non-empty
    x_seeds = sorted(set.intersection(*(set(x[g]) for g in games)))
    y_seeds = sorted(set.intersection(*(set(y[g]) for g in games)))
    shared = x_seeds if x_seeds == y_seeds else []
    differences = {}
    for game in games:
        both = sorted(set(x[game]) & set(y[game]))
        a, b = np.array(list(x[game].values()), float), np.array(list(y[game].values()), float)
        if len(both) >= 2:
            a, b = np.array([x[game][s] for s in both]), np.array([y[game][s] for s in both])
            differences[game] = difference_test(a, b, paired=True, confidence=confidence)[0]
        elif a.size >= 2 and b.size >= 2:
            differences[game] = difference_test(a, b, paired=False, confidence=confidence)[0]
        else:
            point = float(a.mean() - b.mean())
            differences[game] = ConfidenceInterval(point=point, lo=math.nan, hi=math.nan, reps=0,
                                                   confidence=confidence)
    oriented = np.array([differences[g].point for g in games]) * (-1.0 if lower_is_better else 1.0)
    better = int(np.sum(oriented > 0))
    paired = len(shared) >= 2
    seeds = shared if paired else x_seeds
    if not paired and (len(x_seeds) < 2 or len(y_seeds) < 2):
        return SeedComparison(games=games, seeds=tuple(seeds), paired=False, differences=differences,
                              mean_difference=None, t=None, dof=None, p=None, games_x_better=better,
                              untested=f"untested: needs >= 2 seeds that every game has on each side "
                                       f"(x has {len(x_seeds)}, y has {len(y_seeds)})")
    per_seed_x = np.array([np.mean([x[g][s] for g in games]) for s in (shared if paired else x_seeds)])
    per_seed_y = np.array([np.mean([y[g][s] for g in games]) for s in (shared if paired else y_seeds)])
    interval, t, dof, p = difference_test(per_seed_x, per_seed_y, paired=paired, confidence=confidence)
    return SeedComparison(games=games, seeds=tuple(seeds), paired=paired, differences=differences,
                          mean_difference=interval, t=t, dof=dof, p=p, games_x_better=better, untested=None)


# ---------------------------------------------------------------------------------------------
# Multiple testing.


def benjamini_hochberg(p_values: object) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same order as the input).

    Rejecting every hypothesis whose adjusted p-value is <= q controls the false discovery rate at q
    (for independent or positively dependent tests). adjusted_(k) = min_{j >= k} p_(j) * m / j over
    the sorted p-values, capped at 1.
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    if p.size == 0:
        return p.copy()
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ScaleworldError("p-values must be finite numbers in [0, 1]; drop untested hypotheses before adjusting")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted_sorted = np.maximum(adjusted_sorted, p[order])  # exact in theory; guards p * m / m rounding down
    adjusted = np.empty_like(p)
    adjusted[order] = adjusted_sorted
    return adjusted
