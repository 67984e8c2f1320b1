"""Does joint training stabilise scaling? The paper's claim, tested game by game.

The claim: where a game's single-game curve of held-out NLL rises with model size, its joint curve
does not. Per game g, for "x stabilises y" (x = joint, y = single or matched), with m the regime
rule's margin (nats per frame) and mu_k a mode's mean NLL at size k (sizes from the smallest up):

    H1_g: y rises: mu^y_j - mu^y_i > m for some pair i < j (a larger size worse by more than m),
          and x does not: mu^x_j - mu^x_i < m for every pair i < j.
    H0_g: not H1_g (y never rises beyond m, or x rises by m or more somewhere).

The test is an intersection-union test, so its size is at most alpha with no correction inside a game:

- y rises: per pair, the one-sided contrast of H0: mu_j - mu_i <= m; Bonferroni over the
  K(K-1)/2 pairs: p_rise = min(1, pairs x the smallest p).
- x does not: per pair, the one-sided contrast of H0: mu_j - mu_i >= m; p_no_rise = the largest p.
- p_g = max(p_rise, p_no_rise).

Seeds are the unit. Within a mode and game, a seed's sizes share its batch order, so contrasts are
paired by seed (one-sample t on per-seed differences, n - 1 dof) when every size has the same seeds,
else Welch's (`scaleworld.analysis.contrasts`). A noisier or steeper y with a falling curve cannot
make the test reject: it needs a rise beyond m in y shown, and no rise of m in x shown.

Across games: Benjamini-Hochberg over the tested games (``p_bh``); a game is *stabilised* where
p_bh <= alpha. The study-wide statement "joint stabilises scaling in at least one game" is Simes'
test of the global null (no game is stabilised): p = the smallest BH-adjusted p, so it rejects
exactly when some game is called stabilised. One joint model per seed plays every game, so the games'
tests are dependent; BH and Simes need them positively dependent, which a shared seed effect gives
(measured under effects shared across games: tools/stats_calibration.py). The counts beside it: the
games whose y curve rises (BH over p_rise) and those whose x curve rises too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scaleworld.analysis.contrasts import contrasts, p_above, p_below
from scaleworld.analysis.statistics import benjamini_hochberg
from scaleworld.errors import ScaleworldError

Curves = Mapping[str, Mapping[str, Mapping[int, float]]]
"""curves[game][size][seed] -> held-out NLL."""

HYPOTHESES = ("H1 per game: the {y} curve rises by more than {m} nats somewhere (a larger size worse than a smaller "
              "one) and the {x} curve rises by less than {m} nats everywhere; intersection-union test, BH across "
              "games; overall: Simes' test of 'no game stabilised'")
"""The one line the report prints beside the result (format with x, y, m)."""

MIN_SEEDS, MIN_SIZES = 2, 3


def _curve(per_size: Mapping[str, Mapping[int, float]], sizes: list[str]) -> tuple[list[np.ndarray], bool]:
    """Per size its seed values (seed order) and whether every size has the same seeds (pairing)."""
    seed_sets = [tuple(sorted(per_size[s])) for s in sizes]
    values = [np.array([per_size[s][seed] for seed in seeds], dtype=float) for s, seeds in zip(sizes, seed_sets)]
    return values, len(set(seed_sets)) == 1


def _pair_p(values: list[np.ndarray], paired: bool, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Over pairs i < j (row j, column i): p of 'rises beyond margin' and of 'stays below margin'."""
    diff, se, dof = contrasts(values, paired_by_seed=paired)
    below = np.tril_indices(len(values), -1)  # (j, i) with j > i: the larger size minus the smaller
    return p_above(diff, se, dof, margin)[below], p_below(diff, se, dof, margin)[below]


def game_test(x: Mapping[str, Mapping[int, float]], y: Mapping[str, Mapping[int, float]], *,
              sizes: Sequence[str], margin: float) -> dict[str, Any]:
    """One game's intersection-union test (module docstring); sizes in order, smallest first."""
    xs, x_paired = _curve(x, list(sizes))
    ys, y_paired = _curve(y, list(sizes))
    if not all(np.all(np.isfinite(v)) for v in xs + ys):
        raise ScaleworldError("NaN or infinite NLL in the curves; drop or redo the failed runs")
    y_rise, _ = _pair_p(ys, y_paired, margin)
    x_rise, x_below = _pair_p(xs, x_paired, margin)
    p_rise = min(1.0, y_rise.size * float(y_rise.min()))
    p_no_rise = float(x_below.max())
    return {"p": max(p_rise, p_no_rise), "p_rise": p_rise, "p_no_rise": p_no_rise,
            "p_x_rise": min(1.0, x_rise.size * float(x_rise.min())),
            "rise_y": _largest_rise(ys), "rise_x": _largest_rise(xs),
            "seeds_x": min(v.size for v in xs), "seeds_y": min(v.size for v in ys),
            "paired": {"x": x_paired, "y": y_paired}}


def _largest_rise(values: list[np.ndarray]) -> float:
    """max over i < j of m_j - m_i (0 when the curve never rises): the effect the test is about."""
    means = np.array([v.mean() for v in values])
    return float(max((means[None, :] - means[:, None])[np.triu_indices(means.size, 1)].max(), 0.0))


def stabilisation(x: Curves, y: Curves, *, order: Sequence[str], margin: float, alpha: float) -> dict[str, Any]:
    """"x stabilises y" over the games and sizes (in `order`) both have: {games: {g: game_test + p_bh,
    stabilised}, left_out: {g: why}, overall: {p, stabilised, rising, x_rises_too, games} or None,
    sizes, margin, alpha}. A game is left out (and so named) with fewer than 3 shared sizes or a size
    with fewer than 2 seeds in either mode."""
    per_game: dict[str, dict[str, Any]] = {}
    left_out: dict[str, str] = {}
    sizes_used: set[str] = set()
    for game in sorted(set(x) | set(y)):
        if game not in x or game not in y:
            left_out[game] = f"untested: only in {'x' if game in x else 'y'}"
            continue
        sizes = [s for s in order if s in x[game] and s in y[game]]
        fewest = min((len(m[game][s]) for m in (x, y) for s in sizes), default=0)
        if len(sizes) < MIN_SIZES or fewest < MIN_SEEDS:
            left_out[game] = (f"untested: needs >= {MIN_SIZES} sizes with >= {MIN_SEEDS} seeds in both modes "
                              f"(has {len(sizes)} sizes, fewest seeds {fewest})")
            continue
        try:
            per_game[game] = game_test(x[game], y[game], sizes=sizes, margin=margin)
        except ScaleworldError as exc:
            raise ScaleworldError(f"{game}: {exc}") from None
        sizes_used |= set(sizes)
    games = sorted(per_game)
    adjusted = benjamini_hochberg([per_game[g]["p"] for g in games])
    rising = benjamini_hochberg([per_game[g]["p_rise"] for g in games])
    x_rising = benjamini_hochberg([per_game[g]["p_x_rise"] for g in games])
    for game, q, r, xr in zip(games, adjusted, rising, x_rising):
        per_game[game].update(p_bh=float(q), stabilised=bool(q <= alpha), y_rises=bool(r <= alpha),
                              x_rises=bool(xr <= alpha))
    overall = None
    if games:
        rises = [g for g in games if per_game[g]["y_rises"]]
        overall = {"p": float(min(adjusted)), "games": len(games),
                   "stabilised": [g for g in games if per_game[g]["stabilised"]], "y_rises": rises,
                   "x_rises_too": [g for g in rises if per_game[g]["x_rises"]]}
    return {"games": per_game, "left_out": left_out, "overall": overall,
            "sizes": [s for s in order if s in sizes_used], "margin": margin, "alpha": alpha}


STABILISATION_PAIRS = (("joint", "single"), ("joint", "matched"))
"""(x, y): "x stabilises y" is tested where a study has both modes."""


def interaction_tests(curves: Mapping[str, Curves], *, order: Sequence[str], margin: float,
                      alpha: float) -> dict[str, Any]:
    """`stabilisation` for every pair of `STABILISATION_PAIRS` the study has; curves[mode][game][size][seed]."""
    return {f"{x}_stabilises_{y}": stabilisation(curves[x], curves[y], order=order, margin=margin, alpha=alpha)
            for x, y in STABILISATION_PAIRS if x in curves and y in curves}
