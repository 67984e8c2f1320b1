"""The control evidence against random (scaleworld.analysis.versus_random) on synthetic scores:
Welch's arithmetic against a hand computation and scipy, the test's size under the null and its
power, the Holm rule over a cell's runs, and the per-step diagnostic."""

import math

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.versus_random import control_evidence, per_step, welch_greater
from scaleworld.errors import ScaleworldError


def test_welch_by_hand():
    x, y = [3.0, 5.0, 7.0], [1.0, 2.0, 3.0, 2.0]
    # means 5 and 2; variances 4 and 2/3; se^2 = 4/3 + (2/3)/4 = 1.5
    se = math.sqrt(1.5)
    df = 1.5**2 / ((4 / 3) ** 2 / 2 + (1 / 6) ** 2 / 3)
    out = welch_greater(x, y)
    assert out["difference"] == pytest.approx(3.0)
    assert out["df"] == pytest.approx(df)
    assert out["p"] == pytest.approx(stats.t.sf(3.0 / se, df))
    assert out["p"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
    half = stats.t.ppf(0.975, df) * se
    assert (out["lo"], out["hi"]) == pytest.approx((3.0 - half, 3.0 + half))


def test_welch_degenerate_sides():
    assert welch_greater([-21, -21], [-21, -21, -21])["p"] == 1.0  # Pong: both always lose 0-21
    assert welch_greater([2, 2], [1, 1])["p"] == 0.0
    with pytest.raises(ScaleworldError, match="2\\+ episodes"):
        welch_greater([1.0], [0.0, 1.0])


@pytest.mark.parametrize("draw", ["normal", "poisson", "skewed"])
def test_size_under_the_null(draw):
    """Equal expected returns, unequal spreads and counts: the one-sided test rejects at most about
    alpha of the time (3,000 trials: the binomial SE at 5% is 0.4 points); right-skewed returns make
    it conservative (left-skewed ones do the opposite: see the module docstring)."""
    rng = np.random.default_rng(0)
    draws = {"normal": lambda n, s: rng.normal(0.0, s, n), "poisson": lambda n, s: rng.poisson(2.0 * s, n) / s,
             "skewed": lambda n, s: rng.exponential(s, n) - s}
    reject = np.mean([welch_greater(draws[draw](16, 3.0), draws[draw](30, 1.0))["p"] <= 0.05 for _ in range(3000)])
    assert (0.01 if draw == "skewed" else 0.035) < reject < 0.065, reject


def test_power_and_interval_coverage():
    """A policy 1.5 random-SDs better is found at p <= 0.01 most of the time with 16 and 30 episodes; the interval
    covers the true difference about 95% of the time."""
    rng = np.random.default_rng(1)
    found, covered = 0, 0
    for _ in range(2000):
        out = welch_greater(rng.normal(1.5, 1.5, 16), rng.normal(0.0, 1.0, 30))
        found += out["p"] <= 0.01
        covered += out["lo"] <= 1.5 <= out["hi"]
    assert found / 2000 > 0.8
    assert 0.93 < covered / 2000 < 0.97


def _run(seed, trial, returns, *, random, imagined=None, size="s", game="Pong", modes=("single",)):
    return {"modes": list(modes), "size": size, "game": game, "seed": seed, "trial": trial, "returns": returns,
            "lengths": [10] * len(returns), "random_returns": random, "imagined_reward": imagined}


def test_cell_holm_rule_and_diagnostic():
    random = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    good, null = [3.0, 4.0, 3.0, 4.0], [0.0, 1.0, 1.0, 0.0]
    runs = [_run(0, 0, null, random=random, imagined=0.5), _run(1, 0, good, random=random, imagined=0.4)]
    cell = control_evidence(runs, alpha=0.05)["single"]["s"]["Pong"]
    p_good = welch_greater(good, random)["p"]
    assert cell["p_holm"] == pytest.approx(min(1.0, 2 * p_good))
    assert cell["beats_random"] and cell["runs_beating"] == 1
    assert cell["random"] == {"score": 0.5, "sem": pytest.approx(np.std(random, ddof=1) / math.sqrt(8)), "episodes": 8}
    # reward per step: real = total return / agent steps; gap = imagined - real, means over runs
    assert cell["real_reward_per_step"] == pytest.approx((0.05 + 0.35) / 2)
    assert cell["imagined_reward_per_step"] == pytest.approx(0.45)
    assert cell["gap_per_step"] == pytest.approx(0.45 - 0.2)
    # the case: imagination rises, the real game stays at random's: no win, a large gap
    fooled = control_evidence([_run(0, 0, null, random=random, imagined=0.33)], alpha=0.05)["single"]["s"]["Pong"]
    assert not fooled["beats_random"] and fooled["gap_per_step"] == pytest.approx(0.28)


def test_holm_needs_the_correction():
    """A run at p just under alpha does not carry a cell of many runs: the family is corrected."""
    rng = np.random.default_rng(3)
    random = list(rng.normal(0, 1, 30))
    runs = [_run(s, 0, list(rng.normal(0, 1, 16)), random=random) for s in range(6)]
    cell = control_evidence(runs, alpha=0.05)["single"]["s"]["Pong"]
    ps = [r["p"] for r in cell["runs"]]
    assert cell["p_holm"] == pytest.approx(min(1.0, 6 * min(ps)))
    assert cell["beats_random"] == (6 * min(ps) <= 0.05)


def test_cells_split_by_mode_size_game_and_unknown_imagination():
    random = [0.0, 1.0, 0.0]
    runs = [_run(0, 0, [1.0, 2.0], random=random, modes=("single", "matched")),
            _run(0, 0, [1.0, 2.0], random=random, game="Boxing", size="m")]
    out = control_evidence(runs, alpha=0.05)
    assert set(out) == {"single", "matched"} and set(out["single"]) == {"s", "m"}
    assert out["single"]["m"]["Boxing"]["imagined_reward_per_step"] is None
    assert out["single"]["m"]["Boxing"]["gap_per_step"] is None
    assert per_step([1.0, 2.0], [10, 20]) == pytest.approx(0.1)
    assert math.isnan(per_step([], []))


def test_a_run_of_one_episode_is_shown_untested():
    random = [0.0, 1.0, 0.0]
    out = control_evidence([_run(0, 0, [5.0], random=random), _run(1, 0, [1.0, 3.0], random=random)], alpha=0.05)
    cell = out["single"]["s"]["Pong"]
    assert cell["runs"][0]["p"] is None and cell["runs"][0]["score"] == 5.0
    assert cell["p_holm"] == pytest.approx(welch_greater([1.0, 3.0], random)["p"])  # one tested run: no correction
    alone = control_evidence([_run(0, 0, [5.0], random=random)], alpha=0.05)["single"]["s"]["Pong"]
    assert alone["p_holm"] is None and alone["beats_random"] is None and alone["runs_beating"] == 0


def test_the_table_is_corrected_with_benjamini_hochberg_and_its_family_stated():
    """Three games' cells: BH over the table's cells of each cell's Holm p decides "beats random"."""
    from scaleworld.analysis.statistics import benjamini_hochberg
    from scaleworld.analysis.versus_random import family_summary

    rng = np.random.default_rng(9)
    runs = []
    for game, shift in (("Pong", 3.0), ("Breakout", 0.0), ("Qbert", 0.9)):
        random = list(rng.normal(0, 1, 30))
        for size in ("d2", "d4"):
            runs += [_run(seed, 0, list(shift + rng.normal(0, 1, 16)), random=random, game=game, size=size)
                     for seed in range(3)]
    out = control_evidence(runs, alpha=0.05)
    cells = [out["single"][size][game] for size in sorted(out["single"]) for game in sorted(out["single"][size])]
    expected = benjamini_hochberg([c["p_holm"] for c in cells])
    assert [c["p_bh"] for c in cells] == pytest.approx(list(expected))
    assert [c["beats_random"] for c in cells] == [bool(q <= 0.05) for q in expected]
    family = family_summary(out, alpha=0.05)
    assert (family["cells"], family["games"], family["sizes"], family["modes"]) == (6, 3, 2, 1)
    assert "Pong" in family["any_games"] and "Breakout" not in family["any_games"]
    assert family["games_beating"]["single"]["d2"] == sorted(
        g for g, c in out["single"]["d2"].items() if c["beats_random"])
