"""Does joint training stabilise scaling? The mode x size interaction, tested directly.

The reference claim "joint training makes every game's scaling monotonic" is not a count of regime
labels: it says the joint curve rises less along the size ladder than the single-game curve.

- A curve's *worst increase* W: the largest step up between consecutive sizes, max_k (NLL_{k+1} -
  NLL_k) over the sizes both modes have (negative when the curve falls everywhere). Held-out NLL:
  lower is better, so a step up is a larger model doing worse.
- Per game g and seed s: D_gs = W(y)_gs - W(x)_gs for the comparison "x stabilises y" (x = joint,
  y = single or matched): D > 0 when x's worst step up is smaller. Seeds pair the modes (seed s of
  both modes: the same initialisation seed and batch order convention).
- Per game: a one-sided one-sample t-test of H0: E[D_g] <= 0 over its seeds (n - 1 degrees of
  freedom), then Benjamini-Hochberg across games (``p_bh``).
- Overall: per seed, the mean of D_gs over games, then the same one-sided t-test over seeds. The seed
  is the unit, not the game: one joint model per seed plays every game, so games are not independent.
- With zero spread (noiseless data) the sign decides: p = 0 when the mean is above 0, else 1.

Checked on synthetic truth (tests/test_analysis_interaction.py): size under the null, power under a
planted bump in the single-game curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from scaleworld.analysis.statistics import benjamini_hochberg
from scaleworld.errors import ScaleworldError

# curves[game][size][seed] -> held-out NLL; `order` lists the sizes from the smallest up
Curves = Mapping[str, Mapping[str, Mapping[int, float]]]


def worst_increase(values: np.ndarray) -> np.ndarray:
    """values [..., K] along sizes (smallest first) -> [...]: the largest step up, max_k v_{k+1} - v_k."""
    return np.diff(values, axis=-1).max(axis=-1)


def one_sided_t(d: np.ndarray) -> float:
    """p of H0: E[d] <= 0 from a one-sample t-test (n - 1 dof); the sign decides with zero spread."""
    from scipy import stats  # here: the spec and plan never import scipy

    if d.size < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(d.size)
    if se == 0:
        return 0.0 if d.mean() > 0 else 1.0
    return float(stats.t.sf(d.mean() / se, d.size - 1))


def stabilisation(x: Curves, y: Curves, *, order: Sequence[str]) -> dict[str, object]:
    """The interaction test of the module docstring for "x stabilises y" over the games, sizes (in
    `order`) and seeds both have; {games: {g: {mean, p, p_bh, seeds}}, overall: {mean, p, seeds},
    sizes}. Games with fewer than 2 shared seeds or 3 shared sizes are left out, and so noted."""
    per_game: dict[str, np.ndarray] = {}  # game -> D over its shared seeds
    seeds_of: dict[str, list[int]] = {}
    left_out: dict[str, str] = {}
    sizes_used: set[str] = set()
    for game in sorted(set(x) & set(y)):
        sizes = [s for s in order if s in x[game] and s in y[game]]
        seeds = sorted(set.intersection(*(set(x[game][s]) & set(y[game][s]) for s in sizes))) if sizes else []
        if len(sizes) < 3 or len(seeds) < 2:
            left_out[game] = f"{len(sizes)} shared sizes and {len(seeds)} shared seeds: the test needs 3 and 2"
            continue
        xs = np.array([[x[game][size][seed] for size in sizes] for seed in seeds])  # [S, K]
        ys = np.array([[y[game][size][seed] for size in sizes] for seed in seeds])
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ScaleworldError(f"{game}: NaN or infinite NLL in the curves; drop or redo the failed runs")
        per_game[game] = worst_increase(ys) - worst_increase(xs)
        seeds_of[game] = seeds
        sizes_used |= set(sizes)
    games = sorted(per_game)
    raw = [one_sided_t(per_game[g]) for g in games]
    adjusted = benjamini_hochberg(raw) if games else []
    out: dict[str, object] = {
        "games": {g: {"mean": float(per_game[g].mean()), "p": p, "p_bh": float(q), "seeds": int(per_game[g].size)}
                  for g, p, q in zip(games, raw, adjusted)},
        "left_out": left_out, "sizes": [s for s in order if s in sizes_used],
    }
    common = sorted(set.intersection(*(set(seeds_of[g]) for g in games))) if games else []
    if len(common) >= 2:
        d = np.array([[per_game[g][seeds_of[g].index(s)] for s in common] for g in games])  # [G, S]
        by_seed = d.mean(axis=0)  # [S]: the seed is the unit
        out["overall"] = {"mean": float(by_seed.mean()), "p": one_sided_t(by_seed), "seeds": int(by_seed.size),
                          "games": len(games)}
    else:
        out["overall"] = None
    return out


STABILISATION_PAIRS = (("joint", "single"), ("joint", "matched"))
"""(x, y): "x stabilises y" is tested where a study has both modes."""


def interaction_tests(curves: Mapping[str, Curves], *, order: Sequence[str]) -> dict[str, object]:
    """`stabilisation` for every pair of `STABILISATION_PAIRS` the study has; curves[mode][game][size][seed]."""
    return {f"{x}_stabilises_{y}": stabilisation(curves[x], curves[y], order=order)
            for x, y in STABILISATION_PAIRS if x in curves and y in curves}
