"""Real-game control scores as the report sees them: read from the finished `control` jobs.

The analysis job aggregates these scores over games, but only once every control job is done; the
report reads the jobs themselves so that per-game scores show up (in --json and --csv) as soon as
each job finishes, and so that every number behind an aggregate is exported.
"""

from __future__ import annotations

import statistics
from typing import Any

from scaleworld.study.graph import Graph
from scaleworld.study.results import control_rows
from scaleworld.study.store import RunStore


def collect_control(store: RunStore, graph: Graph, *, damaged: list[str] | None = None) -> dict[str, Any]:
    """{"jobs": {"done", "total"}, "runs": [one row per finished control job],
    "games": {variant: {mode: {size: {game: {"runs", "score", "normalised", "upper_kind"}}}}}}.

    `score` is the raw mean return over the job's episodes and `normalised` its expert/human-random
    normalised mean; per game they are averaged over runs (world-model seeds x policy trials)."""
    jobs = graph.by_kind("control")
    runs = control_rows(store, jobs, damaged=damaged)
    # A control job shared by several variants or modes counts in each of them, as in the analysis.
    grouped: dict[str, dict[str, dict[str, dict[str, list[dict[str, Any]]]]]] = {}
    for run in runs:
        for variant in run["variants"]:
            for mode in run["modes"]:
                grouped.setdefault(variant, {}).setdefault(mode, {}).setdefault(run["size"], {}).setdefault(
                    run["game"], []).append(run)
    games = {
        variant: {mode: {size: {game: _mean_of(rows) for game, rows in sorted(per_game.items())}
                         for size, per_game in sizes.items()} for mode, sizes in sorted(modes.items())}
        for variant, modes in grouped.items()}
    return {"jobs": {"done": len(runs), "total": len(jobs)}, "runs": runs, "games": games}


def _mean_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    normalised = [r["normalised"] for r in rows if r["normalised"] is not None]  # null: not computable
    return {"runs": len(rows), "score": statistics.fmean(r["score"] for r in rows),
            "normalised": statistics.fmean(normalised) if normalised else None,
            "upper_kind": ", ".join(sorted({r["upper_kind"] for r in rows}))}


def upper_kinds(games: dict[str, dict[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """kind -> games normalised against it, from one variant's per-game scores (mode -> size -> game)."""
    kinds: dict[str, set[str]] = {}
    for sizes in games.values():
        for per_game in sizes.values():
            for game, entry in per_game.items():
                for kind in entry["upper_kind"].split(", "):
                    kinds.setdefault(kind, set()).add(game)
    return {kind: sorted(names) for kind, names in sorted(kinds.items())}
