"""Benchmark the study layer at the reference scale: wall time of `scaleworld validate`, `plan` and
`status` on studies/joint26.yaml (23,514 jobs), and of `run` (local executor) until its first job
starts, this checkout against an older commit, in one run.

The old implementation is the commit given by --old (default: the last commit before the study
layer was rebuilt for this scale), checked out with `git worktree` into a temporary folder and run
with this checkout's virtual environment. Each command is a fresh process (what a user waits for,
imports included). `status` reads a joint26 run root whose plan.json this checkout writes (both
versions read the same format), with a few hundred jobs marked done so the store has folders to
read. Figures: median of --reps runs for the new code (the old one is run --old-reps times: its plan
took minutes), and the ratio old / new.

Usage: .venv/bin/python tools/bench_study.py [--old 8f874a6] [--reps 3] [--old-reps 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STUDY = "studies/joint26.yaml"
OLD = "8f874a6"  # issue 11's last commit: before typed stages, the fast graph and the parallel executor


def _time(checkout: Path, args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", *args], cwd=checkout, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(checkout)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: scaleworld {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return seconds


def _time_run(checkout: Path, root: Path) -> float:
    """Seconds from `scaleworld run` (local executor) to its first job's process starting (its
    log.txt appears); then the driver and that job are killed."""
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "scaleworld.cli", "run", STUDY, f"run_root={root}",
                             "launcher.kind=local", "--no-progress"], cwd=checkout, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(checkout)})
    while not glob.glob(f"{root}/*/*/log.txt"):
        if proc.poll() is not None:
            raise SystemExit(f"{checkout}: scaleworld run ended before a job started")
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return seconds


def _run_root(folder: Path) -> Path:
    """A joint26 run root: plan.json and spec.yaml as `run` writes them, and done jobs of the first stages."""
    from omegaconf import OmegaConf

    from scaleworld.data.files import write_json_atomic
    from scaleworld.study.expand import build_graph
    from scaleworld.study.spec_load import load_spec
    from scaleworld.study.store import RunStore

    spec = load_spec(ROOT / STUDY, [f"run_root={folder}"])
    graph = build_graph(spec)
    store = RunStore(folder)
    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    for job in [j for j in graph.jobs.values() if j.kind in ("expert", "collect", "anchor")]:
        write_json_atomic(store.prepare(job) / "done.json", {"kind": job.kind, "id": job.id, "outputs": {}})
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD, help="the commit to compare against (default %(default)s)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--old-reps", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.old], check=True,
                       capture_output=True)
        try:
            root = _run_root(Path(tmp) / "joint26")
            commands = {"validate": ["validate", STUDY], "plan": ["plan", STUDY], "status": ["status", str(root)]}
            rows = []
            runs = Path(tmp) / "runs"
            for name, command in [*commands.items(), ("run", None)]:
                def measure(checkout: Path, command: list[str] | None = command) -> float:
                    return _time(checkout, command) if command else _time_run(checkout, runs)

                new = statistics.median(measure(ROOT) for _ in range(args.reps))
                before = statistics.median(measure(old) for _ in range(args.old_reps))
                rows.append({"command": name, "old_s": round(before, 2), "new_s": round(new, 2),
                             "old_over_new": round(before / new, 1)})
                print(f"{name:9s} old {before:7.2f} s   new {new:5.2f} s   old/new {before / new:6.1f}x", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    if args.json:
        args.json.write_text(json.dumps({"study": STUDY, "old": args.old, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
