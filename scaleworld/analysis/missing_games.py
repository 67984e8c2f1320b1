"""What the study's missing games could change: each summary over games the report leads with,
bounded over every value the missing games could take.

An analysis of what finished (`scaleworld.study.kinds.analysis`) lacks some games in some modes.
Rather than guess their results, this bounds what they could do: the median and the IQM of game
means are non-decreasing in every game's value, so their smallest and largest possible values over
the full set of games are reached with every missing game below all the others, and above all of
them (written here as -inf and +inf; a bound that stays infinite is unbounded: the missing games
could move the statistic anywhere). A regime count can gain at most one per missing game. A
conclusion holds whatever the missing games show when its bounds do not overlap: "joint's median
above single's" stands if joint's lowest possible median is above single's highest.

Definitions as `scaleworld.analysis.statistics` and `summary.score_summary` compute them: median of
game means, and IQM of game means (scipy.stats.trim_mean(x, 0.25): floor(n / 4) dropped each side).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

STATISTICS = ("median", "iqm_of_game_means")  # the aggregates of game means the bounds are given for


def _statistic(name: str, values: np.ndarray) -> float:
    x = np.sort(values)
    if name == "median":
        n = len(x)
        middle = x[(n - 1) // 2: n // 2 + 1]  # one value (n odd) or the two middle ones
        return float(middle[0]) if middle[0] == middle[-1] else float(middle.mean())
    cut = len(x) // 4  # IQM: as scipy.stats.trim_mean(x, 0.25)
    return float(x[cut: len(x) - cut].mean())


def bounds(name: str, present: list[float], missing: int) -> tuple[float, float]:
    """The statistic over `present` plus `missing` games whose values could be anything:
    (lowest, highest); +-inf where unbounded."""
    values = np.asarray(present, dtype=float)
    low = _statistic(name, np.concatenate([values, np.full(missing, -np.inf)]))
    high = _statistic(name, np.concatenate([values, np.full(missing, np.inf)]))
    return low, high


def score_bounds(aggregates: dict[str, dict[str, Any]], games: list[str]) -> list[dict[str, Any]]:
    """Per (mode, size) with a game missing: each statistic's observed value (on the games present),
    its bounds, and the games it lacks. `aggregates`: score_summary's [mode][size] rows."""
    out = []
    for mode, sizes in sorted(aggregates.items()):
        for size, row in sorted(sizes.items()):
            lacking = sorted(set(games) - set(row["games"]))
            if not lacking:
                continue
            present = list(row["games"].values())
            for name in STATISTICS:
                low, high = bounds(name, present, len(lacking))
                out.append({"mode": mode, "size": size, "statistic": name,
                            "observed": _statistic(name, np.asarray(present, dtype=float)),
                            "low": low, "high": high, "games_present": len(present), "missing": lacking})
    return out


def order_changes(rows: list[dict[str, Any]], aggregates: dict[str, dict[str, Any]],
                  games: list[str]) -> list[dict[str, Any]]:
    """Every comparison between two modes at one size (each statistic) whose observed order the missing
    games could reverse: {size, statistic, higher, lower, observed: [higher's, lower's]}."""
    found = {(r["mode"], r["size"], r["statistic"]): r for r in rows}
    changes = []
    for size in sorted({s for sizes in aggregates.values() for s in sizes}):
        modes = sorted(m for m in aggregates if size in aggregates[m])
        for a, b in combinations(modes, 2):
            for name in STATISTICS:
                ra, rb = (found.get((m, size, name)) or _complete(m, aggregates[m][size], name) for m in (a, b))
                hi, lo = (ra, rb) if ra["observed"] >= rb["observed"] else (rb, ra)
                if (hi["missing"] or lo["missing"]) and hi["low"] <= lo["high"]:
                    changes.append({"size": size, "statistic": name, "higher": hi["mode"], "lower": lo["mode"],
                                    "observed": [hi["observed"], lo["observed"]]})
    return changes


def _complete(mode: str, row: dict[str, Any], name: str) -> dict[str, Any]:
    """A (mode, size) with every game: its bounds are its value."""
    value = _statistic(name, np.asarray(list(row["games"].values()), dtype=float))
    return {"mode": mode, "observed": value, "low": value, "high": value, "missing": []}


def regime_bounds(modes: dict[str, dict[str, Any]], games: list[str]) -> list[dict[str, Any]]:
    """Per mode with a game missing: each regime's count on the games present; each could gain one per
    missing game. `modes`: analysis.json ``modes`` ([mode][game] -> {regime, ...})."""
    out = []
    for mode, by_game in sorted(modes.items()):
        lacking = sorted(set(games) - set(by_game))
        if lacking:
            counts: dict[str, int] = {}
            for cell in by_game.values():
                counts[cell["regime"]] = counts.get(cell["regime"], 0) + 1
            out.append({"mode": mode, "counts": dict(sorted(counts.items())), "games_present": len(by_game),
                        "missing": lacking})
    return out


def what_missing_games_could_change(record: dict[str, Any], games: list[str]) -> dict[str, Any]:
    """analysis.json ``missing.could_change``: the bounds above for the record's scores and regimes,
    given the study's `games` (those its analysis would have read)."""
    aggregates = record.get("scores", {}).get("aggregates", {})
    scores = score_bounds(aggregates, games)
    for row in scores:
        for key in ("low", "high"):
            row[key] = row[key] if np.isfinite(row[key]) else None  # None: unbounded (JSON has no inf)
    return {"scores": scores, "order": order_changes(_with_inf(scores), aggregates, games),
            "regimes": regime_bounds(record.get("modes", {}), games)}


def _with_inf(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "low": -np.inf if r["low"] is None else r["low"],
             "high": np.inf if r["high"] is None else r["high"]} for r in rows]
