"""`scaleworld report --csv F`: the report's per-run numbers as CSV (--json writes everything else too)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

NLL_COLUMNS = ("variant", "mode", "game", "size", "params", "seed", "reading", "step", "nll_nats_per_frame", "job",
               "dynamics_job")
"""One row per (variant, mode, game, size, seed, reading): reading final (the last checkpoint) or best
(the validation split's best, at its step); job: the fidelity job, dynamics_job: the model's folder name
under dynamics/. It joins the control rows on (variant, mode, game, size, seed)."""
CONTROL_COLUMNS = ("variant", "mode", "game", "size", "seed", "trial", "score", "normalised", "upper_kind", "job")


def control_csv_path(out: str | Path) -> Path:
    """The control scores go next to the NLL file (F.csv -> F_control.csv): their rows have other columns."""
    out = Path(out)
    return out.with_name(f"{out.stem}_control{out.suffix or '.csv'}")


def write_csv(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Every held-out NLL reading (`NLL_COLUMNS`) into `out`, and, once control jobs have finished,
    every control run's raw and normalised score into `control_csv_path(out)`; returns the files written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, NLL_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(results["nll"], key=lambda r: (r["variant"], r["mode"], r["game"], r["params"],
                                                                r["size"], r["seed"], r["reading"])))
    written = [out]
    runs = results["control"]["runs"]
    if runs:
        path = control_csv_path(out)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CONTROL_COLUMNS)
            # One row per (variant, mode) a run counts in, as the per-game means and the analysis count it.
            rows = [[variant, mode, r["game"], r["size"], r["seed"], r["trial"], r["score"], r["normalised"],
                     r["upper_kind"], r["id"]] for r in runs for variant in r["variants"] for mode in r["modes"]]
            writer.writerows(sorted(rows, key=lambda row: row[:6]))
        written.append(path)
    return written
