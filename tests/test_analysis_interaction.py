"""'Joint stabilises scaling' as the paper states it (scaleworld.analysis.interaction): the
intersection-union test by hand, what a game needs to be tested, pairing per game. Its size under
the sceptic's nulls and its power are in tests/test_stats_calibration.py."""

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.interaction import HYPOTHESES, game_test, interaction_tests, stabilisation
from scaleworld.errors import ScaleworldError

SIZES = ["d2", "d4", "d8"]


def _curve(means, seeds=4, spread=(-0.01, 0.0, 0.01, 0.02)):
    """curves[size][seed]: a seed's offset shared by its sizes, plus a small per-run wiggle."""
    return {size: {s: m + spread[s] + 0.003 * ((s * 7 + k) % 3) for s in range(seeds)}
            for k, (size, m) in enumerate(zip(SIZES, means))}


def test_the_intersection_union_p_by_hand():
    single = _curve([2.5, 2.4, 2.6])  # the largest rises 0.2 above the middle
    joint = _curve([2.5, 2.4, 2.35])  # falls everywhere
    got = game_test(joint, single, sizes=SIZES, margin=0.05)
    # single rises: per pair (i < j), paired t of H0: mu_j - mu_i <= 0.05; Bonferroni over the 3 pairs

    def values(curve, size):
        return np.array([curve[size][s] for s in range(4)])

    def p_above(curve, small, large, margin):
        d = values(curve, large) - values(curve, small)
        return stats.t.sf((d.mean() - margin) / (d.std(ddof=1) / 2), 3)

    pairs = [("d2", "d4"), ("d2", "d8"), ("d4", "d8")]
    p_rise = min(1.0, 3 * min(p_above(single, a, b, 0.05) for a, b in pairs))
    p_no_rise = max(1 - p_above(joint, a, b, 0.05) for a, b in pairs)  # H0: mu_j - mu_i >= 0.05
    assert got["p_rise"] == pytest.approx(p_rise) and got["p_no_rise"] == pytest.approx(p_no_rise)
    assert got["p"] == pytest.approx(max(p_rise, p_no_rise)) and got["p"] < 0.01
    assert got["rise_y"] == pytest.approx(0.2, abs=0.01) and got["rise_x"] == 0.0
    assert got["paired"] == {"x": True, "y": True}


def test_a_game_is_stabilised_only_when_single_rises_and_joint_does_not():
    games = {"rises_joint_falls": ([2.5, 2.4, 2.6], [2.5, 2.4, 2.35]),
             "both_fall": ([2.5, 2.4, 2.35], [2.5, 2.4, 2.35]),
             "both_rise": ([2.5, 2.4, 2.6], [2.5, 2.4, 2.6])}
    single = {g: _curve(s) for g, (s, _) in games.items()}
    joint = {g: _curve(j) for g, (_, j) in games.items()}
    result = stabilisation(joint, single, order=SIZES, margin=0.05, alpha=0.05)
    called = {g: r["stabilised"] for g, r in result["games"].items()}
    assert called == {"rises_joint_falls": True, "both_fall": False, "both_rise": False}
    assert result["overall"]["stabilised"] == ["rises_joint_falls"]
    assert result["overall"]["y_rises"] == ["both_rise", "rises_joint_falls"]
    assert result["overall"]["x_rises_too"] == ["both_rise"]
    assert result["overall"]["p"] == pytest.approx(min(r["p_bh"] for r in result["games"].values()))  # Simes
    # a noisier or steeper joint curve with single falling is never "stabilised": single never rises
    steep = {g: _curve([3.0, 2.5, 2.0]) for g in games}
    falls = {g: _curve([2.5, 2.4, 2.35]) for g in games}
    assert not any(r["stabilised"] for r in stabilisation(steep, falls, order=SIZES, margin=0.05,
                                                          alpha=0.05)["games"].values())


def test_a_seed_missing_in_one_game_unpairs_that_game_only():
    single = {g: _curve([2.5, 2.4, 2.6]) for g in ("a", "b")}
    joint = {g: _curve([2.5, 2.4, 2.35]) for g in ("a", "b")}
    del joint["b"]["d4"][3]
    result = stabilisation(joint, single, order=SIZES, margin=0.05, alpha=0.05)
    assert result["games"]["a"]["paired"] == {"x": True, "y": True}
    assert result["games"]["b"]["paired"] == {"x": False, "y": True}  # Welch for b's joint contrasts


def test_too_small_studies_name_the_reason_and_nan_is_refused():
    single = {"one_seed": {s: {0: 1.0} for s in SIZES}, "two_sizes": _curve([2.5, 2.4])}
    joint = {"one_seed": {s: {0: 1.0} for s in SIZES}, "two_sizes": _curve([2.5, 2.4]), "only_joint": _curve([1, 1, 1])}
    result = stabilisation(joint, single, order=SIZES, margin=0.05, alpha=0.05)
    assert result["games"] == {} and result["overall"] is None
    assert result["left_out"]["one_seed"].startswith("untested: needs >= 3 sizes with >= 2 seeds")
    assert "has 2 sizes" in result["left_out"]["two_sizes"]
    assert result["left_out"]["only_joint"] == "untested: only in x"
    assert set(interaction_tests({"joint": joint, "single": single, "matched": single}, order=SIZES, margin=0.05,
                                 alpha=0.05)) == {"joint_stabilises_single", "joint_stabilises_matched"}
    assert interaction_tests({"joint": joint}, order=SIZES, margin=0.05, alpha=0.05) == {}
    bad = {"g": _curve([2.5, 2.4, 2.6])}
    bad["g"]["d4"][1] = float("nan")
    with pytest.raises(ScaleworldError, match="g: NaN"):
        stabilisation(bad, {"g": _curve([2.5, 2.4, 2.6])}, order=SIZES, margin=0.05, alpha=0.05)
    assert "{x}" not in HYPOTHESES.format(x="joint", y="single", m="0.05")
