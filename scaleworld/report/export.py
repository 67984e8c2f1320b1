"""`scaleworld report --csv F`: the report's per-run numbers as CSV (--json writes everything else too)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

CONTROL_COLUMNS = ("variant", "mode", "game", "size", "seed", "trial", "score", "normalised", "upper_kind", "job")


def control_csv_path(out: str | Path) -> Path:
    """The control scores go next to the NLL file (F.csv -> F_control.csv): their rows have other columns."""
    out = Path(out)
    return out.with_name(f"{out.stem}_control{out.suffix or '.csv'}")


def write_csv(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Every (mode, game, size, seed index, NLL) into `out`, and, once control jobs have finished,
    every control run's raw and normalised score into `control_csv_path(out)`; returns the files written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mode", "game", "size", "params", "seed_index", "nll_nats_per_frame"])
        for mode, games in sorted(results["curves"].items()):
            for game, sizes in sorted(games.items()):
                for size, entry in sorted(sizes.items(), key=lambda kv: kv[1]["params"]):
                    for i, nll in enumerate(entry["nll"]):
                        writer.writerow([mode, game, size, entry["params"], i, nll])
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
