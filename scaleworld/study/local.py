"""The local executor: runs a study's jobs on this machine, up to `workers` at once, one process each.

A job starts once its inputs are done, in the graph's order. With GPUs visible, a job of a GPU
kind is pinned to a GPU of its own (CUDA_VISIBLE_DEVICES), so at most one per GPU runs; the
env-bound kinds (collect, anchor) and the analysis run alongside on the CPU. A job's crash is
contained in its subprocess (recorded in its failed.json); jobs that depend on a failed job are
skipped, independent ones still run. A job locked by another driver is waited for. Each job's
done.json is its own atomic write, so killing the driver loses nothing finished. A job's process is
forked from a server that imported torch and the rest once (`scaleworld.study.forked`), or with
start="fresh" a new interpreter (`python -m scaleworld.study.jobs`): the same job either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scaleworld.data.files import write_json_atomic
from scaleworld.study.forked import ForkedJob, JobServer
from scaleworld.study.graph import Graph, Job, describe
from scaleworld.study.jobs import EXIT_LOCKED
from scaleworld.study.kinds import GPU_KINDS, PARTIAL_KINDS
from scaleworld.study.packing import packs
from scaleworld.study.store import RunStore

POLL_S = 0.2
STARTS = ("forked", "fresh")  # how a job's process starts: forked from the JobServer, or a new interpreter


def visible_gpus() -> list[str]:
    """The GPUs a job may be pinned to: CUDA_VISIBLE_DEVICES if set, else the NVIDIA driver's list
    (read from /proc: no torch import, so the driver starts in a fraction of a second)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def default_workers(gpus: list[str]) -> int:
    """Jobs at once when the spec says null: one per GPU and one CPU job alongside; without a GPU,
    one (a training job's torch already uses every core)."""
    return len(gpus) + 1 if gpus else 1


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen | ForkedJob | None  # None: another driver holds the job; we wait for it
    gpu: str | None
    started: float
    pack: tuple[str, ...] = ()  # the ids trained in the same process (launcher.pack), this job's among them
    gpu_job: bool = True  # False: a CPU job, kept off the GPUs
    server: JobServer | None = None  # what starts its process again (None: a fresh interpreter)


def run_local(store: RunStore, graph: Graph, *, workers: int = 1, gpus: list[str] | None = None,
              progress: bool = True, pack: int = 1, pack_memory_gb: float | None = None,
              gpu_kinds: frozenset[str] = GPU_KINDS,
              start: str = STARTS[0], on_job: Callable[[Job, str], None] | None = None) -> dict[str, int]:
    """Run every unfinished job, up to `workers` at once; returns counts of done / failed / blocked jobs.

    `pack` > 1: dynamics jobs of one shape train up to `pack` at a time in one process (one worker,
    one GPU), in the packs `scaleworld.study.packing.packs` fixes from the graph (`pack_memory_gb`:
    launcher.pack_memory_gb, the cap on a pack's estimated memory; None: none).

    `gpus`: the GPU ids to pin GPU-kind jobs to (default: `visible_gpus()`); none means every job
    runs on the CPU. `gpu_kinds`: the kinds whose jobs are GPU jobs (default: their stages' say;
    `scaleworld.study.cluster.uses_gpu` with the spec's launcher.resources).

    Each job keeps torch's thread count whatever `workers` is: a CPU run's floats depend on its
    thread count (measured: a fidelity NLL of 105.667 with 1 thread, 105.666 with 2), and a study's
    numbers must not depend on how many jobs ran at once. To give jobs fewer threads, set
    OMP_NUM_THREADS for the driver: every job inherits it.

    `start`: "forked" (each job forked from one process that imported torch and the rest once:
    `scaleworld.study.forked`) or "fresh" (a new interpreter per job, paying those imports each time).
    """
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if start not in STARTS:
        raise ValueError(f"start={start!r} is not one of {STARTS}")
    gpus = visible_gpus() if gpus is None else gpus
    states = store.states(graph.jobs.values())
    done = {job_id for job_id, state in states.items() if state == "done"}
    counts = {"done": len(done), "failed": 0, "blocked": 0}
    waiting = [job for job in graph.jobs.values() if job.id not in done]  # in dependency order
    pack_of = packs(graph, pack, memory_gb=pack_memory_gb, skip=done)
    stale_by: dict[str, list[Job]] = {}  # an input -> the partial jobs (the analysis) that may have run without it
    for job in graph.jobs.values():
        if job.kind in PARTIAL_KINDS:
            for i in job.inputs:
                stale_by.setdefault(i, []).append(job)
    bad: set[str] = set()
    running: list[_Running] = []
    bar = _Progress(progress, total=len(graph.jobs), done_before=len(done))
    server = (JobServer(env=_job_env(), log=store.root / "job_server.log")
              if start == "forked" and waiting else None)
    try:
        with bar:
            while waiting or running:
                for job in list(waiting):
                    if len({r.pack for r in running}) >= workers:
                        break
                    partial = job.kind in PARTIAL_KINDS  # runs on what finished (e.g. the analysis)
                    if not partial and any(i in bad for i in job.inputs):  # inputs come first: reaches all downstream
                        waiting.remove(job)
                        bad.add(job.id)
                        counts["blocked"] += 1
                        bar.finished(describe(job), "skipped: an input failed")
                        continue
                    members = [graph.jobs[i] for i in pack_of[job.id] if i not in bad and i not in done]
                    if any(m not in waiting for m in members) or any(i not in done and not (partial and i in bad)
                                                                    for m in members for i in m.inputs):
                        continue  # a pack starts when every member can; a partial job once its inputs ended
                    free = [g for g in gpus if g not in {r.gpu for r in running}]
                    gpu_job = job.kind in gpu_kinds
                    if gpu_job and gpus and not free:
                        continue  # every GPU is busy: a CPU job may still start
                    gpu = free[0] if gpu_job and gpus else None
                    process = _start(store, members, gpu=gpu, gpu_job=gpu_job, server=server)
                    ids = tuple(m.id for m in members)
                    for member in members:
                        waiting.remove(member)
                        running.append(_Running(member, process, gpu, time.monotonic(), ids, gpu_job, server))
                        bar.started(describe(member))
                if not running:
                    break
                time.sleep(POLL_S)
                for run in list(running):
                    status = _poll(store, run)
                    if status is None:
                        continue
                    running.remove(run)
                    if status == 0:
                        done.add(run.job.id)
                        counts["done"] += 1
                        for later in stale_by.get(run.job.id, ()):  # it ran without this job: it runs again
                            if later.id in done and not store.is_done(later):
                                done.discard(later.id)
                                counts["done"] -= 1
                                waiting.append(later)
                    else:
                        bad.add(run.job.id)
                        counts["failed"] += 1
                    if on_job is not None:
                        on_job(run.job, "done" if status == 0 else "failed")
                    bar.finished(describe(run.job), f"{time.monotonic() - run.started:.0f} s" if status == 0
                                 else f"FAILED: {store.failure(run.job)}", failed=status != 0)
    except BaseException:  # Ctrl-C reached the jobs too (one process group): let them stop resumable
        for run in running:
            if run.process is not None and run.process.poll() is None:
                run.process.wait()
        raise
    finally:
        if server is not None:
            server.close()
    counts["blocked"] += len(waiting)  # never startable (their inputs never finished)
    return counts


def _job_env() -> dict[str, str]:
    return {**os.environ, "RL_LOGGING_LEVEL": "WARNING"}


def _start(store: RunStore, jobs: list[Job], *, gpu: str | None, gpu_job: bool,
           server: JobServer | None) -> subprocess.Popen | ForkedJob:
    """One process for `jobs` (one job, or a pack); its output goes to the first one's log.txt."""
    folders = [store.prepare(job) for job in jobs]
    for folder in folders:
        (folder / "failed.json").unlink(missing_ok=True)  # a reason from an earlier attempt
    env = _job_env()
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    elif not gpu_job:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job leaves the GPUs to the GPU jobs
    for folder in folders[1:]:
        with open(folder / "log.txt", "a") as log:
            log.write(f"trained in a pack with {', '.join(j.id for j in jobs)}: its log is {folders[0] / 'log.txt'}\n")
    if server is not None:
        return server.start(root=store.root, ids=[j.id for j in jobs], env=env, log=folders[0] / "log.txt")
    with open(folders[0] / "log.txt", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "scaleworld.study.jobs", str(store.root), *(j.id for j in jobs)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


def _poll(store: RunStore, run: _Running) -> int | None:
    """None while the job runs; then 0 if it is done (its done.json, whatever the exit status), else 1."""
    job = run.job
    if run.process is None:  # another driver runs it: wait until it lets go, then finish it if it did not
        if store.is_running(job):
            return None
        if store.is_done(job):
            return 0
        run.process = _start(store, [job], gpu=run.gpu, gpu_job=run.gpu_job, server=run.server)
        return None
    status = run.process.poll()
    if status is None:
        return None
    if status == EXIT_LOCKED:
        run.process = None
        return _poll(store, run)
    if store.is_done(job):
        return 0
    if store.failure(job) is None:  # killed (OOM, a signal) before it could say why
        log = store.job_dir(job) / "log.txt"
        write_json_atomic(store.job_dir(job) / "failed.json",
                          {"reason": f"its process exited with status {status} unfinished; see {log}"})
    return 1


class _Progress:
    """A rich bar on a terminal; elsewhere (a log file, CI) one plain line per finished job."""

    def __init__(self, enabled: bool, *, total: int, done_before: int):
        self.enabled, self.total, self.count = enabled, total, done_before
        self.live = enabled and sys.stdout.isatty()
        self.names: list[str] = []

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                               TextColumn("{task.description}"))
            self._p.__enter__()
            self._task = self._p.add_task("", total=self.total, completed=self.count)
        elif self.enabled and self.count:
            print(f"[{self.count}/{self.total}] done before", flush=True)
        return self

    def started(self, name: str) -> None:
        self.names.append(name)
        if self.live:
            self._p.update(self._task, description="; ".join(self.names))

    def finished(self, name: str, outcome: str, *, failed: bool = False) -> None:
        self.count += 1
        if name in self.names:
            self.names.remove(name)
        if self.live:
            self._p.update(self._task, advance=1, description="; ".join(self.names))
            if failed:
                self._p.console.print(f"[red]{name} {outcome}[/red]")
        elif self.enabled:
            print(f"[{self.count}/{self.total}] {name} ({outcome})" if not failed else
                  f"[{self.count}/{self.total}] {name} {outcome}", flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._p.__exit__(*exc)
