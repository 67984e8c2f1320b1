"""The scaling-regime rule: how scaleworld decides what shape a game's scaling curve has.

This docstring *is* the published rule ``regime-rule/1``. A classification is only meaningful
together with the rule's version and thresholds, so every result carries its `RegimeRule`.

Input, per game: K model sizes with parameter counts N_1 < ... < N_K, and per size the per-seed
fidelity values (LOWER is better, e.g. held-out next-latent NLL). Notation: m_k is the mean over
seeds at size k, "level" is the mean of the m_k, and d = delta * |level| is the smallest difference
that counts (delta is relative: 0.02 = 2% of the level). Size b is the best size: argmin_k m_k.

Tests (all computed per game; alpha is the rule's significance level):

- ``size_effect``: Kruskal-Wallis H test over the K groups of seeds (is there any size effect?).
  Effect size: epsilon^2 = H / (n - 1), n = number of runs.
- ``trend``: Spearman rho between log N and the value over all runs, with a two-sided permutation
  p-value (values shuffled across runs; p = (1 + #{|rho_perm| >= |rho|}) / (1 + permutation_reps)).
- Pairwise contrasts use Welch's t statistic for the difference of two sizes' seed means (unequal
  variances, Welch-Satterthwaite degrees of freedom), against the margin d:
  "i worse than j by more than d" rejects H0: mu_i - mu_j <= d (one-sided);
  "i within d of j" rejects H0: mu_i - mu_j >= d (one-sided).
- ``flat``: every ordered pair (i, j) is shown within d (intersection-union test: p = the largest of
  the K(K-1) one-sided p-values, no multiplicity correction needed).
- ``largest_gain``: the largest size beats some smaller size by more than d (Bonferroni: p = (K-1) *
  the smallest of the K-1 p-values): scaling bought a difference that counts.
- ``no_worsening``: no larger size is worse than a smaller one by d or more: every pair i < j is shown
  to have mu_j - mu_i < d (intersection-union: p = the largest of the K(K-1)/2 p-values). This is
  "monotone at resolution d"; it implies the largest size is within d of the best.
- ``largest_worse``: the largest size is worse than some interior size (2..K-1) by more than d
  (Bonferroni: p = (K-2) * the smallest of the K-2 p-values, capped at 1).
- ``bump``: for each candidate peak j with at least two sizes on each side (3 <= j <= K-2, so K >= 5),
  p_j = max(p_left, p_right), where p_left = (j-1) * min_{i<j} p(j worse than i by more than d) and
  p_right = (K-j) * min_{k>j} p(j worse than k by more than d) (Bonferroni within a side, an
  intersection-union across the two sides); p_bump = (number of candidates) * min_j p_j, capped at 1.

Decision, first match wins ("p <= alpha" means significant; across games `classify_games` first
replaces each family of p-values by its Benjamini-Hochberg adjustment over the games that have
enough data):

1. ``inconclusive`` if K < min_sizes or any size has fewer than min_seeds seeds.
2. ``flat`` if p_flat <= alpha: the whole range of the curve is within d (no effect worth the name).
3. ``double_descent`` if p_size_effect <= alpha and p_bump <= alpha: worse-then-better, an interior
   bump above both sides by more than d, with at least two sizes on each side.
4. ``classical`` if p_size_effect <= alpha, b is interior (not the smallest or the largest size),
   and p_largest_worse <= alpha: the U shape, the largest size worse by more than d.
5. ``monotonic`` if rho < 0, p_trend <= alpha, p_largest_gain <= alpha and p_no_worsening <= alpha:
   a significant improving trend worth more than d, and bigger is never worse by d or more, so the
   best size is at or near (within d of) the largest. Requiring the equivalence, not just "no
   significant bump", keeps a double descent whose bump is too noisy to prove from being called
   monotonic; requiring the gain keeps a curve that improves by less than d from being called
   monotonic when it is too noisy to be shown flat.
6. ``inconclusive`` otherwise: the evidence does not decide (too noisy, or a shape outside the classes
   such as "bigger is worse"). The result's `reason` says which test fell short.

Why it is built this way: every class is claimed only by a test whose null hypothesis is the
*absence* of that shape, so a wrong class needs a false rejection (probability about alpha or less),
while too little data simply fails to reject and yields ``inconclusive``. ``flat`` is an equivalence
test rather than "no significant effect" because non-significance is not evidence of flatness.
The Welch t-tests assume roughly normal seed-to-seed noise; unlike bootstrap intervals, they stay
honest with 3 seeds. t intervals on the per-size means are reported as evidence only.

``regime-rule/2`` (versions 1 and 2 stay selectable) answers a referee of version 1:

- The margin is absolute: d = margin_nats (nats per frame), whatever the level. Version 1's d =
  delta x |level| includes the game's irreducible entropy, so a stochastic game got a wide margin
  and a near-zero NLL (collapsed tokens) a near-zero one, with confident labels from noise.
- Paired contrasts: when every size has the same seeds (`paired=True`: with a fixed seed all sizes
  see the same batch order), a contrast of sizes i and j is a one-sample t-test on the per-seed
  differences (n - 1 degrees of freedom) in place of Welch's; the seed effect they share cancels.
- ``classical`` needs both arms of its U: besides version 1's conditions, the smallest size is
  worse than some interior size by more than d (``smallest_worse``: Bonferroni over the K - 2
  interior sizes, as ``largest_worse``), so a curve whose best is interior by noise alone is not a U.
- ``degrading``: bigger is worse. p_size_effect <= alpha and the largest is worse than the smallest
  by more than d (``largest_worse_than_smallest``: one-sided, as the contrasts above), and the
  curve is not a U. The paper's "classical regime, where larger world models degrade fidelity";
  with ``classical`` it forms the classical family.
- The mechanism check. A curve is only called ``classical`` or ``degrading`` when the larger models
  fit their training data better: the training-split NLL of the largest size is below that of the
  held-out-best size (``train_better``: one-sided contrast, margin 0). When it is shown worse
  (``train_worse``) the curve is ``optimisation_limited``: bigger models are not fitted, an
  optimisation failure (e.g. one learning rate for every depth), not overfitting. Neither shown, or
  no training-split NLL given: ``inconclusive``, saying so.
- Decision order: inconclusive (data), flat, double_descent, the classical family (classical, then
  degrading, each through the mechanism check), monotonic, inconclusive. BH across games now also
  adjusts the three new families.

``regime-rule/3`` (the default) keeps version 2 and pairs the two global tests as well when the
contrasts are paired (every size the same seeds; decided per game):

- ``size_effect``: Friedman's test with the seeds as blocks (ranks within a seed), its p from
  permutations of the sizes within each seed (exact under H0). Kruskal-Wallis ranks all runs
  together, so a seed effect shared by a seed's sizes swamps it: with 95% of the noise shared (sd
  0.1, effect 0.1, 8 seeds) it passed 30% of U curves and 12% of degrading ones (13% and 3% then
  classified as such); Friedman passes 100% of both (93% and 99% classified), and 4.3% of flat
  curves at alpha = 0.05 (tools/stats_calibration.py, 1,000 curves each).
- ``trend``: the mean over seeds of Spearman's rho between size and value within the seed, with
  the same within-seed permutations (Page's trend test as an average rank correlation).
- Unpaired curves (a size short of a seed) keep version 2's Kruskal-Wallis and pooled Spearman.
- BH across games still adjusts every family, ``no_worsening`` included (decided from measurement,
  26-curve studies, sd 0.05: without it, monotonic recovery rises from 71% to 80% on curves that
  fall by 0.2 nats, but a study whose 26 curves all worsen by exactly d calls at least one of them
  monotonic in 56% of studies; with it, in none of 100).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaleworld.analysis.contrasts import contrasts, p_above, p_below
from scaleworld.analysis.statistics import (
    ConfidenceInterval,
    as_values,
    benjamini_hochberg,
    check_bootstrap,
    t_interval,
)
from scaleworld.errors import ScaleworldError

RULE_VERSIONS = ("regime-rule/1", "regime-rule/2", "regime-rule/3")
RULE_VERSION = RULE_VERSIONS[-1]
"""The default: the latest version."""
REGIMES = ("monotonic", "classical", "degrading", "optimisation_limited", "double_descent", "flat", "inconclusive")
"""Every class either version can name (version 1 never names degrading or optimisation_limited)."""
CLASSICAL_FAMILY = ("classical", "degrading")


@dataclass(frozen=True, kw_only=True)
class RegimeRule:
    """The thresholds of the regime rule. Print it with every classification."""

    version: str = RULE_VERSION
    """Which published decision procedure (RULE_VERSIONS; see the module docstring)."""
    alpha: float = 0.05
    """Significance level of every test (after Benjamini-Hochberg across games)."""
    delta: float = 0.02
    """Version 1: smallest difference that counts, relative to the curve's mean level (0.02 = 2%)."""
    margin_nats: float = 0.05
    """Version 2: smallest difference that counts, in nats per frame (0.05: 2% of the 2.5-nat
    level of the synthetic curves the rule is tested on; provisional until the pilot study measures
    seed spreads and effects on real games)."""
    min_sizes: int = 4
    """Fewer sizes than this: inconclusive."""
    min_seeds: int = 3
    """Any size with fewer seeds than this: inconclusive."""
    bootstrap_reps: int = 2000
    """Bootstrap replicates of the analysis' intervals (aggregates, P(improvement), fits)."""
    permutation_reps: int = 2000
    """Permutations for the trend test (and version 3's Friedman test). The smallest reachable
    p-value is 1 / (reps + 1), so with Benjamini-Hochberg over G games use at least G / alpha (the
    default suffices for 26 games)."""

    def __post_init__(self) -> None:
        if self.version not in RULE_VERSIONS:
            raise ScaleworldError(f"regime rule version {self.version!r} is unknown; this scaleworld implements "
                                  f"{' and '.join(RULE_VERSIONS)}: set one as analysis.rule_version in the spec")
        if not (np.isfinite(self.margin_nats) and self.margin_nats >= 0):
            raise ScaleworldError(f"regime rule margin_nats={self.margin_nats} must be a difference >= 0 in nats "
                                  "per frame, e.g. 0.05")
        if not 0.0 < self.alpha < 0.5:
            raise ScaleworldError(f"regime rule alpha={self.alpha} must lie in (0, 0.5), e.g. 0.05")
        if not (np.isfinite(self.delta) and self.delta >= 0):
            raise ScaleworldError(f"regime rule delta={self.delta} must be a relative difference >= 0, e.g. 0.02")
        for name in ("min_sizes", "min_seeds", "bootstrap_reps", "permutation_reps"):
            if not isinstance(getattr(self, name), int):
                raise ScaleworldError(f"regime rule {name}={getattr(self, name)!r} must be an integer")
        if self.min_sizes < 3:
            raise ScaleworldError(f"regime rule min_sizes={self.min_sizes} must be at least 3 "
                                  "(a U shape needs an interior best size)")
        if self.min_seeds < 2:
            raise ScaleworldError(f"regime rule min_seeds={self.min_seeds} must be at least 2 "
                                  "(seed noise must be estimable)")
        if self.bootstrap_reps < 1:
            raise ScaleworldError(f"regime rule bootstrap_reps={self.bootstrap_reps} must be positive, e.g. 2000")
        if (self.permutation_reps + 1) * self.alpha <= 1:
            raise ScaleworldError(f"regime rule permutation_reps={self.permutation_reps} can never reach "
                                  f"p <= alpha={self.alpha}; use at least {int(np.ceil(1 / self.alpha))}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def v2(self) -> bool:
        """Version 2 or later (absolute margin, paired contrasts, degrading, the mechanism check)."""
        return self.version != "regime-rule/1"

    @property
    def v3(self) -> bool:
        """Version 3: the size-effect and trend tests within seeds when contrasts are paired."""
        return self.version == "regime-rule/3"

    def margin_text(self) -> str:
        """The smallest difference that counts, as the decision's reasons print it."""
        return f"{self.margin_nats:g} nats" if self.v2 else f"delta={self.delta:.1%}"

    def describe(self) -> str:
        margin = (f"margin {self.margin_nats:g} nats/frame, paired by seed, mechanism check on the training split"
                  if self.v2 else f"delta={self.delta:.1%} of the level")
        return (f"{self.version}: alpha={self.alpha:g}, {margin}, >= {self.min_sizes} sizes x {self.min_seeds} "
                f"seeds, {self.bootstrap_reps} bootstrap / {self.permutation_reps} permutation reps")


DEFAULT_RULE = RegimeRule()


@dataclass(frozen=True)
class RegimePValues:
    """The p-values the decision uses (see the module docstring for each test)."""

    size_effect: float
    trend: float
    flat: float
    bump: float
    largest_worse: float
    largest_gain: float
    no_worsening: float
    largest_worse_than_smallest: float = math.nan
    """Version 2: the largest size worse than the smallest by more than d."""
    smallest_worse: float = math.nan
    """Version 2: the smallest size worse than some interior size by more than d (the U's left arm)."""
    train_better: float = math.nan
    """Version 2: the largest size's training-split NLL below the held-out-best size's."""
    train_worse: float = math.nan
    """Version 2: the largest size's training-split NLL above the held-out-best size's."""


_FAMILIES = tuple(field.name for field in dataclasses.fields(RegimePValues))
_UNTESTED = RegimePValues(*([math.nan] * len(_FAMILIES)))


@dataclass(frozen=True)
class RegimeEvidence:
    """Everything the decision looked at; effect sizes are relative to `level`."""

    params: tuple[float, ...]
    """Parameter counts, ascending (inputs are sorted by size)."""
    seeds: tuple[int, ...]
    size_means: tuple[ConfidenceInterval, ...]
    """Per size: mean over seeds with a t interval at confidence 1 - alpha (a bootstrap's percentile
    interval of a mean of 4 seeds covers 87% of the time at a nominal 95%: tools/stats_calibration.py)."""
    level: float
    delta_abs: float
    """d = delta * |level|: the margin every contrast is tested against."""
    size_effect_test: str
    """``kruskal`` (Kruskal-Wallis over all runs) or ``friedman`` (version 3, paired: within seeds)."""
    size_effect_statistic: float
    """Kruskal-Wallis H, or Friedman's chi-square."""
    size_effect: float
    """Its effect size: epsilon^2 = H / (n - 1) for Kruskal-Wallis, Kendall's W = chi2 / (n (K - 1))
    for Friedman (n seeds)."""
    spearman_rho: float
    """Spearman's rho of value against size over all runs; version 3 paired: its mean within seeds."""
    relative_range: float
    """(max - min of the size means) / |level|."""
    relative_gain: float
    """(smallest size - best size) / |level|: what scaling bought."""
    relative_largest_gap: float
    """(largest size - best size) / |level|: how much worse the largest is than the best."""
    bump_index: int | None
    """0-based index of the most significant double-descent peak candidate (None when K < 5)."""
    relative_bump: float | None
    """Height of that peak above the higher of its two side minima / |level| (None when K < 5)."""
    p_raw: RegimePValues
    p_used: RegimePValues
    """The p-values the decision used: p_raw for one game, BH-adjusted across games in classify_games."""
    paired: bool = False
    """Version 2: the contrasts were paired by seed."""
    train_means: tuple[float, ...] | None = None
    """Version 2: per size, the mean training-split NLL (None: not given)."""


@dataclass(frozen=True)
class RegimeResult:
    regime: str
    """One of REGIMES."""
    best_index: int
    """0-based index (in ascending size order) of the size with the lowest mean."""
    best_params: float
    reason: str
    """One line: why this class (or what fell short)."""
    evidence: RegimeEvidence
    rule: RegimeRule


# ---------------------------------------------------------------------------------------------
# Tests.


def _kruskal(values: list[np.ndarray]) -> tuple[float, float]:
    """Kruskal-Wallis H (tie-corrected) and its chi-squared p-value; the same numbers as
    scipy.stats.kruskal, without its per-call overhead (the classifier runs it thousands of times
    in simulations)."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy
    runs = np.concatenate(values)
    n = runs.size
    ranks = stats.rankdata(runs)
    _, tie_counts = np.unique(runs, return_counts=True)
    tie_correction = 1.0 - np.sum(tie_counts**3 - tie_counts) / (n**3 - n)
    if tie_correction == 0:
        return 0.0, 1.0  # every run identical: no size effect
    bounds = np.cumsum([0] + [v.size for v in values])
    rank_sums = np.array([ranks[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
    h = (12.0 / (n * (n + 1)) * np.sum(rank_sums**2 / np.diff(bounds)) - 3.0 * (n + 1)) / tie_correction
    return float(h), float(stats.chi2.sf(h, len(values) - 1))


def _spearman_permutation(x: np.ndarray, y: np.ndarray, *, reps: int,
                          rng: np.random.Generator) -> tuple[float, float]:
    """Spearman rho (Pearson on mid-ranks, so ties are handled) and a two-sided permutation p."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy
    x_centred = stats.rankdata(x) - (x.size + 1) / 2
    y_centred = stats.rankdata(y) - (y.size + 1) / 2
    norm = np.sqrt(np.sum(x_centred**2) * np.sum(y_centred**2))
    if norm == 0:
        return 0.0, 1.0
    rho = float(x_centred @ y_centred / norm)
    shuffled = rng.permuted(np.tile(y_centred, (reps, 1)), axis=1)
    null = shuffled @ x_centred / norm
    # The tolerance keeps permutations that tie the observed |rho| (up to rounding) in the count.
    extreme = np.count_nonzero(np.abs(null) >= abs(rho) - 1e-12)
    return rho, float((1 + extreme) / (1 + reps))


def _friedman_within_seeds(runs: np.ndarray, *, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """Friedman's chi-square over runs [n seeds, K sizes] (seeds are blocks; ranks within a seed,
    ties averaged and corrected: scipy.stats.friedmanchisquare's statistic) and its permutation p:
    the sizes shuffled within each seed, which is exact under H0 (a seed's runs exchangeable across
    sizes), whatever a seed's effect. The test statistic is the sum of squared rank sums, which the
    chi-square is an increasing function of under these permutations."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy
    n, k = runs.shape
    ranks = stats.rankdata(runs, axis=1)  # [n, K]
    ties = sum(float(np.sum(c**3 - c)) for c in (np.unique(row, return_counts=True)[1] for row in runs))
    correction = 1.0 - ties / (n * (k**3 - k))
    if correction <= 0:
        return 0.0, 1.0  # every seed's runs identical across sizes: no size effect
    sums = ranks.sum(axis=0)  # [K]
    chi2 = (12.0 / (n * k * (k + 1)) * float(np.sum(sums**2)) - 3.0 * n * (k + 1)) / correction
    shuffled = rng.permuted(np.tile(ranks, (reps, 1, 1)), axis=2)  # [reps, n, K]
    null = np.sum(shuffled.sum(axis=1) ** 2, axis=-1)
    extreme = np.count_nonzero(null >= np.sum(sums**2) - 1e-9)
    return float(chi2), float((1 + extreme) / (1 + reps))


def _trend_within_seeds(runs: np.ndarray, *, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """The mean over seeds of Spearman's rho between size (ascending) and value within the seed, for
    runs [n seeds, K sizes], and its two-sided permutation p (sizes shuffled within each seed, as
    `_friedman_within_seeds`): Page's trend test in the form of an average rank correlation."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy
    n, k = runs.shape
    x = np.arange(k) - (k - 1) / 2  # centred ranks of the sizes
    y = stats.rankdata(runs, axis=1) - (k + 1) / 2  # [n, K] centred ranks within each seed
    norms = np.sqrt(np.sum(x**2) * np.sum(y**2, axis=1))  # [n]; 0 for a seed with equal runs
    weights = np.divide(1.0, norms, out=np.zeros(n), where=norms > 0) / n
    rho = float(np.sum((y @ x) * weights))
    shuffled = rng.permuted(np.tile(y, (reps, 1, 1)), axis=2)  # [reps, n, K]
    null = (shuffled @ x) @ weights  # [reps]
    extreme = np.count_nonzero(np.abs(null) >= abs(rho) - 1e-12)
    return rho, float((1 + extreme) / (1 + reps))


def _bump(diff: np.ndarray, p_worse: np.ndarray) -> tuple[float, int | None, float | None]:
    """(p_bump, most significant peak index, its height above the higher side minimum)."""
    k = diff.shape[0]
    candidates = range(2, k - 2)  # 0-based: at least two sizes on each side
    if not candidates:
        return math.nan, None, None
    p_peaks = []
    for j in candidates:
        p_left = min(1.0, j * float(p_worse[j, :j].min()))
        p_right = min(1.0, (k - 1 - j) * float(p_worse[j, j + 1:].min()))
        p_peaks.append(max(p_left, p_right))
    best = int(np.argmin(p_peaks))
    peak = candidates[best]
    height = min(float(diff[peak, :peak].max()), float(diff[peak, peak + 1:].max()))
    return min(1.0, len(p_peaks) * p_peaks[best]), peak, height


# ---------------------------------------------------------------------------------------------
# Evidence and decision.


def _check_curve(params: Sequence[float], values: Sequence[object]) -> tuple[np.ndarray, list[np.ndarray]]:
    sizes = np.asarray(params, dtype=float).reshape(-1)
    if sizes.size != len(values):
        raise ScaleworldError(f"got {sizes.size} parameter counts but {len(values)} value arrays; "
                              "pass one array of per-seed values per size")
    if sizes.size < 2:
        raise ScaleworldError(f"a scaling curve needs at least 2 sizes, got {sizes.size}")
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ScaleworldError("parameter counts must be finite and positive; check the size ladder")
    if np.unique(sizes).size != sizes.size:
        raise ScaleworldError("parameter counts must be distinct; merge runs of the same size into one array")
    order = np.argsort(sizes)
    arrays = [as_values(values[i], what=f"values for size {sizes[i]:.4g}") for i in order]
    return sizes[order], arrays


def _measure(params: Sequence[float], values: Sequence[object], *, rule: RegimeRule, rng: np.random.Generator,
             train: Sequence[object] | None = None, paired: bool = False) -> RegimeEvidence:
    sizes, arrays = _check_curve(params, values)
    train_arrays = _check_curve(params, train)[1] if train is not None and rule.v2 else None
    paired = rule.v2 and paired and len({v.size for v in arrays}) == 1 and arrays[0].size >= 2
    check_bootstrap(rng=rng, reps=rule.bootstrap_reps, confidence=1 - rule.alpha)
    size_means = tuple(t_interval(a, confidence=1 - rule.alpha) for a in arrays)
    means = np.array([ci.point for ci in size_means])
    level = float(means.mean())
    scale = abs(level) if level != 0 else 1.0
    best = int(np.argmin(means))
    evidence = dict(
        params=tuple(float(n) for n in sizes), seeds=tuple(v.size for v in arrays), size_means=size_means,
        level=level, delta_abs=rule.margin_nats if rule.v2 else rule.delta * abs(level),
        relative_range=float(np.ptp(means)) / scale, paired=paired,
        train_means=None if train_arrays is None else tuple(float(t.mean()) for t in train_arrays),
        relative_gain=float(means[0] - means[best]) / scale,
        relative_largest_gap=float(means[-1] - means[best]) / scale,
    )
    if sizes.size < rule.min_sizes or min(v.size for v in arrays) < rule.min_seeds:
        return RegimeEvidence(**evidence, size_effect_test="none", size_effect_statistic=math.nan, size_effect=math.nan,
                              spearman_rho=math.nan, bump_index=None, relative_bump=None,
                              p_raw=_UNTESTED, p_used=_UNTESTED)

    k, d = sizes.size, evidence["delta_abs"]
    runs = np.concatenate(arrays)
    if rule.v3 and paired:  # seeds are blocks: their effects, shared by their sizes, drop out
        by_seed = np.stack(arrays, axis=1)  # [n, K]
        h, p_size_effect = _friedman_within_seeds(by_seed, reps=rule.permutation_reps, rng=rng)
        rho, p_trend = _trend_within_seeds(by_seed, reps=rule.permutation_reps, rng=rng)
        effect_size = h / (by_seed.shape[0] * (k - 1))  # Kendall's W
    else:
        h, p_size_effect = _kruskal(arrays)
        rho, p_trend = _spearman_permutation(np.repeat(np.log(sizes), [v.size for v in arrays]), runs,
                                             reps=rule.permutation_reps, rng=rng)
        effect_size = h / (runs.size - 1)  # epsilon^2
    diff, se, dof = contrasts(arrays, paired_by_seed=paired)
    p_worse, p_within = p_above(diff, se, dof, d), p_below(diff, se, dof, d)
    off_diagonal = ~np.eye(k, dtype=bool)
    p_bump, bump_index, bump_height = _bump(diff, p_worse)
    p_raw = RegimePValues(
        size_effect=p_size_effect,
        trend=p_trend,
        flat=float(p_within[off_diagonal].max()),
        bump=p_bump,
        largest_worse=min(1.0, (k - 2) * float(p_worse[-1, 1:-1].min())),
        largest_gain=min(1.0, (k - 1) * float(p_worse[:-1, -1].min())),
        # Row j, column i < j: the larger size j against the smaller size i.
        no_worsening=float(p_within[np.tril_indices(k, -1)].max()),
        **(_v2_p_values(p_worse, arrays, train_arrays, best, paired) if rule.v2 else {}),
    )
    relative_bump = None if bump_height is None else bump_height / scale
    return RegimeEvidence(**evidence, size_effect_test="friedman" if rule.v3 and paired else "kruskal",
                          size_effect_statistic=h, size_effect=effect_size, spearman_rho=rho,
                          bump_index=bump_index, relative_bump=relative_bump, p_raw=p_raw, p_used=p_raw)


def _v2_p_values(p_worse: np.ndarray, arrays: list[np.ndarray], train: list[np.ndarray] | None, best: int,
                 paired: bool) -> dict[str, float]:
    """Version 2's families: the largest worse than the smallest, and the mechanism check (the
    largest size's training NLL against the held-out-best size's; untested when they coincide)."""
    k = len(arrays)
    out = {"largest_worse_than_smallest": float(p_worse[-1, 0]),
           "smallest_worse": min(1.0, (k - 2) * float(p_worse[0, 1:-1].min()))}
    if train is not None and best != len(arrays) - 1:
        pair = paired and len({t.size for t in train}) == 1 and train[0].size >= 2
        diff, se, dof = contrasts(train, paired_by_seed=pair)
        out["train_better"] = float(p_below(diff, se, dof, 0.0)[-1, best])
        out["train_worse"] = float(p_above(diff, se, dof, 0.0)[-1, best])
    return out


def _mechanism(regime: str, why: str, p: RegimePValues, alpha: float) -> tuple[str, str]:
    """Version 2: a classical-family curve only where larger models fit their training data better."""
    if p.train_better <= alpha:
        return regime, f"{why}; the largest size fits its training split better (p={p.train_better:.2g}): overfitting"
    if p.train_worse <= alpha:
        return "optimisation_limited", (f"{why}, but the largest size fits its training split worse too "
                                        f"(p={p.train_worse:.2g}): bigger models are not fitted, not overfitted")
    if np.isnan(p.train_better):
        return "inconclusive", f"{why}, but no training-split NLL was given to tell overfitting from optimisation"
    return "inconclusive", (f"{why}, but the training-split NLL tells neither overfitting nor an optimisation limit "
                            f"(better p={p.train_better:.2g}, worse p={p.train_worse:.2g})")


def _decide(evidence: RegimeEvidence, rule: RegimeRule) -> RegimeResult:
    means = np.array([ci.point for ci in evidence.size_means])
    best, k, alpha, p = int(np.argmin(means)), means.size, rule.alpha, evidence.p_used
    delta = rule.margin_text()

    def result(regime: str, reason: str) -> RegimeResult:
        return RegimeResult(regime=regime, best_index=best, best_params=evidence.params[best], reason=reason,
                            evidence=evidence, rule=rule)

    if k < rule.min_sizes:
        return result("inconclusive", f"only {k} sizes; the rule needs at least {rule.min_sizes}")
    if min(evidence.seeds) < rule.min_seeds:
        return result("inconclusive", f"a size has only {min(evidence.seeds)} seeds; "
                                      f"the rule needs at least {rule.min_seeds} per size")
    if p.flat <= alpha:
        return result("flat", f"every size within {delta} of every other "
                              f"(range {evidence.relative_range:.1%}, equivalence p={p.flat:.2g})")
    effect = p.size_effect <= alpha
    if effect and p.bump <= alpha:
        return result("double_descent", f"size {evidence.bump_index + 1} of {k} is a bump {evidence.relative_bump:.1%} "
                                        f"above both sides, more than {delta} (p={p.bump:.2g})")
    left_arm = not rule.v2 or p.smallest_worse <= alpha  # version 2: a U needs its left arm shown too
    if effect and 0 < best < k - 1 and p.largest_worse <= alpha and left_arm:
        why = (f"best is size {best + 1} of {k}; the largest is {evidence.relative_largest_gap:.1%} worse, more "
               f"than {delta} (p={p.largest_worse:.2g})")
        return result(*_mechanism("classical", why, p, alpha)) if rule.v2 else result("classical", why)
    if rule.v2 and effect and p.largest_worse_than_smallest <= alpha:
        why = (f"bigger is worse: the largest size is worse than the smallest by more than {delta} "
               f"(p={p.largest_worse_than_smallest:.2g})")
        return result(*_mechanism("degrading", why, p, alpha))
    improving = evidence.spearman_rho < 0 and p.trend <= alpha
    if improving and p.largest_gain <= alpha and p.no_worsening <= alpha:
        return result("monotonic", f"improving trend (rho={evidence.spearman_rho:.2f}, p={p.trend:.2g}), "
                                   f"gain {evidence.relative_gain:.1%} > {delta} (p={p.largest_gain:.2g}), "
                                   f"no bigger size worse by {delta} or more (p={p.no_worsening:.2g})")
    if improving and p.largest_gain > alpha:
        why = (f"improving trend (p={p.trend:.2g}), but the gain is not shown to exceed {delta} "
               f"(p={p.largest_gain:.2g}) nor the curve to be flat (p={p.flat:.2g})")
    elif improving:
        why = (f"improving trend (p={p.trend:.2g}), but not shown that no bigger size is worse by {delta} "
               f"or more (p={p.no_worsening:.2g}): an unproven bump or too much noise")
    elif best == 0 and effect:
        why = "the smallest size is best (bigger is worse): not one of the rule's classes"
    else:
        why = (f"no decisive evidence (size effect p={p.size_effect:.2g}, trend p={p.trend:.2g}, "
               f"flat p={p.flat:.2g})")
    return result("inconclusive", why)


def classify_regime(params: Sequence[float], values: Sequence[object], *, rule: RegimeRule = DEFAULT_RULE,
                    rng: np.random.Generator, train: Sequence[object] | None = None,
                    paired: bool = False) -> RegimeResult:
    """Classify one scaling curve (values: per size, per-seed fidelity; lower is better). Version 2:
    `train`, the same per size and seed on the training split (the mechanism check); `paired`, the
    arrays are aligned by seed (every size the same seeds, in the same order)."""
    return _decide(_measure(params, values, rule=rule, rng=rng, train=train, paired=paired), rule)


def classify_games(curves: Mapping[str, tuple[Sequence[float], Sequence[object]]], *,
                   rule: RegimeRule = DEFAULT_RULE, rng: np.random.Generator,
                   train: Mapping[str, Sequence[object]] | None = None,
                   paired: bool | Mapping[str, bool] = False,
                   adjust: Sequence[str] | None = None) -> dict[str, RegimeResult]:
    """Classify each game's curve (game -> (params, values)), with Benjamini-Hochberg across games;
    `train` as `classify_regime` (game -> per-size training-split values); `paired`, for every game
    or per game (game -> whether its sizes have the same seeds, in the same order); `adjust`, the
    families of `RegimePValues` to adjust (default: every one; a narrower choice is for measuring
    what the adjustment costs: tools/stats_calibration.py, "no_worsening").

    Games are measured in sorted name order (so the rng draws do not depend on the mapping's order).
    Each adjusted family of decision p-values is adjusted over the games with enough sizes and seeds.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ScaleworldError("curves must be a non-empty mapping game -> (params, per-size seed values)")
    families = _FAMILIES if adjust is None else tuple(adjust)
    unknown = sorted(set(families) - set(_FAMILIES))
    if unknown:
        raise ScaleworldError(f"unknown p-value families {unknown}: use some of {', '.join(_FAMILIES)}")
    measured = {}
    for game in sorted(curves):
        try:
            params, values = curves[game]
        except (TypeError, ValueError):
            raise ScaleworldError(f"curves[{game!r}] must be a pair (params, per-size seed values)") from None
        game_paired = paired.get(game, False) if isinstance(paired, Mapping) else paired
        measured[game] = _measure(params, values, rule=rule, rng=rng, paired=bool(game_paired),
                                  train=None if train is None else train.get(game))
    tested = [g for g in measured if np.isfinite(measured[g].p_raw.size_effect)]
    adjusted: dict[str, dict[str, float]] = {g: {} for g in tested}
    for family in families:
        # A family's untestable entries (e.g. "bump" with fewer than 5 sizes) stay NaN and do not count.
        games = [g for g in tested if np.isfinite(getattr(measured[g].p_raw, family))]
        for game, p_adjusted in zip(games, benjamini_hochberg([getattr(measured[g].p_raw, family) for g in games])):
            adjusted[game][family] = float(p_adjusted)
    results = {}
    for game, evidence in measured.items():
        if game in adjusted:
            evidence = dataclasses.replace(evidence, p_used=dataclasses.replace(evidence.p_raw, **adjusted[game]))
        results[game] = _decide(evidence, rule)
    return results
