"""`scaleworld report --figures DIR`: PNGs of the scaling curves and of the aggregate normalised
control scores with their intervals (matplotlib, headless Agg), and per game the frame grids of
`frames.py` (real frames, reconstructions, open-loop imagination)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

FORMATS = ("png", "pdf", "svg")  # the first is the default
DPI = 150  # raster figures' dots per inch: a page-wide figure stays sharp in print
MODE_STYLE = {"single": ("o", "-"), "joint": ("s", "--"), "matched": ("^", ":"), "joint_short": ("D", "-.")}
"""Marker and line style per mode: curves that coincide (matched = single at smoke scale) stay told apart."""


def _band(values: list[float]) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95% band over seeds, mean +- 1.96 standard errors (zero width
    with one seed); the legend says so (the tables' intervals are the analysis' bootstraps)."""
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def _count(n: float) -> str:
    """A parameter count in a tick's few characters: 52k, 1.2M, 3.1B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}"
    return f"{n:.0f}"


def _grid(n: int) -> tuple[int, int]:
    """(rows, columns) of small multiples for n games: about square, at most 6 across (26 games: 5 x 6)."""
    cols = min(6, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def write_figures(results: dict[str, Any], out: str | Path, *, fmt: str = FORMATS[0], dpi: int = DPI) -> list[Path]:
    """One grid of per-game scaling curves (a line per mode, seed bands, regime labels, size names on
    the parameter axis), the joint - single difference per game, the aggregate scores' intervals and
    the per-game frame grids, as `fmt` files at `dpi`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: use one of {', '.join(FORMATS)}")
    if dpi < 1:
        from scaleworld.errors import ScaleworldError

        raise ScaleworldError(f"--dpi {dpi}: give a positive number of dots per inch, e.g. {DPI}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    regimes = next(iter(results["regimes"].values()), {}).get("modes", {})
    games = sorted({g for modes in results["curves"].values() for g in modes})
    written = []
    if games:
        rows, cols = _grid(len(games))
        fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows + 0.6), squeeze=False)
        for ax, game in zip(axes.flat, games):
            names: set[str] = set()
            labels = []
            for mode, per_game in sorted(results["curves"].items()):
                if game not in per_game:
                    continue
                named = sorted(per_game[game].items(), key=lambda kv: kv[1]["params"])
                x = [s["params"] for _, s in named]
                names.update(name for name, _ in named)
                mean, lo, hi = zip(*(_band(s["nll"]) for _, s in named))
                marker, line = MODE_STYLE.get(mode, ("x", "-"))
                ax.plot(x, mean, marker=marker, linestyle=line, label=mode, markersize=5, fillstyle="none")
                ax.fill_between(x, lo, hi, alpha=0.15)
                regime = regimes.get(mode, {}).get(game, {}).get("regime")
                if regime:
                    labels.append(f"{mode}: {regime}")
            ax.set_xscale("log")
            # a tick per size at its smallest model (a joint model's game embeddings add a few parameters)
            ticks = sorted((results["size_params"][n], n) for n in names if n in results["size_params"])
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([t for t, _ in ticks]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{n}\n{_count(t)}" for t, n in ticks]))
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.tick_params(labelsize=7)
            ax.set_title(game, fontsize=10)
            if labels:  # the regime of each mode, inside the panel: a title this long would run into the next
                regimes_shown = {label.split(": ", 1)[1] for label in labels}
                text = (f"{regimes_shown.pop()} (every mode)" if len(regimes_shown) == 1 and len(labels) > 1
                        else "\n".join(labels))
                ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=6.5, va="bottom", color="0.2",
                        bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5})
        for ax in axes[:, 0]:
            ax.set_ylabel("held-out NLL (nats/frame)", fontsize=8)
        for ax in axes[-1, :]:
            ax.set_xlabel("model size (parameters)", fontsize=8)
        for ax in list(axes.flat)[len(games):]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="upper center", ncol=len(names), fontsize=9, frameon=False,
                   title="band: mean +- 1.96 standard errors over seeds", title_fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (2.8 * rows + 0.6)))
        path = out / f"scaling_curves.{fmt}"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    path = _single_vs_joint(results, out, plt, fmt=fmt, dpi=dpi)
    written += [path] if path else []
    path = _aggregate_scores(results, out, plt, fmt=fmt, dpi=dpi)
    from scaleworld.report.frames import write_frame_grids

    return written + ([path] if path else []) + write_frame_grids(results["root"], out, fmt=fmt, dpi=dpi)


def _single_vs_joint(results: dict[str, Any], out: Path, plt: Any, *, fmt: str, dpi: int) -> Path | None:
    """Per game (a row each, readable at 26), joint - single held-out NLL at each size shared by both,
    mean over seeds with a 95% normal band of the difference of the two means (Welch's standard error)."""
    from scaleworld.report.terminal import single_joint_pairs

    pairs = single_joint_pairs(results["curves"])  # the base study's, else the first variant's
    _, single, joint = pairs[0] if pairs else ("", {}, {})
    shared = sorted(set(single) & set(joint), reverse=True)
    if not shared:
        return None
    sizes = sorted({s for g in shared for s in set(single[g]) & set(joint[g])},
                   key=lambda n: min(single[g][n]["params"] for g in shared if n in single[g]))
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.28 * len(shared)))
    for k, size in enumerate(sizes):
        shift = (k - (len(sizes) - 1) / 2) * 0.6 / max(len(sizes), 1)
        y, diff, err = [], [], []
        for i, game in enumerate(shared):
            if size not in single[game] or size not in joint[game]:
                continue
            a, b = joint[game][size]["nll"], single[game][size]["nll"]
            se = math.sqrt(sum(statistics.variance(v) / len(v) if len(v) > 1 else 0.0 for v in (a, b)))
            y.append(i + shift)
            diff.append(statistics.fmean(a) - statistics.fmean(b))
            err.append(1.96 * se)
        ax.errorbar(diff, y, xerr=err, fmt=MODE_STYLE["joint"][0], capsize=2, markersize=4, label=size)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(shared)), shared, fontsize=7)
    ax.set_xlabel("joint - single held-out NLL (nats/frame; below 0: joint better), mean +- 1.96 SE", fontsize=8)
    ax.legend(title="size", fontsize=7, title_fontsize=7, loc="best")
    fig.tight_layout()
    path = out / f"single_vs_joint.{fmt}"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _aggregate_scores(results: dict[str, Any], out: Path, plt: Any, *, fmt: str, dpi: int) -> Path | None:
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
                            fmt=MODE_STYLE.get(mode, ("x", ""))[0], capsize=3, label=mode)
            ax.axhline(0.0, color="grey", linewidth=0.8)  # the random policy's score
            ax.set_xticks(range(len(sizes)), sizes, rotation=30, fontsize=7)
            ax.set_xlim(-0.6, len(sizes) - 0.4)  # modes sit around their size, not at the panel's edges
            ax.set_xlabel("model size")
            ax.set_title(label + ("" if len(variants) == 1 else f" ({variant})"), fontsize=10)
        row[0].set_ylabel(f"normalised score, 95% CI\n(0: random, 1: {_upper(results, variant)})", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=max(len(names), 1), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path = out / f"aggregate_scores.{fmt}"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _upper(results: dict[str, Any], variant: str) -> str:
    """The upper anchor the scores of `variant` are normalised by (expert, human, or both by game)."""
    from scaleworld.report.control_scores import upper_kinds

    kinds = upper_kinds(results["control"]["games"].get(variant, {}))
    return " / ".join(kinds) if kinds else "upper anchor"


def _error_bars(cis: list[dict[str, float | None]]) -> list[list[float]]:
    """Lengths below and above each point; none where the analysis wrote a null (NaN) bound."""
    return [[c["point"] - c["lo"] if c["lo"] is not None else 0.0 for c in cis],
            [c["hi"] - c["point"] if c["hi"] is not None else 0.0 for c in cis]]
