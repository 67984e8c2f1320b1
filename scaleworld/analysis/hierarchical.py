"""Aggregate scores as published (rliable) with a hierarchical bootstrap over world-model seeds.

A study's control runs are nested: each world model (one per seed) gets several policy trials, so
a game's runs are ``runs[game][seed] -> trial values`` (a held-out NLL is the case of one "trial"
per seed). Treating a game's 16 runs (8 seeds x 2 trials) as independent, and games as independent
when one joint model per seed plays all of them, makes intervals too narrow whenever the seed
effect dominates (tests/test_analysis_hierarchical.py measures it).

Aggregates over a set of games (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice", and their rliable library):

- ``median``, ``mean``: of the per-game mean scores.
- ``iqm``: the interquartile mean of all runs of all games pooled (trim_mean(., 0.25) of the
  runs x games matrix flattened: floor(n/4) runs dropped on each side). Games with more runs weigh
  more, as in the pooled matrix.
- ``optimality_gap``: gamma - mean(min(score, gamma)) over all runs of all games, gamma = 1 (the
  expert): the pooled shortfall below the expert.
- ``iqm_of_game_means``, ``optimality_gap_of_game_means``: the same two of the per-game means
  (scaleworld's earlier definitions, kept under their own names).

The hierarchical bootstrap, per replicate: draw the world-model seeds with replacement (as many
as there are) and keep each drawn seed's policy trials as they are. Resampling the trials within a
seed as well would count the trial noise twice: a seed's mean already carries it (variance
seed_sd^2 + trial_sd^2 / T), so the second draw adds it again (measured: trial-dominated designs
covered 97-100% with intervals 20-36% too wide; Davison and Hinkley 1997, section 3.8, resample the
top stage only). A seed that lost a trial to a failed job repeats its own trials up to the most any
seed has, in the point estimate and the replicates alike, so it weighs as much as the others.
Seeds are drawn per game, or once for all games when they share their models (`shared_seeds`: a
joint model per seed plays every game, so the same draw of seed labels applies to every game; a
game that lacks a drawn seed, its job failed, takes one of its own in its place: drawing such a
game apart would treat the joint run's games as independent, which measured 36% coverage). The
set of games stays fixed, as in rliable's stratified bootstrap.

Intervals are expanded percentile intervals (`scaleworld.analysis.statistics.expanded_interval`):
n is the number of seeds (the fewest of any game); dof = n - 1 when the seeds are shared, else the
sum over games of (seeds - 1) (independent games pool their spreads). Their coverage, measured per
aggregate on joint26-like designs (seed- and trial-dominated, 2 and 16 trials, shared and per-game
seeds), is in ARCHITECTURE.md ("Statistics, calibrated"; tools/stats_calibration.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from scaleworld.analysis.statistics import (
    ConfidenceInterval,
    as_values,
    check_bootstrap,
    expanded_interval,
    iqm,
    mean,
    median,
    optimality_gap,
    win_rate,
)
from scaleworld.errors import ScaleworldError

Runs = Mapping[str, Mapping[int, Sequence[float]]]
"""runs[game][seed] -> the values of that seed's runs (policy trials; one value for an NLL)."""


def _pooled_iqm(runs: list[np.ndarray]) -> np.ndarray:
    return iqm(np.concatenate(runs, axis=-1))


def _pooled_gap(runs: list[np.ndarray]) -> np.ndarray:
    return optimality_gap(np.concatenate(runs, axis=-1))


def _of_means(aggregate: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], np.ndarray]:
    return lambda runs: aggregate(np.stack([r.mean(axis=-1) for r in runs], axis=-1))


RUN_AGGREGATES: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "median": _of_means(median), "iqm": _pooled_iqm, "mean": _of_means(mean), "optimality_gap": _pooled_gap,
    "iqm_of_game_means": _of_means(iqm), "optimality_gap_of_game_means": _of_means(optimality_gap),
}
"""Each reduces a list (one per game, sorted) of run arrays [..., n_game] to [...]: see the module
docstring for the definitions."""


def _as_runs(runs: Runs, *, what: str) -> dict[str, tuple[list[int], np.ndarray, np.ndarray]]:
    """game -> (seeds, values [S, T] NaN-padded, trials per seed [S]), games and seeds sorted."""
    if not isinstance(runs, Mapping) or not runs:
        raise ScaleworldError(f"{what} has no games; pass game -> seed -> run values")
    out = {}
    for game in sorted(runs):
        per_seed = runs[game]
        if not isinstance(per_seed, Mapping) or not per_seed:
            raise ScaleworldError(f"{what}[{game!r}] has no seeds; pass seed -> run values")
        seeds = sorted(per_seed)
        arrays = [as_values(per_seed[s], what=f"{what}[{game!r}][{s!r}]") for s in seeds]
        width = max(a.size for a in arrays)
        padded = np.full((len(seeds), width), np.nan)
        for row, a in enumerate(arrays):
            padded[row, : a.size] = a
        out[game] = (seeds, padded, np.array([a.size for a in arrays]))
    return out


def _expansion(table: dict[str, tuple[list[int], np.ndarray, np.ndarray]], shared: bool) -> dict[str, int]:
    seeds = min(len(s) for s, _, _ in table.values())
    return {"seeds": seeds, "dof": seeds - 1 if shared else sum(len(s) - 1 for s, _, _ in table.values())}


def _filled(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """values [S, T] NaN-padded -> [S, T] where a seed short of trials repeats its own, in order."""
    width = values.shape[1]
    return np.stack([values[s, np.arange(width) % c] for s, c in enumerate(counts)])


def _shared_picks(table: dict[str, tuple[list[int], np.ndarray, np.ndarray]], *, reps: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One draw of seed labels for every game (from all games' seeds), as each game's rows [reps, n].
    A game that lacks a drawn seed (its job failed) takes one of its own seeds in its place."""
    labels = sorted(set().union(*(seeds for seeds, _, _ in table.values())))
    drawn = rng.integers(0, len(labels), size=(reps, len(labels)))
    picks = {}
    for game, (seeds, _, _) in table.items():
        row = {seed: i for i, seed in enumerate(seeds)}
        rows = np.array([row.get(label, -1) for label in labels])[drawn]  # -1: this game lacks the seed
        missing = rows < 0
        if missing.any():
            rows[missing] = rng.integers(0, len(seeds), size=int(missing.sum()))
        picks[game] = rows
    return picks


def resample_runs(runs: Runs, *, shared_seeds: bool, reps: int, rng: np.random.Generator,
                  what: str = "runs") -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """(points, replicates, expansion): per game (sorted), its runs [S x T] and `reps` resamples of
    its seeds with their trials [reps, S x T] (a seed short of trials repeats its own in both), and
    the {seeds, dof} of the expanded interval. `shared_seeds` draws the seeds once for all games (one
    model per seed plays every game), also when a game lacks a seed another has."""
    table = _as_runs(runs, what=what)
    shared = _shared_picks(table, reps=reps, rng=rng) if shared_seeds else None
    points, replicates = [], []
    for game, (seeds, values, counts) in table.items():
        filled = _filled(values, counts)
        picks = shared[game] if shared else rng.integers(0, len(seeds), size=(reps, len(seeds)))  # [reps, n]
        replicates.append(filled[picks].reshape(reps, -1))  # [reps, n x T]
        points.append(filled.reshape(-1))
    return points, replicates, _expansion(table, shared_seeds)


def hierarchical_ci(runs: Runs, aggregate: str = "mean", *, shared_seeds: bool, rng: np.random.Generator,
                    reps: int = 2000, confidence: float = 0.95) -> ConfidenceInterval:
    """`RUN_AGGREGATES[aggregate]` of the runs with a hierarchical bootstrap interval."""
    if aggregate not in RUN_AGGREGATES:
        raise ScaleworldError(f"unknown aggregate {aggregate!r}: use {', '.join(RUN_AGGREGATES)}")
    return aggregate_cis(runs, shared_seeds=shared_seeds, rng=rng, reps=reps, confidence=confidence)[aggregate]


def aggregate_cis(runs: Runs, *, shared_seeds: bool, rng: np.random.Generator, reps: int = 2000,
                  confidence: float = 0.95) -> dict[str, ConfidenceInterval]:
    """Every `RUN_AGGREGATES` entry with its interval, all from one set of replicates."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    points, replicates, expansion = resample_runs(runs, shared_seeds=shared_seeds, reps=reps, rng=rng)
    out = {}
    for name, reduce in RUN_AGGREGATES.items():
        # The median of per-game seeds rests on the one or two middle games, and the bootstrap's game
        # means spread wider than the true ones (their noise on top): already 96-98% covered with
        # plain percentiles, 97-99% expanded (measured), so it is not expanded.
        plain = name == "median" and expansion["dof"] != expansion["seeds"] - 1
        out[name] = expanded_interval(float(reduce(points)), np.asarray(reduce(replicates)), confidence=confidence,
                                      expand=not plain, **expansion)
    return out


def improvement_ci(x: Runs, y: Runs, *, x_shared: bool, y_shared: bool, rng: np.random.Generator,
                   reps: int = 2000, confidence: float = 0.95, lower_is_better: bool = False) -> ConfidenceInterval:
    """P(x improves on y): per game, the share of run pairs where x beats y (ties count 1/2), mean
    over games with equal weight; interval from hierarchical resamples of each (x and y are other
    models, so drawn independently of each other)."""
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    if sorted(x) != sorted(y):
        raise ScaleworldError(f"x and y must cover the same games (x: {sorted(x)}, y: {sorted(y)})")
    sign = -1.0 if lower_is_better else 1.0
    x_points, x_reps, x_exp = resample_runs(x, shared_seeds=x_shared, reps=reps, rng=rng, what="x")
    y_points, y_reps, y_exp = resample_runs(y, shared_seeds=y_shared, reps=reps, rng=rng, what="y")
    point = np.mean([win_rate(sign * a, sign * b) for a, b in zip(x_points, y_points)])
    replicates = np.mean([win_rate(sign * a, sign * b) for a, b in zip(x_reps, y_reps)], axis=0)
    # two independent samples: the fewer seeds and the smaller dof decide the expansion (conservative)
    return expanded_interval(float(point), replicates, confidence=confidence,
                             seeds=min(x_exp["seeds"], y_exp["seeds"]), dof=min(x_exp["dof"], y_exp["dof"]))


def crossed_mean_interval(values: np.ndarray, weights: np.ndarray, *,
                          confidence: float = 0.95) -> ConfidenceInterval:
    """The mean of a crossed seeds x episodes design with a t interval from its variance components.

    values [S, E]: every seed scored on the same E episodes (y_se = mu + a_s + b_e + e_se, the seed
    effect a, the episode's difficulty b and their interaction e independent, variances va, vb,
    ve); weights [E] sum to 1 (an episode's share of the frames). The point: the mean over seeds of
    sum_e w_e y_se. Its variance is va / S + vb sum(w^2) + ve sum(w^2) / S; from the two-way ANOVA
    mean squares (MS_seed on S - 1, MS_episode on E - 1, MS_residual on (S - 1)(E - 1) dof) it is
    estimated as MS_seed / (S E) + sum(w^2) MS_episode / S - MS_residual / (S E) (a variance
    component estimated below 0 is set to 0, and the mean squares it rests on leave the sum), with
    Satterthwaite's degrees of freedom from the mean squares and their coefficients: V^2 / sum_i
    (c_i MS_i)^2 / d_i. With one episode only the seeds vary (t on S - 1 dof); with one seed, only
    the episodes (t on E - 1 dof, the episodes' weighted spread)."""
    from scipy import stats  # here: the spec and plan never import scipy

    y, w = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    seeds, episodes = y.shape
    point = float((y @ w).mean())
    sw2 = float(np.sum(w**2))
    row, col, grand = y.mean(axis=1), y.mean(axis=0), y.mean()
    ms_seed = episodes * row.var(ddof=1) if seeds > 1 else 0.0
    ms_episode = seeds * col.var(ddof=1) if episodes > 1 else 0.0
    residual_dof = (seeds - 1) * (episodes - 1)
    ms_residual = float(np.sum((y - row[:, None] - col[None, :] + grand) ** 2)) / residual_dof if residual_dof else 0.0
    if episodes == 1:  # the seeds' spread holds all of it
        terms = [(float(np.var(y[:, 0], ddof=1)) / seeds if seeds > 1 else 0.0, seeds - 1)]
    elif seeds == 1:
        terms = [(sw2 * float(np.var(y[0], ddof=1)), episodes - 1)]
    else:  # (c MS, dof of MS) per mean square: V = c_seed MS_seed + c_episode MS_episode + c_residual MS_residual
        c_seed = 1.0 / (seeds * episodes) if ms_seed > ms_residual else 0.0  # va > 0
        c_episode = sw2 / seeds if ms_episode > ms_residual else 0.0  # vb > 0
        c_residual = sw2 / seeds - c_seed - c_episode
        terms = [(c_seed * ms_seed, seeds - 1), (c_episode * ms_episode, episodes - 1),
                 (c_residual * ms_residual, residual_dof)]
    variance = sum(t for t, _ in terms)
    if seeds * episodes < 2:  # one run: nothing to estimate a spread from
        return ConfidenceInterval(point=point, lo=math.nan, hi=math.nan, reps=0, confidence=float(confidence))
    if variance <= 0:  # every run alike
        return ConfidenceInterval(point=point, lo=point, hi=point, reps=0, confidence=float(confidence))
    dof = variance**2 / sum(t**2 / d for t, d in terms if d > 0 and t != 0)
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * np.sqrt(variance)
    return ConfidenceInterval(point=point, lo=point - half, hi=point + half, reps=0, confidence=float(confidence))


def episode_size_means(runs: Sequence[np.ndarray], *, confidence: float = 0.95) -> list[ConfidenceInterval]:
    """Per size, the mean held-out NLL over seeds with an interval that counts the held-out episodes'
    variance too (the held-out set is fixed and can be a few episodes: seed variance alone does not
    cover it). runs[k]: [S_k, E, 2], per seed and held-out episode its summed nats and scored
    frames; every size and seed is scored on the same episodes. A run's NLL is its nats over its
    frames, i.e. the frame-weighted mean of its per-episode NLLs: `crossed_mean_interval` with the
    episodes' frame shares as weights (coverage measured in tools/stats_calibration.py)."""
    arrays = [np.asarray(r, dtype=float) for r in runs]
    episodes = {a.shape[1] for a in arrays}
    if any(a.ndim != 3 or a.shape[2] != 2 or a.shape[0] == 0 for a in arrays) or len(episodes) != 1:
        raise ScaleworldError("per size, give [seeds, episodes, (nats, frames)] with the same held-out episodes")
    out = []
    for a in arrays:
        frames = a[0, :, 1]
        if np.any(frames <= 0) or np.any(a[:, :, 1] != frames):
            raise ScaleworldError("every seed must score the same held-out episodes (the same frames per episode)")
        out.append(crossed_mean_interval(a[:, :, 0] / frames, frames / frames.sum(), confidence=confidence))
    return out
