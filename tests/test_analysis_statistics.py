import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.statistics import (
    AGGREGATES,
    benjamini_hochberg,
    check_bootstrap,
    expanded_interval,
    game_means,
    iqm,
    mean,
    median,
    normalize_scores,
    optimality_gap,
    seed_unit_comparison,
    t_interval,
)
from scaleworld.errors import ScaleworldError

# Sorted: [0, .1, .2, .5, .7, .9, 1.3, 2.0]
EIGHT = np.array([0.1, 0.5, 0.2, 2.0, 0.9, 1.3, 0.0, 0.7])


def test_normalisation_maps_random_to_zero_and_expert_to_one():
    assert normalize_scores([-21.0, 0.0, 21.0], random_score=-21.0, expert_score=21.0) == pytest.approx([0, 0.5, 1])
    # A game where the random score is above zero and the policy beats the expert.
    assert normalize_scores(460.0, random_score=160.0, expert_score=310.0) == pytest.approx([2.0])
    with pytest.raises(ScaleworldError, match="expert_score equals random_score"):
        normalize_scores([1.0], random_score=3.0, expert_score=3.0)
    with pytest.raises(ScaleworldError, match="NaN"):
        normalize_scores([1.0, np.nan], random_score=0.0, expert_score=1.0)


def test_aggregates_match_hand_computed_values():
    assert float(mean(EIGHT)) == pytest.approx(5.7 / 8)
    assert float(median(EIGHT)) == pytest.approx((0.5 + 0.7) / 2)
    assert float(iqm(EIGHT)) == pytest.approx((0.2 + 0.5 + 0.7 + 0.9) / 4)  # drop two on each side
    # max(0, 1 - x) = [.9, .5, .8, 0, .1, 0, 1, .3]
    assert float(optimality_gap(EIGHT)) == pytest.approx(3.6 / 8)
    assert float(optimality_gap(EIGHT, threshold=0.5)) == pytest.approx((0.4 + 0.3 + 0.5) / 8)
    # Five games: trim_mean(0.25) drops floor(5/4) = 1 value on each side.
    assert float(iqm([5.0, 1.0, 3.0, 100.0, 2.0])) == pytest.approx((2 + 3 + 5) / 3)
    assert float(median([5.0, 1.0, 3.0, 100.0, 2.0])) == 3.0


def test_aggregates_reduce_only_the_games_axis():
    rows = np.stack([EIGHT, EIGHT + 1.0, EIGHT * 2.0])
    for name, aggregate in AGGREGATES.items():
        reduced = aggregate(rows)
        assert reduced.shape == (3,), name
        assert reduced[0] == pytest.approx(aggregate(EIGHT)), name
    assert iqm(rows)[2] == pytest.approx(2 * iqm(EIGHT))
    with pytest.raises(ScaleworldError, match="at least one game"):
        mean([])
    with pytest.raises(ScaleworldError, match="NaN"):
        iqm([1.0, np.nan])


def test_the_expanded_interval_widens_by_the_two_factors_a_percentile_misses():
    replicates = np.random.default_rng(0).standard_normal(200_000)
    plain = expanded_interval(0.0, replicates, confidence=0.95, seeds=8, dof=7, expand=False)
    assert plain.hi == pytest.approx(1.96, abs=0.03)
    assert np.isnan(expanded_interval(0.0, replicates, confidence=0.95, seeds=1, dof=0).lo)  # one seed: none
    # 8 seeds shared by all games: percentiles at Phi(-sqrt(8/7) t_{0.975, 7}) = 0.0059
    wide = expanded_interval(0.0, replicates, confidence=0.95, seeds=8, dof=7)
    assert wide.hi == pytest.approx(stats.norm.ppf(1 - stats.norm.cdf(-np.sqrt(8 / 7) * stats.t.ppf(0.975, 7))),
                                    abs=0.03)
    assert wide.hi == pytest.approx(2.52, abs=0.03) and wide.reps == 200_000


def test_the_t_interval_by_hand():
    ci = t_interval([1.0, 2.0, 3.0, 6.0])
    assert ci.point == 3.0
    assert ci.hi - ci.point == pytest.approx(stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 6], ddof=1) / 2)
    one = t_interval([4.0])
    assert one.point == 4.0 and np.isnan(one.lo) and np.isnan(one.hi)  # one value: no spread to estimate


def test_seed_unit_comparison_is_a_t_test_over_seed_means():
    """Per seed the mean over games, then a paired t test: scipy's ttest_rel on those means."""
    rng = np.random.default_rng(1)
    x = {g: {s: 2.0 + 0.1 * s + rng.normal(0, 0.05) for s in range(5)} for g in ("a", "b", "c")}
    y = {g: {s: 2.05 + 0.1 * s + rng.normal(0, 0.05) for s in range(5)} for g in ("a", "b", "c")}
    got = seed_unit_comparison(x, y, lower_is_better=True)
    xs = [np.mean([x[g][s] for g in x]) for s in range(5)]
    ys = [np.mean([y[g][s] for g in y]) for s in range(5)]
    reference = stats.ttest_rel(xs, ys)
    assert got.paired and got.seeds == (0, 1, 2, 3, 4) and got.untested is None
    assert got.p == pytest.approx(reference.pvalue) and got.t == pytest.approx(reference.statistic)
    assert got.mean_difference.point == pytest.approx(np.mean(xs) - np.mean(ys))
    low, high = stats.ttest_rel(xs, ys).confidence_interval(0.95)
    assert (got.mean_difference.lo, got.mean_difference.hi) == (pytest.approx(low), pytest.approx(high))
    # per game: the paired difference over that game's seeds
    d = np.array([x["a"][s] - y["a"][s] for s in range(5)])
    assert got.differences["a"].point == pytest.approx(d.mean())
    assert got.games_x_better == sum(np.mean(list(x[g].values())) < np.mean(list(y[g].values())) for g in x)


def test_seed_unit_comparison_without_shared_seeds_is_welch_and_says_when_untested():
    x = {"a": {0: 1.0, 1: 1.2, 2: 1.1}, "b": {0: 2.0, 1: 2.1, 2: 2.3}}
    y = {"a": {5: 1.5, 6: 1.4}, "b": {5: 2.4, 6: 2.6}}
    got = seed_unit_comparison(x, y)
    reference = stats.ttest_ind([1.5, 1.65, 1.7], [1.95, 2.0], equal_var=False)
    assert not got.paired and got.p == pytest.approx(reference.pvalue)
    assert got.differences["a"].point == pytest.approx(1.1 - 1.45)
    one = seed_unit_comparison({"a": {0: 1.0}}, {"a": {0: 2.0}})
    assert one.p is None and one.mean_difference is None
    assert one.untested.startswith("untested: needs >= 2 seeds that every game has")
    with pytest.raises(ScaleworldError, match="same games"):
        seed_unit_comparison({"a": {0: 1.0}}, {"b": {0: 1.0}})
    with pytest.raises(ScaleworldError, match="NaN"):
        seed_unit_comparison({"a": {0: 1.0, 1: np.nan}}, {"a": {0: 1.0, 1: 2.0}})


def test_benjamini_hochberg_matches_a_hand_worked_example():
    # Sorted: .005 .01 .03 .04 .20; p * m / rank = .025 .025 .05 .05 .20; running min from the top.
    p = [0.01, 0.04, 0.03, 0.005, 0.20]
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.20])
    # Step-up: .045 at rank 4 of 4 survives (.045 <= .05) and pulls the smaller ones with it.
    assert benjamini_hochberg([0.02, 0.03, 0.045, 0.04]) == pytest.approx([0.045, 0.045, 0.045, 0.045])
    assert benjamini_hochberg([0.9, 0.8]) == pytest.approx([0.9, 0.9])
    assert benjamini_hochberg([0.5]) == pytest.approx([0.5])
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(ScaleworldError, match="p-values"):
        benjamini_hochberg([0.1, np.nan])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda rng: game_means({}), "no games"),
        (lambda rng: game_means({"a": []}), "empty"),
        (lambda rng: game_means({"a": [1.0, np.inf]}), "NaN or infinite"),
        (lambda rng: game_means([1.0, 2.0]), "mapping"),
        (lambda rng: game_means({"a": [[1.0], [2.0]]}), "1-D"),
        (lambda rng: check_bootstrap(rng=rng, reps=0, confidence=0.95), "reps"),
        (lambda rng: check_bootstrap(rng=rng, reps=10, confidence=1.0), "confidence"),
        (lambda rng: check_bootstrap(rng=42, reps=10, confidence=0.95), "numpy.random.Generator"),
    ],
)
def test_bad_input_raises_a_named_error(call, message):
    with pytest.raises(ScaleworldError, match=message):
        call(np.random.default_rng(0))
