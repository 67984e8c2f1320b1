"""Scores over games with honest error bars: normalisation, aggregates, bootstrap CIs, comparisons.

Conventions used throughout:

- ``scores`` is a mapping ``game -> per-seed values`` (one value per run: a normalised score, or a
  held-out NLL). Games may have different numbers of seeds. Games are always processed in sorted
  name order, so results do not depend on the mapping's insertion order.
- A *stratified bootstrap* resamples seeds with replacement within each game (never across games),
  takes each game's mean, then applies the aggregate across games. The set of games is fixed: the
  interval describes the uncertainty that comes from finite seeds, which is what more seeds shrink.
- Intervals are percentile intervals of the bootstrap distribution. With n seeds per game their
  coverage is slightly below nominal (the bootstrap variance of a mean is (n-1)/n of the truth);
  with 8+ seeds the shortfall is about a point of coverage.
- ``lower_is_better=True`` flips the meaning of "improvement" (held-out NLL is lower-is-better).
- Randomness comes only from the ``rng`` argument (a ``numpy.random.Generator``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scaleworld.errors import ScaleworldError

Aggregate = Callable[[np.ndarray], np.ndarray]
"""Reduces the last axis (games) of an array: 1-D -> scalar, (reps, games) -> (reps,)."""

# Bootstrapped pairwise comparisons build (reps, n, m) arrays; chunk the reps to cap memory.
_MAX_PAIRWISE_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile bootstrap interval."""

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


def _matching_games(x: Mapping[str, object], y: Mapping[str, object]) -> tuple[dict, dict]:
    x_scores, y_scores = as_scores(x, what="x"), as_scores(y, what="y")
    if x_scores.keys() != y_scores.keys():
        only_x = sorted(x_scores.keys() - y_scores.keys())
        only_y = sorted(y_scores.keys() - x_scores.keys())
        raise ScaleworldError(f"x and y must cover the same games (only in x: {only_x}, only in y: {only_y}); "
                              "compare on the games both settings finished")
    return x_scores, y_scores


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


def _resampled_means(values: np.ndarray, *, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps,) means of seeds drawn with replacement from `values`."""
    picks = rng.integers(0, values.size, size=(reps, values.size))
    return values[picks].mean(axis=1)


def _resampled(values: np.ndarray, *, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) seeds drawn with replacement from `values`."""
    return values[rng.integers(0, values.size, size=(reps, values.size))]


def percentile_interval(point: float, replicates: np.ndarray, *, confidence: float) -> ConfidenceInterval:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return ConfidenceInterval(point=float(point), lo=float(lo), hi=float(hi), reps=int(replicates.size),
                              confidence=float(confidence))


def bootstrap_mean_ci(values: object, *, rng: np.random.Generator, reps: int = 2000,
                      confidence: float = 0.95) -> ConfidenceInterval:
    """Mean of one group of seeds with a percentile bootstrap interval."""
    return bootstrap_group_mean_cis([values], rng=rng, reps=reps, confidence=confidence)[0]


def bootstrap_group_mean_cis(groups: Sequence[object], *, rng: np.random.Generator, reps: int = 2000,
                             confidence: float = 0.95) -> tuple[ConfidenceInterval, ...]:
    """Each group's mean (e.g. each model size's seeds) with its own percentile bootstrap interval."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    arrays = [as_values(values, what=f"group {i}") for i, values in enumerate(groups)]
    if not arrays:
        raise ScaleworldError("no groups given; pass at least one array of per-seed values")
    resampled = np.stack([_resampled_means(a, reps=reps, rng=rng) for a in arrays])
    tail = (1.0 - confidence) / 2.0
    lows, highs = np.quantile(resampled, [tail, 1.0 - tail], axis=1)  # one call for all groups: speed
    return tuple(ConfidenceInterval(point=float(a.mean()), lo=float(lo), hi=float(hi), reps=int(reps),
                                    confidence=float(confidence)) for a, lo, hi in zip(arrays, lows, highs))


def stratified_bootstrap_ci(scores: Mapping[str, object], aggregate: Aggregate = mean, *,
                            rng: np.random.Generator, reps: int = 2000,
                            confidence: float = 0.95) -> ConfidenceInterval:
    """An aggregate of per-game seed means with a stratified bootstrap interval.

    `aggregate` reduces the last axis: it is called once on the (games,) point means and once on a
    (reps, games) matrix of resampled means (`median`, `iqm`, `mean`, `optimality_gap`, or your own,
    e.g. ``functools.partial(optimality_gap, threshold=0.5)``).
    """
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    per_game = as_scores(scores)
    point = np.asarray(aggregate(np.array([v.mean() for v in per_game.values()])))
    if point.size != 1:
        raise ScaleworldError("aggregate must reduce the last axis to one number; see statistics.Aggregate")
    resampled = np.column_stack([_resampled_means(v, reps=reps, rng=rng) for v in per_game.values()])
    replicates = np.asarray(aggregate(resampled))
    if replicates.shape != (reps,):
        raise ScaleworldError(f"aggregate returned shape {replicates.shape} for ({reps}, games) input; "
                              "it must reduce only the last axis (use axis=-1)")
    return percentile_interval(float(point), replicates, confidence=confidence)


# ---------------------------------------------------------------------------------------------
# Comparing two settings.


def win_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of pairs (x_i, y_j) with x_i > y_j, ties counting one half; reduces the last axis
    of both (x: (..., n), y: (..., m) -> (...))."""
    diff = x[..., :, None] - y[..., None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


def _oriented(values: np.ndarray, lower_is_better: bool) -> np.ndarray:
    # Negating lower-is-better values turns "x improves on y" into "x > y" everywhere below.
    return -values if lower_is_better else values


def probability_of_improvement(x: Mapping[str, object], y: Mapping[str, object], *,
                               lower_is_better: bool = False) -> float:
    """P(X improves on Y): per game, the fraction of seed pairs where x beats y (ties count 1/2),
    averaged over games with equal weight. 0.5 means no difference; 1 means x always wins."""
    x_scores, y_scores = _matching_games(x, y)
    per_game = [win_rate(_oriented(x_scores[g], lower_is_better), _oriented(y_scores[g], lower_is_better))
                for g in x_scores]
    return float(np.mean(per_game))


def probability_of_improvement_ci(x: Mapping[str, object], y: Mapping[str, object], *,
                                  rng: np.random.Generator, reps: int = 2000, confidence: float = 0.95,
                                  lower_is_better: bool = False) -> ConfidenceInterval:
    """`probability_of_improvement` with a stratified bootstrap interval (x and y seeds are
    resampled independently within each game)."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    x_scores, y_scores = _matching_games(x, y)
    point = probability_of_improvement(x_scores, y_scores, lower_is_better=lower_is_better)
    replicates = np.zeros(reps)
    for game in x_scores:
        x_game = _oriented(x_scores[game], lower_is_better)
        y_game = _oriented(y_scores[game], lower_is_better)
        x_boot, y_boot = _resampled(x_game, reps=reps, rng=rng), _resampled(y_game, reps=reps, rng=rng)
        chunk = max(1, _MAX_PAIRWISE_ELEMENTS // (x_game.size * y_game.size))
        for start in range(0, reps, chunk):
            stop = start + chunk
            replicates[start:stop] += win_rate(x_boot[start:stop], y_boot[start:stop])
    return percentile_interval(point, replicates / len(x_scores), confidence=confidence)


@dataclass(frozen=True)
class PairedComparison:
    """x vs y game by game (e.g. matched-compute control vs joint). Differences are x - y in the
    values' own units, whatever the direction of improvement."""

    games: tuple[str, ...]
    differences: Mapping[str, ConfidenceInterval]
    """Per game: mean(x seeds) - mean(y seeds), with a bootstrap interval over seeds."""
    mean_difference: ConfidenceInterval
    """Mean over games of the per-game differences, with a stratified bootstrap interval."""
    wilcoxon_statistic: float
    wilcoxon_p: float
    """Two-sided Wilcoxon signed-rank test across games on the seed means (1.0 when every difference is 0)."""
    games_x_better: int
    """Games where x's seed mean improves on y's (respecting lower_is_better)."""
    lower_is_better: bool


def paired_comparison(x: Mapping[str, object], y: Mapping[str, object], *, rng: np.random.Generator,
                      reps: int = 2000, confidence: float = 0.95, lower_is_better: bool = False) -> PairedComparison:
    """Per-game differences of seed means with bootstrap intervals, and a Wilcoxon signed-rank test."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    x_scores, y_scores = _matching_games(x, y)
    games = tuple(x_scores)
    differences: dict[str, ConfidenceInterval] = {}
    resampled = np.empty((reps, len(games)))
    for column, game in enumerate(games):
        boot = _resampled_means(x_scores[game], reps=reps, rng=rng) - _resampled_means(y_scores[game], reps=reps,
                                                                                        rng=rng)
        resampled[:, column] = boot
        point = x_scores[game].mean() - y_scores[game].mean()
        differences[game] = percentile_interval(point, boot, confidence=confidence)
    points = np.array([differences[g].point for g in games])
    if np.all(points == 0):
        statistic, p_value = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            # Few games make scipy fall back from the exact distribution and warn; the p-value stands.
            warnings.simplefilter("ignore", UserWarning)
            from scipy import stats

            result = stats.wilcoxon(points)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    improvements = _oriented(points, lower_is_better)
    return PairedComparison(
        games=games, differences=differences,
        mean_difference=percentile_interval(points.mean(), resampled.mean(axis=1), confidence=confidence),
        wilcoxon_statistic=statistic, wilcoxon_p=p_value, games_x_better=int(np.sum(improvements > 0)),
        lower_is_better=lower_is_better,
    )


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
