"""`scaleworld report RUN_ROOT`: what a study found so far, read from its job folders.

Sections: settings, scaling regimes per (mode, game) with the rule's evidence, scaling curves as
sparklines of mean held-out NLL over sizes, single vs joint at each size, and failed or missing
jobs. Works on partial run roots (it says what is missing). Off a terminal it prints plain ASCII.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from scaleworld.study.graph import KINDS
from scaleworld.study.store import RunStore

BARS = "▁▂▃▄▅▆▇█"
ASCII_BARS = "_.-=+*#@"


def collect_results(root: str | Path) -> dict[str, Any]:
    """Every number the report shows, as plain data (also what --json writes)."""
    store = RunStore(Path(root))
    graph = store.read_plan()
    curves: dict[str, dict[str, dict[str, Any]]] = {}  # mode -> game -> size -> {params, nll per seed}
    for fjob in graph.by_kind("fidelity"):
        if not store.is_done(fjob):
            continue
        record = json.loads((store.job_dir(fjob) / "fidelity.json").read_text())
        dynamics = next(graph.jobs[i] for i in fjob.inputs if graph.jobs[i].kind == "dynamics")
        params = store.outputs(dynamics)["params"]["total"]
        for mode in fjob.labels["modes"]:
            for game, r in record["games"].items():
                per_size = curves.setdefault(mode, {}).setdefault(game, {})
                per_size.setdefault(fjob.labels["size"], {"params": params, "nll": []})["nll"].append(
                    r["nll_nats_per_frame"])
    regimes = {}
    for ajob in graph.by_kind("analysis"):
        if store.is_done(ajob):
            regimes[ajob.labels.get("variant", "base")] = json.loads(
                (store.job_dir(ajob) / "analysis.json").read_text())
    states = {kind: {} for kind in KINDS}
    problems = []
    for job in graph.jobs.values():
        state = store.state(job)
        states[job.kind][state] = states[job.kind].get(state, 0) + 1
        if state == "failed":
            problems.append({"kind": job.kind, "labels": job.labels, "reason": store.failure(job)})
    spec = (store.root / "spec.yaml").read_text() if (store.root / "spec.yaml").is_file() else ""
    return {"root": str(store.root), "curves": curves, "regimes": regimes,
            "jobs": {k: v for k, v in states.items() if v}, "failed": problems, "spec": spec}


def _sparkline(values: list[float], bars: str) -> str:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return bars[0] * len(values)
    return "".join(bars[round((v - lo) / (hi - lo) * (len(bars) - 1))] for v in values)


def render(results: dict[str, Any], console: Any) -> None:
    from rich import box
    from rich.table import Table

    plain = not console.is_terminal
    style = box.ASCII if plain else box.SIMPLE_HEAVY
    bars = ASCII_BARS if plain else BARS
    console.print(f"scaleworld report: {results['root']}")

    jobs = Table(title="jobs", box=style)
    for col in ("kind", "done", "running", "failed", "pending"):
        jobs.add_column(col)
    for kind, counts in results["jobs"].items():
        jobs.add_row(kind, *(str(counts.get(s, 0)) for s in ("done", "running", "failed", "pending")))
    console.print(jobs)
    missing = sum(c.get("pending", 0) + c.get("running", 0) for c in results["jobs"].values())
    if missing:
        console.print(f"partial results: {missing} jobs not finished; the numbers below use what is done")

    for variant, analysis in results["regimes"].items():
        rule = analysis["rule"]
        table = Table(title=f"scaling regimes ({variant}; rule {rule['version']}: alpha={rule['alpha']}, "
                            f"delta={rule['delta']}, min sizes {rule['min_sizes']}, min seeds {rule['min_seeds']})",
                      box=style)
        for col in ("mode", "game", "regime", "best size (params)", "evidence"):
            table.add_column(col)
        for mode, games in analysis["modes"].items():
            for game, r in games.items():
                table.add_row(mode, game, r["regime"], f"{r['best_params']:,.0f}", r["reason"])
        console.print(table)
    if not results["regimes"]:
        console.print("scaling regimes: missing (the analysis job has not finished)")

    curves = Table(title="scaling curves: mean held-out NLL (nats/frame) from the smallest to the largest size",
                   box=style)
    for col in ("mode", "game", "curve", "NLL per size", "seeds"):
        curves.add_column(col)
    for mode, games in sorted(results["curves"].items()):
        for game, sizes in sorted(games.items()):
            ordered = sorted(sizes.values(), key=lambda s: s["params"])
            means = [statistics.fmean(s["nll"]) for s in ordered]
            curves.add_row(mode, game, _sparkline(means, bars), " ".join(f"{m:.3f}" for m in means),
                           "/".join(str(len(s["nll"])) for s in ordered))
    console.print(curves)

    single, joint = results["curves"].get("single", {}), results["curves"].get("joint", {})
    if single and joint:
        table = Table(title="single vs joint: mean held-out NLL per size (lower is better)", box=style)
        for col in ("game", "size", "single", "joint", "joint - single"):
            table.add_column(col)
        for game in sorted(set(single) & set(joint)):
            for size in sorted(set(single[game]) & set(joint[game]), key=lambda n: single[game][n]["params"]):
                s, j = statistics.fmean(single[game][size]["nll"]), statistics.fmean(joint[game][size]["nll"])
                table.add_row(game, size, f"{s:.3f}", f"{j:.3f}", f"{j - s:+.3f}")
        console.print(table)

    for problem in results["failed"]:
        what = " ".join(f"{k}={v}" for k, v in problem["labels"].items() if k != "variants")
        console.print(f"failed {problem['kind']} {what}: {problem['reason']}")
    console.print("normalised scores: not yet measured (policies trained in imagination arrive with issue 5)")
