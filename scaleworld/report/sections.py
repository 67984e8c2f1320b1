"""The report's sections for what `analysis.json` adds to the regimes: scaling-law fits, the
matched-vs-joint paired test, aggregate normalised control scores and P(improvement).

Each section takes one analysis (one variant) and says so when its numbers are missing, rather than
failing: an analysis.json written before a section existed simply lacks its key. Intervals print as
"point [lo, hi]"; they are 95% percentile bootstrap intervals (the analysis functions' default
confidence; analysis.json records the reps and seed, shown in the settings line).
"""

from __future__ import annotations

import math
from typing import Any

from scaleworld.report.control import upper_kinds

AGGREGATE_COLUMNS = (("median", "median"), ("iqm", "IQM"), ("mean", "mean"), ("optimality_gap", "optimality gap"))
COMPARISONS = (("joint_vs_single", "joint vs single"), ("joint_vs_matched", "joint vs matched"),
               ("matched_vs_single", "matched vs single"), ("joint_vs_joint_short", "joint vs joint_short"),
               ("joint_short_vs_single", "joint_short vs single"))
"""Columns of the P(improvement) tables; the last two only where the study has a joint_short mode."""


def interval_text(ci: dict[str, float | None] | None, sep: str = " ") -> str:
    """"point [lo, hi]" with 3 decimals; "n/a" where the analysis wrote null (NaN)."""
    if not ci or ci.get("point") is None:
        return "n/a"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return f"{num(ci['point'])}{sep}[{num(ci.get('lo'))}, {num(ci.get('hi'))}]"


def size_key(size_params: dict[str, int]) -> Any:
    """Sizes in order of parameters (names sort paper-d12 before paper-d2); unknown sizes last."""
    return lambda size: (size_params.get(size, math.inf), size)


def render_settings(variant: str, analysis: dict[str, Any], console: Any) -> None:
    boot = analysis.get("bootstrap")
    if boot:
        console.print(f"settings ({variant}): bootstrap {boot['reps']} reps, seed {boot['seed']}; "
                      "intervals are 95% percentile bootstrap intervals")


def render_controls(variant: str, analysis: dict[str, Any], console: Any) -> None:
    """One line per control mode: what it holds equal to the joint run (analysis.json ``controls``)."""
    for mode, held in analysis.get("controls", {}).items():
        console.print(f"control {mode} ({variant}) holds equal: {held}")


def render_fits(variant: str, analysis: dict[str, Any], console: Any, style: Any) -> None:
    from rich.table import Table

    fits = analysis.get("fits")
    if fits is None:
        console.print(f"scaling-law fits ({variant}): not in this analysis.json (written before fits existed)")
        return
    table = Table(title=f"scaling-law fits ({variant}): held-out NLL = E + A / N^alpha; held-out error: the "
                        "largest size predicted from the rest", box=style)
    for col in ("mode", "game", "alpha [95% CI]", "E [95% CI]", "held-out error", "no fit because"):
        table.add_column(col)
    for mode, games in sorted(fits.items()):
        for game, f in sorted(games.items()):
            if f["fit"] is None:
                table.add_row(mode, game, "-", "-", "-", f["reason"])
                continue
            held = f.get("held_out")
            table.add_row(mode, game, interval_text(f["alpha_ci"]), interval_text(f["E_ci"]),
                          "-" if held is None else f"{held['relative_error']:+.1%}", f.get("reason") or "")
    console.print(table)


def render_paired(variant: str, analysis: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    from rich.table import Table

    paired = analysis.get("matched_vs_joint")
    if paired is None:
        console.print(f"matched vs joint ({variant}): not in this analysis.json (written before the paired test)")
        return
    if not paired:
        console.print(f"matched vs joint ({variant}): not in this study (it needs the matched and joint modes)")
        return
    table = Table(title=f"matched vs joint ({variant}): held-out NLL, matched - joint (below 0: matched better)",
                  box=style)
    for col in ("size", "games", "mean difference [95% CI]", "Wilcoxon p", "games matched better"):
        table.add_column(col)
    for size in sorted(paired, key=order):
        p = paired[size]
        table.add_row(size, str(len(p["games"])), interval_text(p["mean_difference"]), f"{p['wilcoxon_p']:.3g}",
                      f"{p['games_matched_better']} of {len(p['games'])}")
    console.print(table)


def render_scores(variant: str, analysis: dict[str, Any], control: dict[str, Any], console: Any, style: Any,
                  order: Any) -> None:
    """Aggregates per mode and size, the upper anchor they are normalised by, then P(improvement)."""
    from rich.table import Table

    scores = analysis.get("scores")
    if scores is None:
        console.print(f"normalised control scores ({variant}): not in this analysis.json (written before them)")
        return
    if not scores["aggregates"]:
        console.print(f"normalised control scores ({variant}): not measured (this study trains no policies)")
        return
    table = Table(title=f"normalised control scores ({variant}): aggregates over games, point and [95% CI]",
                  box=style)
    for col in ("mode", "size", "games", "runs", *(label for _, label in AGGREGATE_COLUMNS)):
        table.add_column(col)
    for mode, sizes in sorted(scores["aggregates"].items()):
        for size in sorted(sizes, key=order):
            row = sizes[size]
            table.add_row(mode, size, str(len(row["games"])), str(sum(row["runs"].values())),
                          # Four intervals on one line need ~130 columns; under the point they fit in 120.
                          *(interval_text(row[key], sep="\n") for key, _ in AGGREGATE_COLUMNS))
    console.print(table)
    kinds = upper_kinds(control["games"].get(variant, {}))
    if kinds:  # the upper anchor is a per-game setting of the anchor jobs: say which one each game used
        used = "; ".join(f"{kind} ({', '.join(games)})" for kind, games in kinds.items())
        console.print(f"normalised score = (score - random) / (upper - random); upper anchor: {used}")

    render_improvement(f"P(improvement) ({variant}) of normalised scores", scores.get("improvement", {}), console,
                       style, order)


def render_fidelity_improvement(variant: str, analysis: dict[str, Any], console: Any, style: Any,
                                order: Any) -> None:
    fidelity = analysis.get("fidelity")
    if fidelity is None:
        console.print(f"P(improvement) ({variant}) of held-out NLL: not in this analysis.json (written before it)")
        return
    render_improvement(f"P(improvement) ({variant}) of held-out NLL (lower wins)", fidelity["improvement"],
                       console, style, order)


def render_improvement(title: str, improvement: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    """One row per size: P(x beats y) run against run, mean over games, with its interval."""
    from rich.table import Table

    if not improvement:
        console.print(f"{title}: no two modes measured at the same size")
        return
    table = Table(title=f"{title}: x beats y, run against run, mean over games; 0.5 = no difference", box=style)
    shown = [(key, label) for key, label in COMPARISONS if key in improvement or "joint_short" not in key]
    for col in ("size", *(label for _, label in shown), "games"):
        table.add_column(col)
    for size in sorted({s for per_size in improvement.values() for s in per_size}, key=order):
        cells = [improvement.get(key, {}).get(size) for key, _ in shown]
        games = max((len(c["games"]) for c in cells if c), default=0)
        table.add_row(size, *("-" if c is None else interval_text(c) for c in cells), str(games))
    console.print(table)
