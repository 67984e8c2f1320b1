"""The mode x size interaction test ("joint stabilises scaling") on synthetic truth: its size under
the null, its power under a planted bump, at joint26's design (26 games, 8 seeds, 5 sizes)."""

import numpy as np
import pytest

from scaleworld.analysis.interaction import interaction_tests, one_sided_t, stabilisation, worst_increase
from scaleworld.errors import ScaleworldError

SIZES = ["d2", "d4", "d8", "d16", "d32"]
CURVE = 2.4 + 0.5 * (np.arange(5.0) + 1) ** -0.5  # falling: a step up is noise or a bump


def _curves(rng, *, games=26, seeds=8, noise=0.02, bump=0.0, shared=True):
    """curves[game][size][seed]; `bump` raises the 4th size; a seed effect shared by a seed's sizes."""
    truth = CURVE + bump * (np.arange(5) == 3)
    out = {}
    seed_effect = rng.normal(0, noise, seeds)
    for g in range(games):
        effect = seed_effect if shared else rng.normal(0, noise, seeds)
        out[f"g{g:02d}"] = {size: {s: float(truth[k] + effect[s] + rng.normal(0, noise)) for s in range(seeds)}
                            for k, size in enumerate(SIZES)}
    return out


def test_worst_increase_and_the_t_test_by_hand():
    assert worst_increase(np.array([3.0, 2.0, 2.5, 1.0])) == pytest.approx(0.5)
    assert worst_increase(np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert one_sided_t(np.array([1.0, 1.0])) == 0.0 and one_sided_t(np.array([0.0, 0.0])) == 1.0
    assert one_sided_t(np.array([0.1, 0.3, 0.2])) == pytest.approx(0.0371, abs=1e-4)  # t = 3.46 on 2 dof


def test_the_interaction_test_holds_its_size_under_the_null():
    rng = np.random.default_rng(0)
    per_game = overall = tests = 0
    for _ in range(200):  # joint and single from the same distribution
        result = stabilisation(_curves(rng), _curves(rng), order=SIZES)
        per_game += sum(g["p"] <= 0.05 for g in result["games"].values())
        tests += len(result["games"])
        overall += result["overall"]["p"] <= 0.05
    print(f"null: per-game rejections {per_game / tests:.1%}, overall {overall / 200:.1%}")
    assert per_game / tests <= 0.07 and overall / 200 <= 0.08


def test_the_interaction_test_has_power_under_a_planted_bump():
    """Single-game curves with a bump of 0.05 nats at the 4th size (noise 0.02 per run), joint curves
    without: the overall test (26 games pooled per seed) finds it nearly always; one game alone,
    8 seeds and BH over 26 games, finds it less often."""
    rng = np.random.default_rng(1)
    overall = per_game = 0
    for _ in range(100):
        result = stabilisation(_curves(rng), _curves(rng, bump=0.05), order=SIZES)
        overall += result["overall"]["p"] <= 0.05
        per_game += np.mean([g["p_bh"] <= 0.05 for g in result["games"].values()])
    print(f"planted bump: overall power {overall / 100:.0%}, per-game (BH) {per_game / 100:.0%}")
    assert overall / 100 >= 0.95 and per_game / 100 >= 0.3  # measured: 100% and 39%


def test_pairs_games_and_what_is_left_out():
    rng = np.random.default_rng(2)
    joint, single = _curves(rng, games=3), _curves(rng, games=3)
    single["g02"] = {size: {0: 1.0} for size in SIZES}  # one seed: cannot be tested
    result = interaction_tests({"joint": joint, "single": single, "matched": single}, order=SIZES)
    assert set(result) == {"joint_stabilises_single", "joint_stabilises_matched"}
    one = result["joint_stabilises_single"]
    assert set(one["games"]) == {"g00", "g01"} and "g02" in one["left_out"]
    assert one["overall"]["seeds"] == 8 and one["sizes"] == SIZES
    assert interaction_tests({"joint": joint}, order=SIZES) == {}
    joint["g00"]["d4"][3] = float("nan")
    with pytest.raises(ScaleworldError, match="g00: NaN"):
        stabilisation(joint, single, order=SIZES)
