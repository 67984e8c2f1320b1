"""The local executor: runs a study's jobs on this machine, in dependency order, one subprocess each.

A job's crash is contained in its subprocess (recorded in its failed.json); jobs that depend on a
failed job are skipped, independent ones still run. A job locked by another driver is waited for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from scaleworld.data.files import write_json_atomic
from scaleworld.study.graph import Graph, Job
from scaleworld.study.jobs import EXIT_LOCKED
from scaleworld.study.store import RunStore


def describe(job: Job) -> str:
    labels = job.labels
    parts = [job.kind]
    for key in ("game", "size", "seed", "trial"):
        if key in labels:
            parts.append(f"{key}={labels[key]}")
    if "games" in labels and "game" not in labels:
        parts.append("games=" + "+".join(labels["games"]))
    if "modes" in labels:
        parts.append("mode=" + "/".join(labels["modes"]))
    return " ".join(parts)


def run_local(store: RunStore, graph: Graph, *, progress: bool = True,
              on_job: Callable[[Job, str], None] | None = None) -> dict[str, int]:
    """Run every unfinished job; returns counts of done / failed / blocked jobs."""
    counts = {"done": 0, "failed": 0, "blocked": 0}
    bar = _Bar(progress, len(graph.jobs))
    bad: set[str] = set()
    with bar:
        for job in graph.jobs.values():
            if store.is_done(job):
                counts["done"] += 1
                bar.advance(f"{describe(job)} (done before)")
                continue
            if any(i in bad for i in job.inputs):
                bad.add(job.id)
                counts["blocked"] += 1
                bar.advance(f"{describe(job)} (skipped: an input failed)")
                continue
            bar.show(describe(job))
            status = _run_subprocess(store, job)
            if status == 0:
                counts["done"] += 1
            else:
                bad.add(job.id)
                counts["failed"] += 1
            if on_job is not None:
                on_job(job, "done" if status == 0 else "failed")
            bar.advance(describe(job) + ("" if status == 0 else f" FAILED: {store.failure(job)}"))
    return counts


def _run_subprocess(store: RunStore, job: Job) -> int:
    """Run `job` in a subprocess; 0 if it is done (its done.json, whatever the exit status), else 1."""
    log = store.prepare(job) / "log.txt"
    env = {**os.environ, "RL_LOGGING_LEVEL": "WARNING"}
    while True:
        (store.job_dir(job) / "failed.json").unlink(missing_ok=True)  # a reason from an earlier attempt
        with open(log, "a") as f:
            status = subprocess.call([sys.executable, "-m", "scaleworld.study.jobs", str(store.root), job.id],
                                     stdout=f, stderr=subprocess.STDOUT, env=env)
        if status != EXIT_LOCKED:
            if store.is_done(job):
                return 0
            if store.failure(job) is None:  # killed (OOM, a signal) before it could say why
                write_json_atomic(store.job_dir(job) / "failed.json",
                                  {"reason": f"its process exited with status {status} unfinished; see {log}"})
            return 1
        while store.is_running(job):  # another driver runs it: wait, then re-check
            time.sleep(2)
        if store.is_done(job):
            return 0


class _Bar:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                               TextColumn("{task.description}"))
            self._p.__enter__()
            self._task = self._p.add_task("", total=self.total)
        return self

    def show(self, text: str) -> None:
        if self.enabled:
            self._p.update(self._task, description=text)

    def advance(self, text: str) -> None:
        if self.enabled:
            self._p.update(self._task, advance=1, description=text)
            if "FAILED" in text:
                self._p.console.print(f"[red]{text}[/red]")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.__exit__(*exc)
