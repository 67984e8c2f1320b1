"""The report's view of the tokens every number rests on: each tokenizer's quality per game against
the gate of its `tokens` jobs, and the dynamics models' open-loop PSNR beside the tokenizer alone
on the same real frames (the floor no dynamics model can beat). Definitions of the figures:
`scaleworld.models.tokenizer_quality` and `scaleworld.evaluation.fidelity`."""

from __future__ import annotations

import statistics
from typing import Any

from scaleworld.report.collapse import TableStyle, print_table
from scaleworld.study.kinds import FidelityStage
from scaleworld.study.results import read_finished


def collect_tokenizers(store: Any, graph: Any, *, damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (tokenizer job, game): its quality record (None until the job is done, or for a
    tokenizer trained before quality was recorded), the gate of the game's tokens job, pass/fail."""
    rows = []
    for job in graph.by_kind("tokenizer"):
        gates = {graph.jobs[t].labels.get("game"): graph.jobs[t].checks.get("max_residual")
                 for t in graph.jobs if graph.jobs[t].kind == "tokens" and job.id in graph.jobs[t].inputs}
        done = store.is_done(job)
        record = read_finished(store, job, "done.json", damaged) if done else None
        quality = record["outputs"].get("quality", {}) if record else {}
        for game in job.labels.get("games", []):
            q, gate = quality.get(game), gates.get(game)
            rows.append({"tokenizer": job.id, "scope": job.labels.get("scope"), "game": game, "done": done,
                         "quality": q, "max_residual": gate,
                         "passed": None if q is None or gate is None else q["residual_fraction"] <= gate})
    return rows


def collect_open_loop(store: Any, graph: Any, size_params: dict[str, int], *,
                      damaged: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """mode -> game -> {sizes: {size: {psnr: [first, last] mean over seeds, seeds}}, tokenizer: mean dB}."""
    out: dict[str, dict[str, Any]] = {}
    for job in graph.by_kind("fidelity"):
        if not store.is_done(job):
            continue
        record = read_finished(store, job, FidelityStage.ARTIFACT, damaged)
        if record is None:
            continue
        for game, r in record["games"].items():
            loop = r.get("open_loop", {})
            if not loop.get("psnr") or "tokenizer_psnr" not in loop:  # too-short episodes, or an older record
                continue
            for mode in job.labels["modes"]:
                entry = out.setdefault(mode, {}).setdefault(game, {"sizes": {}, "tokenizer": []})
                size = entry["sizes"].setdefault(job.labels["size"], {"first": [], "last": []})
                size["first"].append(loop["psnr"][0])
                size["last"].append(loop["psnr"][-1])
                entry["tokenizer"].append(statistics.fmean(loop["tokenizer_psnr"]))
    for games in out.values():
        for entry in games.values():
            entry["tokenizer"] = statistics.fmean(entry["tokenizer"])
            entry["sizes"] = {s: {"psnr": [statistics.fmean(v["first"]), statistics.fmean(v["last"])],
                                  "seeds": len(v["first"])}
                              for s, v in sorted(entry["sizes"].items(),
                                                 key=lambda kv: (size_params.get(kv[0], 0), kv[0]))}
    return out


def render_tokenizers(rows_in: list[dict[str, Any]], console: Any, style: TableStyle) -> None:
    if not rows_in:
        return
    rows = []
    for r in rows_in:
        q, gate = r["quality"], r["max_residual"]
        gate_text = "-" if gate is None else f"<= {gate:g}"
        if q is None:
            why = "not finished" if not r["done"] else "not measured (a tokenizer from before quality records)"
            rows.append((r["scope"] or "-", r["game"], "-", "-", "-", "-", "-", gate_text, why))
            continue
        verdict = "-" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
        rows.append((r["scope"] or "-", r["game"], f"{q['frames']} {q['frames_from'].replace('_', '-')}",
                     f"{q['perplexity_median']:.1f}", str(q["distinct_codes"]),
                     f"{q['residual_fraction']:.3f} ({q['sampled_residual_fraction']:.3f})",
                     f"{q['psnr_db']:.1f} ({q['mean_frame_psnr_db']:.1f})", gate_text, verdict))
    print_table(console, style, "tokenizer quality per game, on held-out frames (residual: share of the frames' "
                "variance the codes leave unexplained, 1 = no better than the mean frame; perplexity: median over "
                "variables, within the game; a game that fails the gate is not encoded)",
                ("scope", "game", "frames", "perplexity", "distinct codes", "residual (sampled)",
                 "PSNR dB (mean frame)", "gate", "verdict"), rows)


def render_open_loop(open_loop: dict[str, dict[str, Any]], console: Any, style: TableStyle) -> None:
    if not open_loop:
        return
    def cell(item: tuple[str, dict[str, Any]]) -> str:
        name, v = item
        return f"{name}: {v['psnr'][0]:.1f} / {v['psnr'][1]:.1f}"

    rows = []
    for mode, games in sorted(open_loop.items()):
        for game, entry in sorted(games.items()):
            sizes = list(entry["sizes"].items())
            rows.append((mode, game, f"{entry['tokenizer']:.1f}", cell(sizes[0]),
                         cell(sizes[-1]) if len(sizes) > 1 else "-"))
    print_table(console, style, "open-loop PSNR (dB) of imagined frames at the first and last horizon step, mean "
                "over seeds, beside the tokenizer alone on the same real frames (the floor)",
                ("mode", "game", "tokenizer alone", "smallest size: first / last", "largest size: first / last"), rows)
