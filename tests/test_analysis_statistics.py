import functools

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.statistics import (
    AGGREGATES,
    benjamini_hochberg,
    bootstrap_mean_ci,
    game_means,
    iqm,
    mean,
    median,
    normalize_scores,
    optimality_gap,
    paired_comparison,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
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


def test_stratified_bootstrap_is_reproducible_and_independent_of_game_order():
    scores = {"Pong": [0.9, 1.1, 1.0], "Breakout": [0.2, 0.4, 0.1, 0.3, 0.5], "Qbert": [0.7]}
    reordered = {game: scores[game] for game in ["Qbert", "Pong", "Breakout"]}
    a = stratified_bootstrap_ci(scores, iqm, rng=np.random.default_rng(7), reps=500)
    b = stratified_bootstrap_ci(reordered, iqm, rng=np.random.default_rng(7), reps=500)
    c = stratified_bootstrap_ci(scores, iqm, rng=np.random.default_rng(8), reps=500)
    assert a == b
    assert (a.lo, a.hi) != (c.lo, c.hi)
    assert a.point == pytest.approx(float(iqm(list(game_means(scores).values()))))
    assert a.lo <= a.point <= a.hi and a.reps == 500 and a.confidence == 0.95


def test_stratified_bootstrap_only_resamples_within_games():
    # One seed per game: resampling within games cannot change anything, so the interval collapses.
    single = stratified_bootstrap_ci({"a": [0.3], "b": [0.9], "c": [0.5]}, median, rng=np.random.default_rng(0),
                                     reps=200)
    assert single.lo == single.hi == single.point == 0.5
    # Seeds of a game never leak into another: each game's resampled mean stays inside its own range.
    separated = {"low": [0.0, 0.1, 0.2], "high": [10.0, 10.1, 10.2]}
    interval = stratified_bootstrap_ci(separated, functools.partial(np.min, axis=-1), rng=np.random.default_rng(0),
                                       reps=300)
    assert 0.0 <= interval.lo <= interval.hi <= 0.2 + 1e-12


def test_bootstrap_intervals_cover_the_truth_at_about_their_nominal_rate():
    # 200 synthetic studies: 10 games with fixed true means, 10 seeds each with game-specific noise.
    rng = np.random.default_rng(2024)
    true_means = np.linspace(0.1, 1.9, 10)
    noise = np.linspace(0.05, 0.3, 10)
    covered = {"mean": 0, "iqm": 0}
    for _ in range(200):
        scores = {f"game{g}": true_means[g] + noise[g] * rng.standard_normal(10) for g in range(10)}
        covered["mean"] += stratified_bootstrap_ci(scores, mean, rng=rng, reps=400).contains(true_means.mean())
        covered["iqm"] += stratified_bootstrap_ci(scores, iqm, rng=rng, reps=400).contains(float(iqm(true_means)))
    for name, hits in covered.items():
        assert 0.90 <= hits / 200 <= 0.99, f"95% {name} interval covered the truth in {hits / 200:.1%} of studies"

    single_group_hits = sum(
        bootstrap_mean_ci(3.0 + 0.06 * rng.standard_normal(16), rng=rng, reps=400).contains(3.0) for _ in range(200))
    assert 0.88 <= single_group_hits / 200 <= 0.99


def test_probability_of_improvement_hand_values_and_limits():
    assert probability_of_improvement({"g": [1.0, 2.0, 3.0]}, {"g": [2.0, 2.0]}) == pytest.approx(0.5)
    # (3>1) + (3=3)/2 + (4>1) + (4>3) = 3.5 of 4 pairs.
    assert probability_of_improvement({"g": [3.0, 4.0]}, {"g": [1.0, 3.0]}) == pytest.approx(0.875)
    # Averaged over games with equal weight, whatever their seed counts.
    two_games = probability_of_improvement({"a": [1.0], "b": [0.0, 0.0, 0.0]}, {"a": [0.0], "b": [1.0]})
    assert two_games == pytest.approx(0.5)

    rng = np.random.default_rng(3)
    same = {f"g{i}": rng.normal(size=8) for i in range(5)}
    assert probability_of_improvement(same, same) == pytest.approx(0.5)
    identical = probability_of_improvement_ci(same, same, rng=rng, reps=300)
    assert identical.point == pytest.approx(0.5) and identical.lo < 0.5 < identical.hi

    low = {f"g{i}": 2.0 + 0.01 * rng.normal(size=6) for i in range(5)}
    high = {f"g{i}": 3.0 + 0.01 * rng.normal(size=6) for i in range(5)}
    assert probability_of_improvement(high, low) == 1.0
    assert probability_of_improvement(low, high) == 0.0
    # Held-out NLL: lower is better, so the low-loss setting is the improvement.
    nll = probability_of_improvement_ci(low, high, rng=rng, reps=300, lower_is_better=True)
    assert nll.point == nll.lo == nll.hi == 1.0


def test_probability_of_improvement_interval_covers_a_known_value():
    # Per game X ~ N(0.5, 1), Y ~ N(0, 1): P(X > Y) = Phi(0.5 / sqrt(2)).
    truth = stats.norm.cdf(0.5 / np.sqrt(2))
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(100):
        x = {f"g{i}": 0.5 + rng.standard_normal(12) for i in range(6)}
        y = {f"g{i}": rng.standard_normal(12) for i in range(6)}
        hits += probability_of_improvement_ci(x, y, rng=rng, reps=300).contains(truth)
    assert 0.88 <= hits / 100 <= 1.0


def test_paired_comparison_differences_and_wilcoxon():
    x = {"a": [2.0, 2.2], "b": [1.0, 1.0, 1.0], "c": [3.0], "d": [0.5, 0.7], "e": [1.4, 1.6]}
    y = {"a": [1.0, 1.2], "b": [1.5], "c": [2.0, 2.0], "d": [0.2, 0.2], "e": [1.2, 1.2]}
    result = paired_comparison(x, y, rng=np.random.default_rng(0), reps=400)
    expected = {"a": 1.0, "b": -0.5, "c": 1.0, "d": 0.4, "e": 0.3}
    assert result.games == tuple(sorted(expected))
    for game, difference in expected.items():
        assert result.differences[game].point == pytest.approx(difference)
        assert result.differences[game].lo <= difference <= result.differences[game].hi
    assert result.differences["c"].lo == result.differences["c"].hi == 1.0  # no seed spread in either
    assert result.mean_difference.point == pytest.approx(np.mean(list(expected.values())))
    reference = stats.wilcoxon([expected[g] for g in result.games])
    assert result.wilcoxon_statistic == pytest.approx(reference.statistic)
    assert result.wilcoxon_p == pytest.approx(reference.pvalue)
    assert result.games_x_better == 4
    assert paired_comparison(x, y, rng=np.random.default_rng(0), reps=400, lower_is_better=True).games_x_better == 1
    assert paired_comparison(x, x, rng=np.random.default_rng(0), reps=50).wilcoxon_p == 1.0


def test_paired_comparison_detects_a_consistent_shift():
    rng = np.random.default_rng(5)
    joint = {f"g{i}": 3.0 + 0.2 * i + 0.03 * rng.standard_normal(4) for i in range(12)}
    matched = {g: v + 0.1 + 0.03 * rng.standard_normal(4) for g, v in joint.items()}
    result = paired_comparison(matched, joint, rng=rng, reps=500, lower_is_better=True)
    assert result.wilcoxon_p < 0.01 and result.games_x_better == 0
    assert result.mean_difference.lo > 0.05 and result.mean_difference.contains(0.1)


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
        (lambda rng: stratified_bootstrap_ci({}, mean, rng=rng), "no games"),
        (lambda rng: stratified_bootstrap_ci({"a": []}, mean, rng=rng), "empty"),
        (lambda rng: stratified_bootstrap_ci({"a": [1.0, np.inf]}, mean, rng=rng), "NaN or infinite"),
        (lambda rng: stratified_bootstrap_ci([1.0, 2.0], mean, rng=rng), "mapping"),
        (lambda rng: stratified_bootstrap_ci({"a": [[1.0], [2.0]]}, mean, rng=rng), "1-D"),
        (lambda rng: stratified_bootstrap_ci({"a": [1.0]}, mean, rng=rng, reps=0), "reps"),
        (lambda rng: stratified_bootstrap_ci({"a": [1.0]}, mean, rng=rng, confidence=1.0), "confidence"),
        (lambda rng: stratified_bootstrap_ci({"a": [1.0]}, mean, rng=42), "numpy.random.Generator"),
        (lambda rng: stratified_bootstrap_ci({"a": [1.0]}, np.mean, rng=rng), "last axis"),
        (lambda rng: probability_of_improvement({"a": [1.0]}, {"b": [1.0]}), "same games"),
        (lambda rng: paired_comparison({"a": [1.0]}, {"a": [1.0], "b": [2.0]}, rng=rng), "only in y"),
    ],
)
def test_bad_input_raises_a_named_error(call, message):
    with pytest.raises(ScaleworldError, match=message):
        call(np.random.default_rng(0))
