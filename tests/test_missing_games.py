"""What missing games could change (scaleworld.analysis.missing_games), checked against the
statistics' definitions (numpy's median, scipy's trim_mean) over values drawn for the missing games."""

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.missing_games import bounds, order_changes, score_bounds, what_missing_games_could_change

DEFINITIONS = {"median": np.median, "iqm_of_game_means": lambda x: stats.trim_mean(x, 0.25)}


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
@pytest.mark.parametrize("present, missing", [(7, 1), (10, 2), (23, 3), (5, 4), (2, 1)])
def test_every_value_the_missing_games_could_take_lands_within_the_bounds_and_the_bounds_are_reached(
        name, present, missing):
    rng = np.random.default_rng([present, missing])
    values = rng.normal(size=present)
    low, high = bounds(name, list(values), missing)
    statistic = DEFINITIONS[name]
    draws = [statistic(np.concatenate([values, rng.normal(scale=s, size=missing)]))
             for s in (0.1, 1, 10, 1e3) for _ in range(200)]
    assert low <= min(draws) + 1e-12 and max(draws) <= high + 1e-12
    for bound, extreme in ((low, -1e12), (high, 1e12)):  # far beyond every game: the bound itself, or unbounded
        reached = statistic(np.concatenate([values, np.full(missing, extreme)]))
        assert (abs(reached) > 1e9) if not np.isfinite(bound) else reached == pytest.approx(bound)


def test_a_median_with_half_the_games_missing_is_unbounded_and_with_none_is_the_median():
    assert bounds("median", [1.0, 2.0, 3.0], 3) == (-np.inf, np.inf)
    assert bounds("median", [1.0, 2.0, 3.0], 0) == (2.0, 2.0)
    assert bounds("median", [1.0, 2.0, 3.0, 4.0, 5.0], 1) == (2.5, 3.5)


def _aggregates(joint, single):
    return {"joint": {"d2": {"games": joint}}, "single": {"d2": {"games": single}}}


def test_an_order_the_missing_games_could_reverse_is_named_and_one_they_could_not_is_not():
    games = [f"g{i}" for i in range(9)]
    # single on 7 of 9 games, median 0.48 and IQM 0.498 below joint's 0.5; two games above all the
    # others would make them the 5th of 9 (0.55) and the mean of the 3rd to 7th (0.554): above joint's
    close = _aggregates({g: 0.5 for g in games}, dict(zip(games, [0.40, 0.42, 0.44, 0.48, 0.55, 0.6, 0.7])))
    rows = score_bounds(close, games)
    assert {(r["mode"], r["statistic"]) for r in rows} == {("single", "median"), ("single", "iqm_of_game_means")}
    changes = order_changes(rows, close, games)
    assert {(c["higher"], c["lower"], c["statistic"]) for c in changes} == {
        ("joint", "single", "median"), ("joint", "single", "iqm_of_game_means")}
    far = _aggregates({g: 5.0 for g in games}, {g: 0.1 * i for i, g in enumerate(games[:8])})
    # one of 9 games missing from single: its median can reach at most its 5th value of 8 (0.4), far below 5
    assert order_changes(score_bounds(far, games), far, games) == []


def test_the_record_names_regime_counts_the_missing_games_could_add_to():
    games = ["A", "B", "C"]
    record = {"modes": {"single": {"A": {"regime": "classical"}, "B": {"regime": "inconclusive"}},
                        "joint": {g: {"regime": "classical"} for g in games}},
              "scores": {"aggregates": _aggregates({"A": 0.2, "B": 0.3, "C": 0.4}, {"A": 0.1, "B": 0.2})}}
    could = what_missing_games_could_change(record, games)
    assert could["regimes"] == [{"mode": "single", "counts": {"classical": 1, "inconclusive": 1},
                                 "games_present": 2, "missing": ["C"]}]
    median = next(r for r in could["scores"] if r["statistic"] == "median")
    assert (median["low"], median["high"]) == (0.1, 0.2)  # 3 games: the middle of [x, 0.1, 0.2], x anywhere
    # joint's median 0.3 is above single's highest possible, 0.2; the IQM of 3 games trims none: unbounded
    assert [(c["statistic"], c["higher"]) for c in could["order"]] == [("iqm_of_game_means", "joint")]
