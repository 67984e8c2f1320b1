"""`scaleworld report RUN_ROOT`: what a study found so far, read from its job folders.

Sections: jobs, tokenizer quality per game against the gate, the experts' raw scores against the
random policy and the human and PPO references (weak ones flagged), settings, scaling regimes per (mode,
game) with the rule's evidence (at the final and, for runs with a validation split, the best
checkpoints), what each control mode holds equal to the joint run, scaling curves as sparklines
of mean held-out NLL over sizes, every model's NLL against the unigram and copy-last-frame
baselines (those not beating both flagged), open-loop PSNR beside the tokenizer's floor (those two in
`tokenizers.py`), single vs joint at each size, scaling-law fits, the matched-vs-joint paired
test, aggregate normalised control scores with P(improvement) (those four in `sections.py`), and
failed jobs. Works on partial and damaged run roots: it says what is missing, names each damaged
file (that job's results are left out) and shows the rest. Off a terminal it prints plain ASCII.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from scaleworld.report.control_scores import collect_control
from scaleworld.report.sections import (
    render_baselines,
    render_comparison_modes,
    render_experts,
    render_fidelity_improvement,
    render_fits,
    render_interaction,
    render_missing,
    render_paired,
    render_scores,
    render_settings,
    render_versus_random,
    size_key,
)
from scaleworld.report.tokenizers import collect_open_loop, collect_tokenizers, render_open_loop, render_tokenizers
from scaleworld.study.graph import KINDS
from scaleworld.study.kinds import AnalysisStage
from scaleworld.study.results import nll_rows, read_finished
from scaleworld.study.spec import BASE_VARIANT
from scaleworld.study.store import RunStore

BARS = "▁▂▃▄▅▆▇█"
ASCII_BARS = "_.-=+*#@"


def collect_results(root: str | Path) -> dict[str, Any]:
    """Every number the report shows, as plain data (also what --json writes). `regimes` holds each
    variant's whole analysis.json (regimes, fits, paired test, aggregate scores); `control` the
    per-run and per-game control scores read from the control jobs."""
    store = RunStore(Path(root))
    graph = store.read_plan()
    damaged: list[str] = []  # files of finished jobs that cannot be read: those jobs are left out
    curves: dict[str, dict[str, dict[str, Any]]] = {}  # mode -> game -> size -> {params, nll per seed}
    for row in nll_rows(store, graph, graph.by_kind("fidelity"), damaged=damaged):
        per_size = curves.setdefault(row["mode"], {}).setdefault(row["game"], {})
        per_size.setdefault(row["size"], {"params": row["params"], "nll": []})["nll"].append(row["nll"])
    regimes = {}
    for ajob in graph.by_kind("analysis"):
        if store.is_done(ajob):
            analysis = read_finished(store, ajob, AnalysisStage.ARTIFACT, damaged)
            if analysis is not None:
                regimes[ajob.labels.get("variant", BASE_VARIANT)] = analysis
    states = {kind: {} for kind in KINDS}
    problems = []
    job_states = store.states(graph.jobs.values())
    for job in graph.jobs.values():
        state = job_states[job.id]
        states[job.kind][state] = states[job.kind].get(state, 0) + 1
        if state == "failed":
            problems.append({"kind": job.kind, "labels": job.labels, "reason": store.failure(job)})
    spec = (store.root / "spec.yaml").read_text() if (store.root / "spec.yaml").is_file() else ""
    # The smallest model of a size (a joint model adds game embeddings) orders the sizes in every table.
    size_params: dict[str, int] = {}
    for games in curves.values():
        for sizes in games.values():
            for size, entry in sizes.items():
                size_params[size] = min(size_params.get(size, entry["params"]), entry["params"])
    control = collect_control(store, graph, damaged=damaged)
    tokenizers = collect_tokenizers(store, graph, damaged=damaged)
    open_loop = collect_open_loop(store, graph, size_params, damaged=damaged)
    return {"root": str(store.root), "curves": curves, "regimes": regimes, "control": control,
            "size_params": size_params, "jobs": {k: v for k, v in states.items() if v}, "failed": problems,
            "damaged": sorted(set(damaged)), "spec": spec, "tokenizers": tokenizers, "open_loop": open_loop}


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
    render_tokenizers(results["tokenizers"], console, style)
    shown: list[Any] = []
    for variant, analysis in results["regimes"].items():  # variants that share their experts show them once
        if analysis.get("experts") not in shown:
            shown.append(analysis.get("experts"))
            render_experts(variant, analysis, console, style)

    order = size_key(results["size_params"])
    for variant, analysis in results["regimes"].items():
        render_settings(variant, analysis, console)
        render_missing(variant, analysis, console)
        rule = analysis["rule"]
        within = ("; size effect and trend within seeds (Friedman) where paired" if rule["version"] == "regime-rule/3"
                  else "")
        margin = (f"margin {rule.get('margin_nats')} nats/frame, contrasts paired by seed{within}, classical family "
                  "only where bigger models fit their training split better" if rule["version"] != "regime-rule/1"
                  else f"delta={rule['delta']} of the level")
        table = Table(title=f"scaling regimes ({variant}; rule {rule['version']}: alpha={rule['alpha']}, {margin}, "
                            f"min sizes {rule['min_sizes']}, min seeds {rule['min_seeds']})", box=style)
        best = analysis.get("modes_best")  # runs with a validation split: the regime at the best checkpoints too
        for col in ("mode", "game", "regime", *(("regime (best ckpt)", "best step") if best else ()),
                    "best size (params)", "evidence"):
            table.add_column(col)
        for mode, games in analysis["modes"].items():
            for game, r in games.items():
                at_best = ()
                if best:
                    b = best.get(mode, {}).get(game)
                    steps = [s for per_seed in analysis.get("best_steps", {}).get(mode, {}).get(game, {}).values()
                             for s in per_seed]  # over sizes and seeds: where the best checkpoints lie
                    span = "-" if not steps else (f"{min(steps):,}" if min(steps) == max(steps)
                                                  else f"{min(steps):,}-{max(steps):,}")
                    at_best = ("-" if b is None else b["regime"], span)
                table.add_row(mode, game, r["regime"], *at_best, f"{r['best_params']:,.0f}", r["reason"])
        console.print(table)
        render_comparison_modes(variant, analysis, console)
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
    for variant, analysis in results["regimes"].items():
        render_baselines(variant, analysis, console, style, order)
    render_open_loop(results["open_loop"], console, style)

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

    for variant, analysis in results["regimes"].items():
        render_fits(variant, analysis, console, style)
        render_paired(variant, analysis, console, style, order)
        render_interaction(variant, analysis, console, style)
        render_fidelity_improvement(variant, analysis, console, style, order)
        render_scores(variant, analysis, results["control"], console, style, order)
        render_versus_random(variant, analysis, console, style, order)
    if not results["regimes"]:
        for what in ("scaling-law fits", "matched vs joint"):
            console.print(f"{what}: missing (the analysis job has not finished)")
        _render_control_progress(results["control"], console)

    for problem in results["failed"]:
        what = " ".join(f"{k}={v}" for k, v in problem["labels"].items() if k != "variants")
        console.print(f"failed {problem['kind']} {what}: {problem['reason']}")
    for problem in results.get("damaged", []):
        console.print(f"damaged {problem}: that job's results are left out (delete its done.json to redo it)")


def _render_control_progress(control: dict[str, Any], console: Any) -> None:
    """Where the normalised scores stand while there is no analysis to aggregate them."""
    done, total = control["jobs"]["done"], control["jobs"]["total"]
    if total == 0:
        console.print("normalised control scores: not measured (this study trains no policies: policy.enabled "
                      "is off)")
    else:
        console.print(f"normalised control scores: missing (the analysis job has not finished; {done} of {total} "
                      "control jobs done, their per-game scores are in --json and --csv)")
