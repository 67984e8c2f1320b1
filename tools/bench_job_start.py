"""Benchmark how the local executor starts a job's process: a new interpreter per job ("fresh", which
imports torch, torchrl, tensordict, ALE and scipy each time) against forks of one server that imported
them once ("forked", the default: scaleworld.study.forked), as a pair in one run.

Each start runs the same study from an empty run root in this process (run_local, one worker, as
`scaleworld run` on a CPU-only machine). Figures: the wall time of each and their ratio fresh /
forked, the jobs run and the time saved per job; then whether the two runs' results are identical:
every job's done.json outputs and the report as `scaleworld report` prints it, with the run roots
replaced by one name and without the datasets' manifest checksums (a manifest records when it was
written; its files' checksums are compared).

Usage: .venv/bin/python tools/bench_job_start.py [--study studies/smoke.yaml] [--first fresh] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _run(study: str, root: Path, start: str) -> tuple[float, dict[str, int]]:
    from omegaconf import OmegaConf

    from scaleworld.study.expand import build_graph
    from scaleworld.study.local import run_local
    from scaleworld.study.spec_load import load_spec
    from scaleworld.study.store import RunStore

    spec = load_spec(study, [f"run_root={root}"])
    graph = build_graph(spec)
    store = RunStore(root)
    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    began = time.perf_counter()
    counts = run_local(store, graph, progress=False, start=start)
    return time.perf_counter() - began, counts


def _results(root: Path) -> tuple[dict[str, object], str]:
    """Every job's record (folder name -> done.json outputs; each dataset's manifest by its files'
    checksums) and the report's text, run root named ROOT."""
    records = {}
    for done in sorted(root.glob("*/*/done.json")):
        text = done.read_text().replace(str(root), "ROOT")
        records[str(done.parent.relative_to(root))] = json.loads(text, object_hook=_without_manifest_sha)["outputs"]
    for manifest in sorted(root.glob("*/*/*/manifest.json")):
        records[str(manifest.relative_to(root))] = json.loads(manifest.read_text())["files"]
    report = subprocess.run([sys.executable, "-m", "scaleworld.cli", "report", str(root), "--width", "200"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    return records, report.stdout.replace(str(root), "ROOT")


def _without_manifest_sha(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "manifest_sha256"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="studies/smoke.yaml")
    parser.add_argument("--first", choices=("fresh", "forked"), default="fresh", help="which start runs first")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    order = [args.first, "forked" if args.first == "fresh" else "fresh"]
    seconds, results, counts = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_job_start_") as tmp:
        for start in order:
            root = Path(tmp) / start
            seconds[start], counts[start] = _run(args.study, root, start)
            results[start] = _results(root)
            print(f"{start}: {seconds[start]:.1f} s for {counts[start]}", flush=True)
    jobs = counts["forked"]["done"]
    same_records = results["fresh"][0] == results["forked"][0]
    same_report = results["fresh"][1] == results["forked"][1]
    figures = {
        "study": args.study, "order": order, "jobs": jobs,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "ratio_fresh_over_forked": round(seconds["fresh"] / seconds["forked"], 3),
        "saved_per_job_s": round((seconds["fresh"] - seconds["forked"]) / max(jobs, 1), 2),
        "identical_records": same_records, "identical_report": same_report,
        "report_lines": len(results["forked"][1].splitlines()),
    }
    if not same_records:
        differ = sorted(k for k in results["fresh"][0] if results["fresh"][0][k] != results["forked"][0].get(k))
        figures["records_that_differ"] = differ[:20]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
