"""The regime rule, version 1, on synthetic scaling curves with known shapes and seed noise
(version 2: tests/test_analysis_regimes_v2.py).

Curves live on the `paper` ladder (6.3M-302M parameters) with held-out NLL around 2.4-3.2 nats and
multiplicative seed noise. "Power" is measured by the standard error of a size mean relative to the
rule's delta: with se = noise / sqrt(seeds), a setting is powered when se <= delta / 8 (e.g. 5 or 8
seeds at 0.5% noise, 16 seeds at 1%). Everywhere, powered or not, a wrong class must stay rare.
"""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.regimes import (
    REGIMES,
    RULE_VERSION,
    RegimeRule,
    classify_games,
    classify_regime,
)
from scaleworld.analysis.statistics import benjamini_hochberg
from scaleworld.errors import ScaleworldError

PAPER = np.array([6.3e6, 12.6e6, 25e6, 38e6, 76e6, 151e6, 302e6])
RATIO = PAPER / PAPER[0]
# Modest reps keep the suite fast; the smallest permutation p-value is 1/401, far below alpha.
RULE = RegimeRule(version="regime-rule/1", bootstrap_reps=100, permutation_reps=400)


def _bump(center: float, height: float) -> np.ndarray:
    return height * np.exp(-np.log(PAPER / center) ** 2 / (2 * 0.35**2))


# Two true curves per class (mean NLL per size).
TRUTHS = {
    "monotonic": [
        2.2 + 1.0 * RATIO**-0.35,  # steady power law
        2.6 + 0.6 * RATIO**-0.5,  # saturating: the top two sizes are within delta of each other
    ],
    "classical": [
        2.6 + 0.05 * np.log(PAPER / 38e6) ** 2,  # U with its best at 38M; the largest is 8% worse
        2.4 + 0.08 * np.log(PAPER / 76e6) ** 2,  # best at 76M; the largest is 6% worse
    ],
    "double_descent": [
        2.3 + 0.8 * RATIO**-0.3 + _bump(38e6, 0.4),  # bump at 38M, 7% above the valley before it
        2.2 + 1.0 * RATIO**-0.35 + _bump(25e6, 0.4),  # bump at 25M, two sizes on its left
    ],
    "flat": [
        np.full(PAPER.size, 3.0),
        3.0 - 0.004 * np.log(RATIO),  # a real but tiny trend: 0.5% over the ladder, well inside delta
    ],
}
POWERED = [(5, 0.005), (8, 0.005), (16, 0.01)]
MODERATE = [(3, 0.005), (8, 0.01), (8, 0.02)]  # se between delta/7 and delta/3
HOPELESS = [(5, 0.05)]  # se = 1.1 delta


def _sample(truth: np.ndarray, seeds: int, noise: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [mean * (1 + noise * rng.standard_normal(seeds)) for mean in truth]


def _tally(settings, trials: int, seed: int) -> dict[str, dict[str, int]]:
    rng = np.random.default_rng(seed)
    counts = {regime: dict.fromkeys(REGIMES, 0) for regime in TRUTHS}
    for regime, truths in TRUTHS.items():
        for truth in truths:
            for seeds, noise in settings:
                for _ in range(trials):
                    call = classify_regime(PAPER, _sample(truth, seeds, noise, rng), rule=RULE, rng=rng)
                    counts[regime][call.regime] += 1
    return counts


def test_the_synthetic_truths_have_the_shapes_they_claim():
    d = RULE.delta
    for truth in TRUTHS["monotonic"]:
        assert np.all(np.diff(truth) < 0) and (truth[0] - truth[-1]) / truth.mean() > 5 * d
    for truth in TRUTHS["classical"]:
        best = int(np.argmin(truth))
        assert 0 < best < PAPER.size - 1 and (truth[-1] - truth[best]) / truth.mean() > 2 * d
    for truth in TRUTHS["double_descent"]:
        peak = 2 + int(np.argmax(truth[2:-2]))  # candidates with two sizes on each side
        assert min(truth[peak] - truth[:peak].min(), truth[peak] - truth[peak + 1:].min()) / truth.mean() > 2.5 * d
    for truth in TRUTHS["flat"]:
        assert np.ptp(truth) / truth.mean() < d / 3


def test_classifier_is_right_at_least_95_percent_when_seeds_give_it_power():
    counts = _tally(POWERED, trials=40, seed=1)
    for regime, tally in counts.items():
        total = sum(tally.values())
        accuracy = tally[regime] / total
        wrong = (total - tally[regime] - tally["inconclusive"]) / total
        assert accuracy >= 0.95, f"{regime}: right in {accuracy:.1%} of {total} powered trials: {tally}"
        assert wrong <= 0.02, f"{regime}: {tally}"


def test_classifier_is_rarely_confidently_wrong_when_seeds_are_short():
    # Low power must show up as "inconclusive", not as a guess.
    moderate, hopeless = _tally(MODERATE, trials=25, seed=2), _tally(HOPELESS, trials=25, seed=3)
    for counts in (moderate, hopeless):
        for regime, tally in counts.items():
            total = sum(tally.values())
            wrong = (total - tally[regime] - tally["inconclusive"]) / total
            assert wrong <= 0.05, f"{regime}: a wrong class in {wrong:.1%} of {total} trials: {tally}"
    # And the rule is not merely timid: with moderate noise the clear shapes are still called.
    for regime in ("monotonic", "classical", "double_descent"):
        assert moderate[regime][regime] / sum(moderate[regime].values()) >= 0.85, moderate[regime]


def test_very_high_noise_is_mostly_inconclusive_and_never_confidently_wrong():
    rng = np.random.default_rng(3)
    calls = [classify_regime(PAPER, _sample(truth, 5, 0.10, rng), rule=RULE, rng=rng).regime
             for regime, truths in TRUTHS.items() for truth in truths for _ in range(25)]
    labels = [regime for regime, truths in TRUTHS.items() for _ in truths for _ in range(25)]
    inconclusive = np.mean([call == "inconclusive" for call in calls])
    wrong = np.mean([call not in (label, "inconclusive") for call, label in zip(calls, labels)])
    assert inconclusive >= 0.9 and wrong <= 0.05, (inconclusive, wrong)


def test_too_few_seeds_or_sizes_is_inconclusive_however_clear_the_curve():
    rng = np.random.default_rng(4)
    for truths in TRUTHS.values():
        two_seeds = classify_regime(PAPER, _sample(truths[0], 2, 0.001, rng), rule=RULE, rng=rng)
        assert two_seeds.regime == "inconclusive" and "seeds" in two_seeds.reason
        three_sizes = classify_regime(PAPER[:3], _sample(truths[0][:3], 8, 0.001, rng), rule=RULE, rng=rng)
        assert three_sizes.regime == "inconclusive" and "sizes" in three_sizes.reason
        assert np.isnan(three_sizes.evidence.p_raw.trend)  # untested, not "not significant"


def test_noiseless_curves_are_classified_exactly():
    rng = np.random.default_rng(5)
    for regime, truths in TRUTHS.items():
        for truth in truths:
            values = [np.full(4, mean) for mean in truth]
            assert classify_regime(PAPER, values, rule=RULE, rng=rng).regime == regime


def test_evidence_reports_the_tests_the_rule_and_the_best_size():
    rng = np.random.default_rng(6)
    truth = TRUTHS["classical"][0]
    values = _sample(truth, 6, 0.005, rng)
    result = classify_regime(PAPER, values, rule=RULE, rng=np.random.default_rng(0))
    evidence = result.evidence
    assert result.regime == "classical" and result.rule is RULE
    means = np.array([v.mean() for v in values])
    assert result.best_index == int(np.argmin(means)) and result.best_params == PAPER[result.best_index]
    assert "largest" in result.reason and "2.0%" in result.reason
    assert evidence.params == tuple(PAPER) and evidence.seeds == (6,) * 7
    for ci, mean in zip(evidence.size_means, means):
        assert ci.point == pytest.approx(mean) and ci.lo <= mean <= ci.hi and ci.confidence == 1 - RULE.alpha
    assert evidence.delta_abs == pytest.approx(RULE.delta * means.mean())
    assert evidence.relative_largest_gap == pytest.approx((means[-1] - means.min()) / means.mean())
    kruskal = stats.kruskal(*values)
    assert evidence.size_effect_statistic == pytest.approx(kruskal.statistic)
    assert evidence.p_raw.size_effect == pytest.approx(kruskal.pvalue) and evidence.size_effect_test == "kruskal"
    x = np.repeat(np.log(PAPER), 6)
    assert evidence.spearman_rho == pytest.approx(stats.spearmanr(x, np.concatenate(values)).statistic)
    v2_only = ("largest_worse_than_smallest", "smallest_worse", "train_better", "train_worse")
    for name, p in dataclasses.asdict(evidence.p_raw).items():
        assert 0.0 <= p <= 1.0 if name not in v2_only else np.isnan(p), name  # version 1 leaves them untested
    assert evidence.p_used == evidence.p_raw  # one game: nothing to adjust


def test_classification_is_deterministic_for_a_seed_and_ignores_input_order():
    rng = np.random.default_rng(7)
    values = _sample(TRUTHS["monotonic"][1], 5, 0.01, rng)
    first = classify_regime(PAPER, values, rule=RULE, rng=np.random.default_rng(42))
    again = classify_regime(PAPER, values, rule=RULE, rng=np.random.default_rng(42))
    order = np.array([6, 2, 0, 4, 1, 5, 3])
    shuffled = classify_regime(PAPER[order], [values[i] for i in order], rule=RULE, rng=np.random.default_rng(42))
    assert first == again == shuffled


def test_classify_games_adjusts_decision_p_values_with_benjamini_hochberg():
    rng = np.random.default_rng(8)
    curves = {}
    for regime, truths in TRUTHS.items():
        for variant, truth in enumerate(truths):
            curves[f"{regime}-{variant}"] = (PAPER, _sample(truth, 4, 0.01, rng))
    curves["short"] = (PAPER, _sample(TRUTHS["monotonic"][0], 2, 0.01, rng))  # too few seeds: left out of BH
    curves["small-ladder"] = (PAPER[:4], _sample(TRUTHS["monotonic"][0][:4], 4, 0.01, rng))  # no bump test
    results = classify_games(curves, rule=RULE, rng=np.random.default_rng(0))
    reordered = classify_games(dict(reversed(list(curves.items()))), rule=RULE, rng=np.random.default_rng(0))
    assert results == reordered and list(results) == sorted(curves)
    assert results["short"].regime == "inconclusive"

    tested = [game for game in sorted(curves) if game != "short"]
    for family in ("size_effect", "trend", "flat", "largest_worse", "largest_gain", "no_worsening"):
        raw = [getattr(results[g].evidence.p_raw, family) for g in tested]
        used = [getattr(results[g].evidence.p_used, family) for g in tested]
        assert used == pytest.approx(benjamini_hochberg(raw)), family
    bump_games = [g for g in tested if g != "small-ladder"]
    assert np.isnan(results["small-ladder"].evidence.p_used.bump)
    assert [results[g].evidence.p_used.bump for g in bump_games] == pytest.approx(
        benjamini_hochberg([results[g].evidence.p_raw.bump for g in bump_games]))
    for game in tested:
        raw, used = results[game].evidence.p_raw, results[game].evidence.p_used
        assert all(u >= r or np.isnan(r) for r, u in zip(dataclasses.astuple(raw), dataclasses.astuple(used)))
        assert results[game].regime in REGIMES and results[game].rule is RULE
    # On these curves the adjustment only ever withdraws a call (to inconclusive), never swaps classes,
    # and several classes are still decided with 4 seeds per size.
    single_calls = {g: classify_regime(*curves[g], rule=RULE, rng=np.random.default_rng(0)).regime for g in tested}
    for game in tested:
        assert results[game].regime in (single_calls[game], "inconclusive"), game
    assert len({results[g].regime for g in tested} - {"inconclusive"}) >= 3


def test_rule_is_versioned_validated_and_printable():
    rule = RegimeRule(version="regime-rule/1", alpha=0.01, delta=0.03, min_sizes=5, min_seeds=4, bootstrap_reps=500,
                      permutation_reps=999)
    assert RegimeRule().version == RULE_VERSION == "regime-rule/3"  # the default: the latest
    assert rule.to_dict() == {"version": "regime-rule/1", "alpha": 0.01, "delta": 0.03, "margin_nats": 0.05,
                              "min_sizes": 5, "min_seeds": 4, "bootstrap_reps": 500, "permutation_reps": 999}
    assert RegimeRule(**rule.to_dict()) == rule
    assert "alpha=0.01" in rule.describe() and "delta=3.0%" in rule.describe()
    with pytest.raises(TypeError):
        RegimeRule(0.05)  # keyword-only
    for bad, message in [
        (dict(version="regime-rule/0"), "unknown"),
        (dict(alpha=0.0), "alpha"),
        (dict(delta=-0.01), "delta"),
        (dict(margin_nats=-0.1), "margin_nats"),
        (dict(min_sizes=2), "min_sizes"),
        (dict(min_seeds=1), "min_seeds"),
        (dict(min_sizes=4.5), "integer"),
        (dict(bootstrap_reps=0), "bootstrap_reps"),
        (dict(permutation_reps=10), "permutation_reps"),
    ]:
        with pytest.raises(ScaleworldError, match=message):
            RegimeRule(**bad)


@pytest.mark.parametrize(
    ("params", "values", "message"),
    [
        (PAPER[:4], [np.ones(3)] * 5, "4 parameter counts but 5"),
        (PAPER[:4], [np.ones(3), np.ones(3), np.array([1.0, np.nan, 1.0]), np.ones(3)], "NaN"),
        (PAPER[:4], [np.ones(3), np.ones(3), np.array([]), np.ones(3)], "empty"),
        ([1e6, 1e6, 2e6, 3e6], [np.ones(3)] * 4, "distinct"),
        ([0.0, 1e6, 2e6, 3e6], [np.ones(3)] * 4, "positive"),
        ([1e6], [np.ones(3)], "at least 2 sizes"),
    ],
)
def test_bad_curves_raise_a_named_error(params, values, message):
    with pytest.raises(ScaleworldError, match=message):
        classify_regime(params, values, rule=RULE, rng=np.random.default_rng(0))


def test_bad_rng_and_curves_mapping_raise_a_named_error():
    with pytest.raises(ScaleworldError, match="Generator"):
        classify_regime(PAPER[:4], [np.ones(3)] * 4, rule=RULE, rng=0)
    with pytest.raises(ScaleworldError, match="non-empty mapping"):
        classify_games({}, rule=RULE, rng=np.random.default_rng(0))
    with pytest.raises(ScaleworldError, match="pair"):
        classify_games({"Pong": PAPER}, rule=RULE, rng=np.random.default_rng(0))
