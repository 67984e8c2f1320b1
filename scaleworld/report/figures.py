"""`scaleworld report --figures DIR`: PNGs of the scaling curves and of the aggregate normalised
control scores with their intervals (matplotlib, headless Agg), and per game the frame grids of
`frames.py` (real frames, reconstructions, open-loop imagination)."""

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
    """One grid of per-game scaling curves (a line per mode, seed bands, regime labels), a
    single-vs-joint panel, the aggregate scores' intervals and the per-game frame grids; returns the
    files written."""
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
    path = _aggregate_scores(results, out, plt)
    from scaleworld.report.frames import write_frame_grids

    return written + ([path] if path else []) + write_frame_grids(results["root"], out)


def _aggregate_scores(results: dict[str, Any], out: Path, plt: Any) -> Path | None:
    """Median, IQM and mean normalised score per mode and size, as points with their bootstrap
    intervals: a row of panels per variant whose analysis has control scores (None if none has)."""
    from scaleworld.report.sections import size_key

    variants = {v: a["scores"]["aggregates"] for v, a in results["regimes"].items()
                if a.get("scores", {}).get("aggregates")}
    if not variants:
        return None
    order = size_key(results["size_params"])
    stats = (("median", "median"), ("iqm", "IQM"), ("mean", "mean"))
    # One y scale per row: the three aggregates of a variant are compared with each other.
    fig, axes = plt.subplots(len(variants), len(stats), figsize=(4.5 * len(stats), 3.2 * len(variants)),
                             squeeze=False, sharey="row")
    for row, (variant, aggregates) in zip(axes, variants.items()):
        modes = sorted(aggregates)
        sizes = sorted({s for per_size in aggregates.values() for s in per_size}, key=order)
        for ax, (key, label) in zip(row, stats):
            for k, mode in enumerate(modes):
                # Modes side by side around each size's position, so their intervals do not overlap.
                shift = (k - (len(modes) - 1) / 2) * 0.8 / max(len(modes), 1)
                present = [(i, aggregates[mode][s][key]) for i, s in enumerate(sizes) if s in aggregates[mode]
                           and aggregates[mode][s][key]["point"] is not None]
                if not present:
                    continue
                cis = [ci for _, ci in present]
                ax.errorbar([i + shift for i, _ in present], [ci["point"] for ci in cis], yerr=_error_bars(cis),
                            fmt="o", capsize=3, label=mode)
            ax.axhline(0.0, color="grey", linewidth=0.8)  # the random policy's score
            ax.set_xticks(range(len(sizes)), sizes, rotation=30, fontsize=7)
            ax.set_xlabel("model size")
            ax.set_title(label + ("" if len(variants) == 1 else f" ({variant})"), fontsize=9)
            ax.legend(fontsize=7)
        row[0].set_ylabel("normalised score (95% CI)")
    fig.tight_layout()
    path = out / "aggregate_scores.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _error_bars(cis: list[dict[str, float | None]]) -> list[list[float]]:
    """Lengths below and above each point; none where the analysis wrote a null (NaN) bound."""
    return [[c["point"] - c["lo"] if c["lo"] is not None else 0.0 for c in cis],
            [c["hi"] - c["point"] if c["hi"] is not None else 0.0 for c in cis]]
