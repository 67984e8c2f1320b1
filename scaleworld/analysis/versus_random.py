"""Control evidence: does a policy trained in imagination play the real game better than random,
and how far does its return in imagination run ahead of its return in the real game?

Per trained policy (one world-model seed x one policy trial = one run) the test compares the run's
real-game episode returns with the random anchor's episodes of the same game and protocol:

    difference   mean(policy returns) - mean(random returns), raw game score per episode
    interval     Welch's t interval of that difference at `confidence` (two-sided)
    p            Welch's one-sided t test, H0: the policy's expected return <= random's,
                 H1: greater. Both sides are independent episodes (the policy fixed: the test is
                 about this trained policy, not about the training procedure). When both sides have
                 zero variance, p = 0 if the difference is positive, else 1.
                 Welch's t is exact for normal returns and close for discrete or right-skewed
                 ones (tests/test_control_evidence.py: 3.5-5% rejections at a nominal 5%); for
                 left-skewed policy returns (rare large losses) it is liberal: 10% at a nominal
                 5% with 16 exponential-tailed episodes against 30, 9% with 30 (measured).

Per (mode, size, game) cell, over its runs (seeds x trials, which share the random episodes, so
are not independent): the cell's p is its best run's after Holm's correction over the cell's runs,
p_holm = min(1, runs x min p); Holm controls the family-wise error under any dependence.
`runs_beating` counts runs with p <= alpha uncorrected.

Across the table: the family is every tested cell (games x sizes x modes; `family_summary` states
it), and Benjamini-Hochberg over the cells' p_holm gives ``p_bh``; a cell *beats random* when
p_bh <= alpha. BH controls the false discovery rate over the table, and when no policy beats random
it holds the chance of any "beats random" at alpha (Holm within cells alone let at least one of 26
games "beat random" in 70% of such studies; with BH across the table, at most alpha: measured in
tools/stats_calibration.py). The cells of a game share its random episodes, a positive dependence
under which BH holds.

The exploitation diagnostic, on one scale: reward per agent step. In imagination it is the mean
imagined reward per step over the final update's rollouts (batch x horizon steps, starting from
real contexts mid-episode); in the real game, total return / total agent steps over the run's
episodes. gap = imagined - real: a policy that learned the model's errors shows a large positive
gap while its real score stays at random's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from scaleworld.analysis.statistics import benjamini_hochberg
from scaleworld.errors import ScaleworldError


def welch_greater(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
    """Welch's comparison of mean(x) - mean(y): the difference, its two-sided interval at
    `confidence` and the one-sided p for mean(x) > mean(y) (module docstring)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.size < 2 or b.size < 2:
        raise ScaleworldError(f"a Welch test needs 2+ episodes a side, got {a.size} and {b.size}: score more episodes")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return {"difference": diff, "lo": diff, "hi": diff, "p": 0.0 if diff > 0 else 1.0, "df": float("inf")}
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return {"difference": diff, "lo": diff - half, "hi": diff + half, "p": float(stats.t.sf(diff / se, df)),
            "df": float(df)}


def per_step(returns: Sequence[float], lengths: Sequence[int]) -> float:
    """Reward per agent step over whole episodes: total return / total agent steps."""
    steps = int(np.sum(lengths))
    return float(np.sum(returns)) / steps if steps else float("nan")


UNTESTED = {"difference": None, "lo": None, "hi": None, "p": None, "df": None}
"""A run with fewer than 2 episodes on a side: no variance, so no test (its score is still shown)."""


def run_evidence(run: dict[str, Any], *, confidence: float) -> dict[str, Any]:
    """One run's test and diagnostic; `run` has returns, lengths, random_returns, imagined_reward."""
    testable = min(len(run["returns"]), len(run["random_returns"])) >= 2
    test = welch_greater(run["returns"], run["random_returns"], confidence=confidence) if testable else UNTESTED
    real = per_step(run["returns"], run["lengths"])
    imagined = run.get("imagined_reward")
    return {"seed": run["seed"], "trial": run["trial"], "score": float(np.mean(run["returns"])),
            "episodes": len(run["returns"]), **test, "real_reward_per_step": real,
            "imagined_reward_per_step": imagined, "gap_per_step": None if imagined is None else imagined - real}


def control_evidence(runs: list[dict[str, Any]], *, alpha: float, confidence: float = 0.95) -> dict[str, Any]:
    """evidence[mode][size][game] = {random: {score, sem, episodes}, runs: [run_evidence ...], score:
    mean over runs, runs_beating, p_holm: min(1, tested runs x min p), p_bh: BH over every tested
    cell of the table, beats_random: p_bh <= alpha (the three None when no run has 2+ episodes a side),
    real/imagined_reward_per_step and gap_per_step: means over runs (None where a run lacks the
    imagined reward)}. `runs` are rows with mode(s), size, game, seed, trial, returns, lengths,
    random_returns and imagined_reward (None if unknown)."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        for mode in run["modes"]:
            cells.setdefault((mode, run["size"], run["game"]), []).append(run)
    out: dict[str, Any] = {}
    for (mode, size, game), rows in sorted(cells.items()):
        rows = sorted(rows, key=lambda r: (r["seed"], r["trial"]))
        tested = [run_evidence(r, confidence=confidence) for r in rows]
        rand = np.asarray(rows[0]["random_returns"], float)
        ps = [t["p"] for t in tested if t["p"] is not None]
        p_holm = min(1.0, len(ps) * min(ps)) if ps else None
        imagined = [t["imagined_reward_per_step"] for t in tested]
        known = all(v is not None for v in imagined)
        out.setdefault(mode, {}).setdefault(size, {})[game] = {
            "random": {"score": float(rand.mean()), "sem": float(rand.std(ddof=1) / math.sqrt(rand.size)),
                       "episodes": int(rand.size)},
            "runs": tested, "score": float(np.mean([t["score"] for t in tested])),
            "runs_beating": sum(p <= alpha for p in ps), "p_holm": p_holm, "p_bh": None, "beats_random": None,
            "alpha": alpha, "real_reward_per_step": float(np.mean([t["real_reward_per_step"] for t in tested])),
            "imagined_reward_per_step": float(np.mean(imagined)) if known else None,
            "gap_per_step": float(np.mean([t["gap_per_step"] for t in tested])) if known else None}
    cells = [cell for sizes in out.values() for games in sizes.values() for cell in games.values()
             if cell["p_holm"] is not None]
    for cell, q in zip(cells, benjamini_hochberg([cell["p_holm"] for cell in cells])):
        cell["p_bh"] = float(q)
        cell["beats_random"] = bool(q <= alpha)
    return out


def family_summary(evidence: dict[str, Any], *, alpha: float) -> dict[str, Any]:
    """The multiplicity statement of the table: {cells: tested cells, the modes, sizes and games they
    span (counts: cells can be fewer than their product),
    correction, alpha, games_beating: {mode: {size: [games]}}, any_games: the games with a cell that
    beats random}."""
    beating: dict[str, dict[str, list[str]]] = {}
    games, sizes, modes, cells = set(), set(), set(), 0
    for mode, per_size in evidence.items():
        for size, per_game in per_size.items():
            for game, cell in per_game.items():
                if cell["p_bh"] is None:
                    continue
                cells += 1
                games.add(game)
                sizes.add(size)
                modes.add(mode)
                if cell["beats_random"]:
                    beating.setdefault(mode, {}).setdefault(size, []).append(game)
    return {"cells": cells, "modes": len(modes), "sizes": len(sizes), "games": len(games), "alpha": alpha,
            "correction": "Holm over a cell's runs, then Benjamini-Hochberg over every tested cell",
            "games_beating": {m: {s: sorted(g) for s, g in per.items()} for m, per in beating.items()},
            "any_games": sorted({g for per in beating.values() for gs in per.values() for g in gs})}
