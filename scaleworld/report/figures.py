"""`scaleworld report --figures DIR`: PNGs of the scaling curves (matplotlib, headless)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any


def _band(values: list[float]) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95% band over seeds (zero width with one seed)."""
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def write_figures(results: dict[str, Any], out: str | Path) -> list[Path]:
    """One grid of per-game scaling curves (a line per mode, seed bands, regime labels) and a
    single-vs-joint panel; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    regimes = next(iter(results["regimes"].values()), {}).get("modes", {})
    games = sorted({g for modes in results["curves"].values() for g in modes})
    written = []
    if games:
        cols = min(4, len(games))
        rows = math.ceil(len(games) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, game in zip(axes.flat, games):
            labels = []
            for mode, per_game in sorted(results["curves"].items()):
                if game not in per_game:
                    continue
                sizes = sorted(per_game[game].values(), key=lambda s: s["params"])
                x = [s["params"] for s in sizes]
                mean, lo, hi = zip(*(_band(s["nll"]) for s in sizes))
                ax.plot(x, mean, marker="o", label=mode)
                ax.fill_between(x, lo, hi, alpha=0.2)
                regime = regimes.get(mode, {}).get(game, {}).get("regime")
                if regime:
                    labels.append(f"{mode}: {regime}")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
            ax.set_title(game + ("\n" + "; ".join(labels) if labels else ""), fontsize=8)
            ax.set_xlabel("parameters")
            ax.set_ylabel("held-out NLL (nats/frame)")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(games):]:
            ax.axis("off")
        fig.tight_layout()
        path = out / "scaling_curves.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    single, joint = results["curves"].get("single", {}), results["curves"].get("joint", {})
    shared = sorted(set(single) & set(joint))
    if shared:
        fig, ax = plt.subplots(figsize=(6, 4))
        for game in shared:
            sizes = sorted(set(single[game]) & set(joint[game]), key=lambda n: single[game][n]["params"])
            diff = [statistics.fmean(joint[game][s]["nll"]) - statistics.fmean(single[game][s]["nll"]) for s in sizes]
            ax.plot([single[game][s]["params"] for s in sizes], diff, marker="o", label=game)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (single-game model)")
        ax.set_ylabel("joint - single NLL (below 0: joint better)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "single_vs_joint.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_csv(results: dict[str, Any], out: str | Path) -> Path:
    """Every (mode, game, size, seed index, NLL) as CSV rows."""
    import csv

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
    return out
