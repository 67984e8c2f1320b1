"""The regime rule, version 2, on synthetic truth: the absolute margin, seed-paired contrasts,
the degrading class and the mechanism check on the training split (optimisation_limited).

Curves on the `paper` ladder as in test_analysis_regimes.py (held-out NLL 2.4-3.2 nats); each
truth also has a training-split curve. A seed's noise is shared by its sizes in part (`shared`:
with a fixed seed every size sees the same batch order), which pairing cancels.
"""

import numpy as np
import pytest

from scaleworld.analysis.regimes import REGIMES, RegimeRule, classify_games, classify_regime

from .test_analysis_regimes import PAPER, RATIO, TRUTHS

RULE = RegimeRule(bootstrap_reps=100, permutation_reps=400)  # version 2, the default
# Power against the absolute margin d = 0.05 nats at levels up to 3.2 nats: se = noise x level /
# sqrt(seeds) <= d / 8 is powered; MODERATE puts se between d / 6 and d / 2.
POWERED = [(4, 0.003), (8, 0.004), (16, 0.008)]  # 4 and 8 seeds: the shipped studies' counts
MODERATE = [(3, 0.005), (8, 0.01), (8, 0.02)]
FALLING = 2.0 + 1.0 * RATIO**-0.4  # a training-split curve that keeps improving with size

# (held-out truth, training-split truth) per class
TRUTHS_V2 = {
    **{regime: [(truth, truth - 0.3) for truth in truths] for regime, truths in TRUTHS.items()
       if regime != "classical"},
    "classical": [(truth, FALLING) for truth in TRUTHS["classical"]],
    "degrading": [
        (2.5 + 0.06 * np.log(RATIO), FALLING),  # bigger is worse: the largest 0.24 nats above the smallest
        (2.8 + 0.03 * np.log(RATIO) + 0.01 * np.log(RATIO) ** 2, FALLING - 0.2),  # worse faster at the top
    ],
    "optimisation_limited": [
        (TRUTHS["classical"][0], TRUTHS["classical"][0] - 0.4),  # a U on held-out and training data alike
        (2.5 + 0.06 * np.log(RATIO), 2.2 + 0.06 * np.log(RATIO)),  # bigger is worse on both
    ],
}


def _sample(truth, seeds, noise, rng, shared=0.0):
    """Per size, `seeds` values: multiplicative noise, a share `shared` of it common to a seed's sizes."""
    common = rng.standard_normal(seeds)
    return [mean * (1 + noise * (shared * common + np.sqrt(1 - shared**2) * rng.standard_normal(seeds)))
            for mean in truth]


def _tally(settings, trials, seed, *, paired=False, shared=0.0):
    rng = np.random.default_rng(seed)
    counts = {regime: dict.fromkeys(REGIMES, 0) for regime in TRUTHS_V2}
    for regime, truths in TRUTHS_V2.items():
        for held_out, train in truths:
            for seeds, noise in settings:
                for _ in range(trials):
                    state = rng.bit_generator.state
                    values = _sample(held_out, seeds, noise, rng, shared)
                    rng.bit_generator.state = state  # the same seed effects on the training split
                    train_values = _sample(train, seeds, noise, rng, shared)
                    call = classify_regime(PAPER, values, train=train_values, paired=paired, rule=RULE, rng=rng)
                    counts[regime][call.regime] += 1
    return counts


def test_the_new_truths_have_the_shapes_they_claim():
    d = RULE.margin_nats
    for held_out, train in TRUTHS_V2["degrading"]:
        assert int(np.argmin(held_out)) == 0 and held_out[-1] - held_out[0] > 3 * d
        assert train[-1] < train[0] - 3 * d  # larger models fit their training data better
    for held_out, train in TRUTHS_V2["optimisation_limited"]:
        best = int(np.argmin(held_out))
        assert held_out[-1] - held_out[best] > 3 * d and train[-1] - train[best] > 3 * d


@pytest.mark.parametrize("paired", [False, True], ids=["welch", "paired"])
def test_every_class_is_recovered_at_least_95_percent_when_powered(paired):
    counts = _tally(POWERED, trials=25, seed=1, paired=paired)
    for regime, tally in counts.items():
        total = sum(tally.values())
        wrong = (total - tally[regime] - tally["inconclusive"]) / total
        assert tally[regime] / total >= 0.95, f"{regime}: {tally}"
        assert wrong <= 0.05, f"{regime}: {tally}"


def test_short_seeds_are_inconclusive_rather_than_wrong():
    counts = _tally(MODERATE, trials=15, seed=2)
    for regime, tally in counts.items():
        total = sum(tally.values())
        assert (total - tally[regime] - tally["inconclusive"]) / total <= 0.05, f"{regime}: {tally}"


def test_pairing_by_seed_buys_power_when_seeds_share_their_noise():
    """95% of a seed's noise shared by its sizes (its batch order): unpaired contrasts drown in it,
    paired ones cancel it."""
    settings = [(5, 0.04)]  # se about d unpaired: short of power; paired, a third of that
    paired = _tally(settings, trials=20, seed=3, paired=True, shared=0.95)
    welch = _tally(settings, trials=20, seed=3, paired=False, shared=0.95)
    for regime in ("classical", "double_descent", "monotonic"):  # measured: 28 vs 3, 35 vs 5, 39 vs 13 of 40
        right_paired = paired[regime][regime] / sum(paired[regime].values())
        right_welch = welch[regime][regime] / sum(welch[regime].values())
        assert right_paired >= right_welch + 0.3, (regime, paired[regime], welch[regime])
    for counts in (paired, welch):
        for regime, tally in counts.items():
            total = sum(tally.values())
            assert (total - tally[regime] - tally["inconclusive"]) / total <= 0.05, f"{regime}: {tally}"


def test_without_a_training_split_the_classical_family_is_not_claimed():
    rng = np.random.default_rng(4)
    values = _sample(TRUTHS_V2["degrading"][0][0], 8, 0.005, rng)
    v2 = classify_regime(PAPER, values, rule=RULE, rng=np.random.default_rng(0))
    assert v2.regime == "inconclusive" and "no training-split NLL" in v2.reason
    with_train = classify_regime(PAPER, values, train=_sample(FALLING, 8, 0.005, rng), rule=RULE,
                                 rng=np.random.default_rng(0))
    assert with_train.regime == "degrading" and "0.05 nats" in with_train.reason
    v1 = classify_regime(PAPER, values, rule=RegimeRule(version="regime-rule/1", bootstrap_reps=100,
                                                        permutation_reps=400), rng=np.random.default_rng(0))
    assert v1.regime == "inconclusive" and "bigger is worse" in v1.reason  # version 1 stays selectable


def test_the_margin_is_absolute_whatever_the_level():
    """The same curve shape shifted up by 20 nats (a stochastic game's entropy): version 2's margin
    and call stay; version 1's margin grows with the level and loses the call."""
    rng = np.random.default_rng(5)
    values = _sample(TRUTHS["monotonic"][0], 8, 0.004, rng)
    shifted = [v + 20.0 for v in values]
    v1 = RegimeRule(version="regime-rule/1", bootstrap_reps=100, permutation_reps=400)
    calls = {name: [classify_regime(PAPER, vs, rule=r, rng=np.random.default_rng(0)) for vs in (values, shifted)]
             for name, r in (("v2", RULE), ("v1", v1))}
    assert [c.regime for c in calls["v2"]] == ["monotonic", "monotonic"]
    assert calls["v2"][0].evidence.delta_abs == calls["v2"][1].evidence.delta_abs == 0.05
    assert calls["v1"][1].evidence.delta_abs > 8 * calls["v1"][0].evidence.delta_abs


def test_classify_games_adjusts_the_new_families_across_games():
    rng = np.random.default_rng(6)
    curves, train = {}, {}
    for regime, truths in TRUTHS_V2.items():
        for i, (held_out, training) in enumerate(truths):
            curves[f"{regime}-{i}"] = (PAPER, _sample(held_out, 6, 0.005, rng))
            train[f"{regime}-{i}"] = _sample(training, 6, 0.005, rng)
    results = classify_games(curves, rule=RULE, rng=np.random.default_rng(0), train=train)
    from scaleworld.analysis.statistics import benjamini_hochberg

    for family in ("largest_worse_than_smallest", "train_better"):
        games = [g for g in sorted(curves) if np.isfinite(getattr(results[g].evidence.p_raw, family))]
        raw = [getattr(results[g].evidence.p_raw, family) for g in games]
        assert [getattr(results[g].evidence.p_used, family) for g in games] == pytest.approx(
            benjamini_hochberg(raw)), family
    assert {results[g].regime for g in results} >= {"degrading", "optimisation_limited", "classical"}


def test_version_3_pairs_its_size_effect_and_trend_within_seeds():
    """Friedman's chi-square is scipy's; its permutation p agrees with the chi-square approximation
    at 40 seeds; the trend is the mean within-seed Spearman rho; unpaired curves keep Kruskal-Wallis."""
    from scipy import stats

    from scaleworld.analysis.regimes import _friedman_within_seeds, _trend_within_seeds

    rng = np.random.default_rng(7)
    runs = rng.normal(0, 1, (40, 5)) + np.array([0.0, 0.2, 0.1, 0.4, 0.3]) + rng.normal(0, 3, (40, 1))
    chi2, p = _friedman_within_seeds(runs, reps=4000, rng=rng)
    reference = stats.friedmanchisquare(*runs.T)
    assert chi2 == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue, abs=0.02)
    ties = np.array([[1.0, 1.0, 2.0], [3.0, 1.0, 1.0], [2.0, 2.0, 2.5]])
    tied = stats.friedmanchisquare(*ties.T).statistic
    assert _friedman_within_seeds(ties, reps=10, rng=rng)[0] == pytest.approx(tied)
    assert _friedman_within_seeds(np.ones((3, 4)), reps=10, rng=rng) == (0.0, 1.0)
    rho, p_trend = _trend_within_seeds(runs, reps=2000, rng=rng)
    assert rho == pytest.approx(np.mean([stats.spearmanr(np.arange(5), row).statistic for row in runs]))
    assert 0 < p_trend <= 1

    truth = TRUTHS_V2["classical"][0][0]
    paired_values = _sample(truth, 5, 0.01, rng, shared=0.9)
    v3 = classify_regime(PAPER, paired_values, paired=True, rule=RULE, rng=np.random.default_rng(0))
    assert v3.evidence.size_effect_test == "friedman" and v3.evidence.paired
    unpaired = classify_regime(PAPER, paired_values, paired=False, rule=RULE, rng=np.random.default_rng(0))
    assert unpaired.evidence.size_effect_test == "kruskal"
    v2 = classify_regime(PAPER, paired_values, paired=True, rule=RegimeRule(version="regime-rule/2", bootstrap_reps=100,
                                                                             permutation_reps=400),
                         rng=np.random.default_rng(0))
    assert v2.evidence.size_effect_test == "kruskal"  # version 2 stays as published


def test_pairing_is_decided_per_game():
    rng = np.random.default_rng(8)
    curves = {g: (PAPER, _sample(TRUTHS_V2["classical"][0][0], 5, 0.01, rng, shared=0.9)) for g in ("a", "b")}
    results = classify_games(curves, rule=RULE, rng=np.random.default_rng(0), paired={"a": True, "b": False})
    assert results["a"].evidence.size_effect_test == "friedman" and results["a"].evidence.paired
    assert results["b"].evidence.size_effect_test == "kruskal" and not results["b"].evidence.paired
    with pytest.raises(Exception, match="unknown p-value families"):
        classify_games(curves, rule=RULE, rng=np.random.default_rng(0), adjust=["nope"])
