"""Aggregates as rliable defines them, and the hierarchical bootstrap's coverage on synthetic truth
with a planted world-model-seed effect (a flat-runs bootstrap side by side). Coverage on the other
designs (trial-dominated, 16 trials, every aggregate) is in tests/test_stats_calibration.py."""

import numpy as np
import pytest
from scipy import stats

from scaleworld.analysis.hierarchical import (
    RUN_AGGREGATES,
    aggregate_cis,
    hierarchical_ci,
    improvement_ci,
    resample_runs,
)
from scaleworld.errors import ScaleworldError

# 3 games x (2 seeds x 2 trials): a runs x games matrix of 4 x 3
MATRIX = np.array([[0.0, 0.5, 2.0],
                   [0.2, 0.7, 1.5],
                   [0.1, 0.9, 1.1],
                   [0.4, 0.3, 3.0]])


def _runs(matrix: np.ndarray, trials: int = 2) -> dict:
    """Columns are games; consecutive rows are the trials of one seed."""
    return {f"game{g}": {s: list(matrix[s * trials:(s + 1) * trials, g]) for s in range(matrix.shape[0] // trials)}
            for g in range(matrix.shape[1])}


def test_the_aggregates_are_rliables_on_the_same_matrix():
    points, _, _ = resample_runs(_runs(MATRIX), shared_seeds=False, reps=1, rng=np.random.default_rng(0))
    got = {name: float(reduce(points)) for name, reduce in RUN_AGGREGATES.items()}
    pooled = np.sort(MATRIX.flatten())  # 12 runs: IQM drops floor(12 / 4) = 3 on each side
    assert got["iqm"] == pytest.approx(pooled[3:9].mean())
    assert got["optimality_gap"] == pytest.approx(1.0 - np.minimum(MATRIX, 1.0).mean())
    assert got["median"] == pytest.approx(np.median(MATRIX.mean(axis=0)))
    assert got["mean"] == pytest.approx(MATRIX.mean())
    game_means = np.sort(MATRIX.mean(axis=0))  # 3 games: trim_mean(0.25) drops none
    assert got["iqm_of_game_means"] == pytest.approx(game_means.mean())
    assert got["optimality_gap_of_game_means"] == pytest.approx(np.maximum(0, 1 - MATRIX.mean(axis=0)).mean())
    # pooled and per-game-mean IQM differ here: the published one is not the earlier one
    assert got["iqm"] != pytest.approx(got["iqm_of_game_means"])


def test_shared_seeds_are_drawn_once_for_every_game():
    same = {"a": {0: [0.0], 1: [1.0], 2: [5.0]}, "b": {0: [0.0], 1: [1.0], 2: [5.0]}}
    _, shared, _ = resample_runs(same, shared_seeds=True, reps=200, rng=np.random.default_rng(1))
    _, apart, _ = resample_runs(same, shared_seeds=False, reps=200, rng=np.random.default_rng(1))
    assert np.array_equal(shared[0], shared[1])
    assert not np.array_equal(apart[0], apart[1])
    # a joint run's game that lost a seed (a failed job) still shares the draw: seed 2's slot takes
    # one of its own seeds, every other slot is the other game's
    lost = {"a": {0: [0.0], 1: [1.0], 2: [5.0]}, "b": {0: [0.0], 1: [1.0]}}
    _, drawn, expansion = resample_runs(lost, shared_seeds=True, reps=400, rng=np.random.default_rng(1))
    agree = drawn[0] == drawn[1]
    assert agree[drawn[0] != 5.0].all() and not agree.all() and expansion == {"seeds": 2, "dof": 1}


def test_a_seed_that_lost_a_trial_is_resampled_from_what_it_has():
    runs = {"g": {0: [1.0, 1.0], 1: [3.0]}}
    _, replicates, _ = resample_runs(runs, shared_seeds=False, reps=500, rng=np.random.default_rng(2))
    assert replicates[0].shape == (500, 4) and set(np.unique(replicates[0])) <= {1.0, 3.0}
    assert not np.isnan(replicates[0]).any()
    ci = hierarchical_ci(runs, "mean", shared_seeds=False, rng=np.random.default_rng(2), reps=500)
    # each seed weighs the same in the point as in the replicates: (1 + 3) / 2, not (1 + 1 + 3) / 3
    assert ci.point == pytest.approx(2.0) and 1.0 <= ci.lo <= ci.hi <= 3.0


def _study(rng, *, shared: bool, games=26, seeds=8, trials=2, seed_sd=0.3, trial_sd=0.1):
    truth = np.linspace(0.1, 1.5, games)
    common = rng.normal(0, seed_sd, seeds)
    runs = {}
    for g in range(games):
        effect = common if shared else rng.normal(0, seed_sd, seeds)
        runs[f"g{g:02d}"] = {s: list(truth[g] + effect[s] + rng.normal(0, trial_sd, trials)) for s in range(seeds)}
    return runs, float(truth.mean())


@pytest.mark.parametrize("shared", [True, False], ids=["joint: seeds shared by games", "single: seeds per game"])
def test_hierarchical_intervals_cover_a_planted_seed_effect_and_flat_ones_do_not(shared):
    """joint26's design (26 games, 8 world-model seeds, 2 trials), the seed effect 3x the trial
    noise: 400 studies. The flat bootstrap (16 independent runs per game, games independent) is
    too narrow; the hierarchical one covers within 93-97%."""
    rng = np.random.default_rng(11)
    flat_hits = hits = 0
    studies = 400
    for _ in range(studies):
        runs, truth = _study(rng, shared=shared)
        flat = np.array([[v for trials in seeds.values() for v in trials] for seeds in runs.values()])  # [G, 16]
        drawn = np.take_along_axis(flat[None], rng.integers(0, flat.shape[1], size=(1000, *flat.shape)), axis=2)
        lo, hi = np.quantile(drawn.mean(axis=(1, 2)), [0.025, 0.975])  # every run independent: too narrow
        flat_hits += lo <= truth <= hi
        hits += hierarchical_ci(runs, "mean", shared_seeds=shared, rng=rng, reps=1000).contains(truth)
    print(f"coverage of 95% intervals ({'shared' if shared else 'per-game'} seeds): flat {flat_hits / studies:.1%}, "
          f"hierarchical {hits / studies:.1%}")
    assert 0.93 <= hits / studies <= 0.97
    assert flat_hits / studies < (0.5 if shared else 0.9)


def test_probability_of_improvement_by_hand_and_its_interval():
    x = {"a": {0: [3.0, 4.0]}, "b": {0: [1.0]}}
    y = {"a": {0: [1.0, 3.0]}, "b": {0: [1.0]}}
    ci = improvement_ci(x, y, x_shared=False, y_shared=False, rng=np.random.default_rng(0), reps=200)
    assert ci.point == pytest.approx((0.875 + 0.5) / 2)  # a: 3.5 of 4 pairs; b: a tie
    assert np.isnan(ci.lo) and np.isnan(ci.hi)  # one seed a side: no interval, rather than a point-wide one
    two = improvement_ci({"a": {0: [3.0, 4.0], 1: [2.0]}, "b": {0: [1.0], 1: [0.5]}},
                         {"a": {0: [1.0, 3.0], 1: [2.5]}, "b": {0: [1.0], 1: [1.5]}},
                         x_shared=False, y_shared=False, rng=np.random.default_rng(0), reps=200)
    assert two.lo <= two.point <= two.hi
    lower = improvement_ci(x, y, x_shared=False, y_shared=False, rng=np.random.default_rng(0), reps=200,
                           lower_is_better=True)
    assert lower.point == pytest.approx(1 - ci.point)


def test_a_seed_fixes_every_interval_and_game_order_does_not_matter():
    runs, _ = _study(np.random.default_rng(3), shared=True, games=5, seeds=4)
    a = aggregate_cis(runs, shared_seeds=True, rng=np.random.default_rng(9), reps=300)
    b = aggregate_cis(dict(reversed(list(runs.items()))), shared_seeds=True, rng=np.random.default_rng(9), reps=300)
    assert a == b and set(a) == set(RUN_AGGREGATES)


@pytest.mark.parametrize("runs, message", [
    ({}, "has no games"),
    ({"g": {}}, "has no seeds"),
    ({"g": {0: [1.0, np.nan]}}, "NaN"),
])
def test_bad_runs_get_a_clear_error(runs, message):
    with pytest.raises(ScaleworldError, match=message):
        hierarchical_ci(runs, shared_seeds=False, rng=np.random.default_rng(0), reps=10)


def test_an_unknown_aggregate_is_named():
    with pytest.raises(ScaleworldError, match="unknown aggregate 'iqr': use median, iqm"):
        hierarchical_ci({"g": {0: [1.0]}}, "iqr", shared_seeds=False, rng=np.random.default_rng(0), reps=10)


def test_episode_means_cover_the_held_out_sets_own_variance():
    """Held-out sets of 3 episodes whose difficulty varies far more than seeds do: an interval over
    seeds alone misses the NLL expected over episodes; the crossed seeds x episodes interval covers it."""
    from scaleworld.analysis.hierarchical import episode_size_means
    from scaleworld.analysis.statistics import t_interval

    rng = np.random.default_rng(21)
    seed_only = both = 0
    studies = 300
    for _ in range(studies):
        difficulty = rng.normal(3.0, 0.3, size=3)  # the fixed held-out set: 3 episodes
        frames = rng.integers(50, 150, size=3).astype(float)
        nats = (difficulty[None, :] + rng.normal(0, 0.01, size=(4, 1))) * frames  # 4 seeds, [S, E]
        runs = np.stack([nats, np.broadcast_to(frames, nats.shape)], axis=-1)  # [S, E, 2]
        (ci,) = episode_size_means([runs])
        per_run = nats.sum(1) / frames.sum()
        assert ci.point == pytest.approx(per_run.mean())
        both += ci.contains(3.0)
        seed_only += t_interval(per_run).contains(3.0)
    print(f"truth covered: seeds only {seed_only / studies:.0%}, seeds and episodes {both / studies:.0%}")
    assert seed_only / studies < 0.3 and 0.92 <= both / studies <= 0.98
    with pytest.raises(ScaleworldError, match="same held-out episodes"):
        episode_size_means([np.zeros((2, 3, 2)), np.zeros((2, 4, 2))])


def test_the_crossed_interval_by_hand():
    """Equal weights: the variance is MS_seed / (S E) + MS_episode / (S E) - MS_residual / (S E)."""
    from scaleworld.analysis.hierarchical import crossed_mean_interval

    y = np.array([[1.0, 2.0, 4.0], [1.5, 2.0, 5.0], [0.5, 1.0, 4.5]])  # [S = 3, E = 3]
    s, e = y.shape
    row, col, grand = y.mean(1), y.mean(0), y.mean()
    ms_seed, ms_ep = e * row.var(ddof=1), s * col.var(ddof=1)
    ms_res = np.sum((y - row[:, None] - col[None, :] + grand) ** 2) / 4
    assert ms_seed > ms_res and ms_ep > ms_res  # both components estimated above 0
    variance = ms_seed / (s * e) + ms_ep / (s * e) - ms_res / (s * e)
    # Satterthwaite over the mean squares with their coefficients (1/9, 1/9, -1/9) and dof (2, 2, 4)
    dof = variance**2 / ((ms_seed / 9) ** 2 / 2 + (ms_ep / 9) ** 2 / 2 + (ms_res / 9) ** 2 / 4)
    ci = crossed_mean_interval(y, np.full(3, 1 / 3))
    assert ci.point == pytest.approx(grand)
    assert ci.hi - ci.point == pytest.approx(stats.t.ppf(0.975, dof) * np.sqrt(variance))
