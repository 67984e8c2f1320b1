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

from scaleworld.report import SECTION_NAMES
from scaleworld.report.collapse import TableStyle, print_table
from scaleworld.report.control_scores import collect_control
from scaleworld.report.exploitation import render_exploitation
from scaleworld.report.glossary import render_glossary
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
from scaleworld.report.sources import collect_sources, render_sources
from scaleworld.report.tokenizers import collect_open_loop, collect_tokenizers, render_open_loop, render_tokenizers
from scaleworld.study.graph import KINDS
from scaleworld.study.kinds import AnalysisStage
from scaleworld.study.results import nll_readings, read_finished
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
    # mode -> game -> size -> {params, nll per seed}; models of a variant alone (another data source, an
    # ablation that changes them) under "mode (variant)", never pooled with the base study's
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    readings = nll_readings(store, graph, graph.by_kind("fidelity"), damaged=damaged)
    for row in readings["final"]:
        for variant in [BASE_VARIANT] if BASE_VARIANT in row["variants"] else row["variants"]:
            key = row["mode"] if variant == BASE_VARIANT else f"{row['mode']} ({variant})"
            per_size = curves.setdefault(key, {}).setdefault(row["game"], {})
            per_size.setdefault(row["size"], {"params": row["params"], "nll": []})["nll"].append(row["nll"])
    # One tidy row per (variant, mode, game, size, seed, reading): the keys the control rows share.
    nll = [{"variant": variant, "mode": r["mode"], "game": r["game"], "size": r["size"], "params": r["params"],
            "seed": r["seed"], "reading": reading, "step": r.get("step"), "nll_nats_per_frame": r["nll"],
            "job": r["job"], "dynamics_job": r["dynamics_job"]}
           for reading, rows in readings.items() for r in rows for variant in r["variants"]]
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
    results = {"root": str(store.root), "curves": curves, "nll": nll, "regimes": regimes, "control": control,
               "size_params": size_params, "jobs": {k: v for k, v in states.items() if v}, "failed": problems,
               "damaged": sorted(set(damaged)), "spec": spec, "tokenizers": tokenizers, "open_loop": open_loop}
    results["sources"] = collect_sources(results)  # a study with a data-source axis: the premise test
    return results


def _sparkline(values: list[float], bars: str) -> str:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return bars[0] * len(values)
    return "".join(bars[round((v - lo) / (hi - lo) * (len(bars) - 1))] for v in values)


def render(results: dict[str, Any], console: Any, *, sections: list[str] | None = None, full: bool = False) -> None:
    """The findings block, then each of `sections` (default: all of `SECTIONS`, in that order); per-game
    tables of many games show what differs unless `full` (scaleworld.report.collapse)."""
    from rich import box

    from scaleworld.report.findings import render_findings

    plain = not console.is_terminal
    style = TableStyle(box.ASCII if plain else box.SIMPLE_HEAVY, full=full)
    view = _View(results, console, style, ASCII_BARS if plain else BARS, size_key(results["size_params"]))
    console.print(f"scaleworld report: {results['root']}")
    render_findings(results, console, view.order)
    for name in sections or SECTIONS:
        SECTIONS[name](view)


class _View:
    """What every section reads: the results, the console, the table style, bar characters, size order."""

    def __init__(self, results: dict[str, Any], console: Any, style: TableStyle, bars: str, order: Any):
        self.results, self.console, self.style, self.bars, self.order = results, console, style, bars, order
        self.variants = results["regimes"]


def _jobs(v: _View) -> None:
    from rich.table import Table

    jobs = Table(title="jobs", box=v.style.box)
    for col in ("kind", "done", "running", "failed", "pending"):
        jobs.add_column(col)
    for kind, counts in v.results["jobs"].items():
        jobs.add_row(kind, *(str(counts.get(s, 0)) for s in ("done", "running", "failed", "pending")))
    v.console.print(jobs)
    missing = sum(c.get("pending", 0) + c.get("running", 0) for c in v.results["jobs"].values())
    if missing:
        v.console.print(f"partial results: {missing} jobs not finished; the numbers below use what is done")


def _experts(v: _View) -> None:
    shown: list[Any] = []
    for variant, analysis in v.variants.items():  # variants that share their experts show them once
        if analysis.get("experts") not in shown:
            shown.append(analysis.get("experts"))
            render_experts(variant, analysis, v.console, v.style)


def _regimes(v: _View) -> None:
    for variant, analysis in v.variants.items():
        render_settings(variant, analysis, v.console)
        render_missing(variant, analysis, v.console)
        rule = analysis["rule"]
        within = ("; size effect and trend within seeds (Friedman) where paired" if rule["version"] == "regime-rule/3"
                  else "")
        margin = (f"margin {rule.get('margin_nats')} nats/frame, contrasts paired by seed{within}, classical family "
                  "only where bigger models fit their training split better" if rule["version"] != "regime-rule/1"
                  else f"delta={rule['delta']} of the level")
        title = (f"scaling regimes ({variant}; rule {rule['version']}: alpha={rule['alpha']}, {margin}, "
                 f"min sizes {rule['min_sizes']}, min seeds {rule['min_seeds']})")
        best = analysis.get("modes_best")  # runs with a validation split: the regime at the best checkpoints too
        columns = ("mode", "game", "regime", *(("regime (best ckpt)", "best step") if best else ()),
                   "best size (params)", "evidence")
        rows = []
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
                best_params = "-" if r["best_params"] is None else f"{r['best_params']:,.0f}"
                rows.append((mode, game, r["regime"], *at_best, best_params, r["reason"]))
        print_table(v.console, v.style, title, columns, rows)
        render_comparison_modes(variant, analysis, v.console)
    if not v.variants:
        v.console.print("scaling regimes: missing (the analysis job has not finished)")


def _curves(v: _View) -> None:
    rows = []
    for mode, games in sorted(v.results["curves"].items()):
        for game, sizes in sorted(games.items()):
            ordered = sorted(sizes.values(), key=lambda s: s["params"])
            means = [statistics.fmean(s["nll"]) for s in ordered]
            rows.append((mode, game, _sparkline(means, v.bars), " ".join(f"{m:.3f}" for m in means),
                         "/".join(str(len(s["nll"])) for s in ordered)))
    print_table(v.console, v.style, "scaling curves: mean held-out NLL (nats/frame) from the smallest to the largest "
                "size", ("mode", "game", "curve", "NLL per size", "seeds per size"), rows)


def _baselines(v: _View) -> None:
    for variant, analysis in v.variants.items():
        render_baselines(variant, analysis, v.console, v.style, v.order)


def single_joint_pairs(curves: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(variant suffix, single curves, joint curves) of each variant with both modes: the base study's
    ("single", "joint") first, then a variant's own ("single (v)", "joint (v)")."""
    return [(key.removeprefix("single"), curves[key], curves["joint" + key.removeprefix("single")])
            for key in sorted(curves, key=lambda k: (k != "single", k))
            if key.startswith("single") and "joint" + key.removeprefix("single") in curves]


def _single_vs_joint(v: _View) -> None:
    for suffix, single, joint in single_joint_pairs(v.results["curves"]):
        rows = []
        for game in sorted(set(single) & set(joint)):
            for size in sorted(set(single[game]) & set(joint[game]), key=lambda n: single[game][n]["params"]):
                s, j = statistics.fmean(single[game][size]["nll"]), statistics.fmean(joint[game][size]["nll"])
                rows.append((game, size, f"{s:.3f}", f"{j:.3f}", f"{j - s:+.3f}"))
        print_table(v.console, v.style, f"single vs joint{suffix}: mean held-out NLL per size (lower is better)",
                    ("game", "size", "single", "joint", "joint - single"), rows)


def _per_variant(render_one: Any) -> Any:
    def section(v: _View) -> None:
        for variant, analysis in v.variants.items():
            render_one(variant, analysis, v.console, v.style, v.order)
    return section


def _scores(v: _View) -> None:
    for variant, analysis in v.variants.items():
        render_scores(variant, analysis, v.results["control"], v.console, v.style, v.order)
    if not v.variants:
        for what in ("scaling-law fits", "matched vs joint"):
            v.console.print(f"{what}: missing (the analysis job has not finished)")
        _render_control_progress(v.results["control"], v.console)


def _failures(v: _View) -> None:
    for problem in v.results["failed"]:
        what = " ".join(f"{k}={val}" for k, val in problem["labels"].items() if k != "variants")
        v.console.print(f"failed {problem['kind']} {what}: {problem['reason']}")
    for problem in v.results.get("damaged", []):
        v.console.print(f"damaged {problem}: that job's results are left out (delete its done.json to redo it)")


SECTIONS: dict[str, Any] = {
    "jobs": _jobs,
    "tokenizers": lambda v: render_tokenizers(v.results["tokenizers"], v.console, v.style),
    "experts": _experts,
    "regimes": _regimes,
    "sources": lambda v: render_sources(v.results, v.console, v.style),
    "curves": _curves,
    "baselines": _baselines,
    "open-loop": lambda v: render_open_loop(v.results["open_loop"], v.console, v.style),
    "single-vs-joint": _single_vs_joint,
    "fits": _per_variant(lambda variant, a, console, style, order: render_fits(variant, a, console, style)),
    "matched": _per_variant(render_paired),
    "stabilises": _per_variant(lambda variant, a, console, style, order: render_interaction(variant, a, console,
                                                                                           style)),
    "improvement": _per_variant(render_fidelity_improvement),
    "scores": _scores,
    "versus-random": _per_variant(render_versus_random),
    "exploitation": lambda v: render_exploitation(v.results, v.console, v.style),
    "failures": _failures,
    "glossary": lambda v: render_glossary(v.console),
}
"""The report's sections after the findings, in order (`scaleworld report --section NAME`)."""
assert tuple(SECTIONS) == SECTION_NAMES, "scaleworld.report.SECTION_NAMES names each section, in this order"


def _render_control_progress(control: dict[str, Any], console: Any) -> None:
    """Where the normalised scores stand while there is no analysis to aggregate them."""
    done, total = control["jobs"]["done"], control["jobs"]["total"]
    if total == 0:
        console.print("normalised control scores: not measured (this study trains no policies: policy.enabled "
                      "is off)")
    else:
        console.print(f"normalised control scores: missing (the analysis job has not finished; {done} of {total} "
                      "control jobs done, their per-game scores are in --json and --csv)")
