"""The SLURM executor: one submitit job array per ready stage, requeued on timeout or preemption.

Each array task runs `run_jobs` for one job (or one pack of dynamics jobs, ``launcher.pack``: the
packs of `scaleworld.study.packing`, a task once all its members are ready) inside a
`submitit.helpers.Checkpointable`, so a task that SLURM signals before its time limit (or a
preemption) is requeued; training jobs then resume from their last checkpoint. Results are read
from the job folders, never from submitit's return values. Arrays are chunked to the cluster's
MaxArraySize.

The driver (`run_slurm`: poll, submit what is ready, until the study is done or blocked) runs where
`scaleworld run` runs, or, with ``--detach``, as a SLURM job of its own (`DriverCall`, a small CPU
job recorded in ``RUN_ROOT/driver.json``) that requeues itself at its time limit, as the jobs do,
and exits when the study is done or blocked: nothing needs to stay logged in. Its state is on
disk (job folders, slurm.json, sacct), so a requeued driver, or a `run` started later, picks up.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.cluster import DRIVER, slurm_parameters
from scaleworld.study.graph import Graph, Job
from scaleworld.study.jobs import EXIT_LOCKED, run_jobs
from scaleworld.study.kinds import PARTIAL_KINDS
from scaleworld.study.packing import packs
from scaleworld.study.store import DamagedRunError, RunStore, read_record

ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING")
# Final states of a task that may have died before its job could record why (OOM killer, node failure)
ENDED_WITHOUT_RESULT = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                        "PREEMPTED")
# sacct may not list a task for a while after sbatch returned (slurmdbd records it asynchronously; seen
# for seconds on a busy test cluster): a task this driver submitted counts as queued for this long
# while sacct does not know it, rather than leaving its job "not submittable" and blocking the study.
ACCOUNTING_GRACE_S = 120.0


def slurm_answers(timeout: float = 10.0) -> bool:
    """A SLURM cluster is usable when `sinfo` answers (not merely when srun is on PATH)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=timeout).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def require_cluster() -> None:
    if not slurm_answers():
        raise ScaleworldError("launcher.kind=slurm but no SLURM cluster answers `sinfo`: start one "
                              "(e.g. tools/slurm/start.sh) or run with launcher.kind=local")


def cluster_max_array_size() -> int | None:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else None


class JobCall(submitit.helpers.Checkpointable):
    """One study job (or one pack of dynamics jobs, launcher.pack) as a requeueable SLURM task; its
    outputs go to its job folder(s)."""

    def __init__(self, root: str, job_id: str | list[str]):
        self.root = root
        self.job_ids = [job_id] if isinstance(job_id, str) else list(job_id)
        self.job_id = self.job_ids[0]

    def __call__(self) -> str:
        import os

        os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
        # submitit's handler of the time-limit signal checkpoints, requeues the task and exits by
        # SystemExit: noting the signal first lets run_job tell that requeue from a job's own exit.
        signalled = []
        requeue = signal.getsignal(signal.SIGUSR2)
        if callable(requeue):

            def on_time_limit(signum, frame):
                signalled.append(signum)
                requeue(signum, frame)

            signal.signal(signal.SIGUSR2, on_time_limit)
        status = run_jobs(self.root, self.job_ids, requeued=lambda: bool(signalled))
        # The job is over: a time-limit signal that arrives now (SLURM sends it up to 30 s early) must
        # neither requeue finished work nor, once Python's shutdown has restored the default action,
        # kill the task and mark it FAILED. An ignored signal stays ignored through shutdown.
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        if status == EXIT_LOCKED:
            return "locked elsewhere"
        if status != 0:
            reason = json.loads((self._dir() / "failed.json").read_text())["reason"]
            raise RuntimeError(f"job {', '.join(self.job_ids)} failed: {reason}")
        return "done"

    def _dir(self) -> Path:
        store = RunStore(Path(self.root))
        return store.job_dir(store.read_plan().jobs[self.job_id])


def task_states(store: RunStore, jobs: list[Job]) -> dict[str, str]:
    """SLURM's state (e.g. RUNNING, FAILED) of the last task submitted for each of `jobs` that has one.

    One `sacct` call for all of them: a study has thousands of jobs and the driver polls.
    """
    submitted = {}
    for job in jobs:
        record = store.job_dir(job) / "slurm.json"
        if record.is_file():
            try:
                submitted[str(read_record(record)["slurm_job_id"])] = job.id
            except (DamagedRunError, KeyError):  # written by a driver killed mid-write: the job is resubmitted
                continue
    if not submitted:
        return {}
    out = subprocess.run(["sacct", "-j", ",".join(submitted), "-n", "-X", "-P", "-o", "JobID,State"],
                         capture_output=True, text=True).stdout
    states: dict[str, str] = {}  # exact task id -> state
    pending_arrays: set[str] = set()  # tasks not started yet show as one row "BASE_[0-5%64]"
    for line in out.splitlines():
        slurm_id, _, state = line.partition("|")
        word = state.split()[0] if state.split() else ""  # "CANCELLED by 0" -> CANCELLED
        if "_[" in slurm_id:
            if word in ACTIVE_STATES:
                pending_arrays.add(slurm_id.split("_[")[0])
        else:
            states[slurm_id] = word
    found = {}
    for slurm_id, job_id in submitted.items():
        if slurm_id in states:
            found[job_id] = states[slurm_id]
        elif slurm_id.split("_")[0] in pending_arrays:
            found[job_id] = "PENDING"
    return found


def active_jobs(store: RunStore, jobs: list[Job]) -> set[str]:
    """Ids of `jobs` whose SLURM task (submitted by this or an earlier driver) is queued or running."""
    return {job_id for job_id, state in task_states(store, jobs).items() if state in ACTIVE_STATES}


def _executor(store: RunStore, launcher: Any, kind: str) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=store.root / "slurm" / "%j", cluster="slurm",
                                     slurm_max_num_timeout=launcher.requeues)
    executor.update_parameters(**slurm_parameters(launcher, kind))  # the kind's resources (study/cluster.py)
    return executor


def submit_ready(store: RunStore, graph: Graph, launcher: Any, blocked: set[str], active: set[str]) -> list[str]:
    """Submit every job whose inputs are done and that is not queued, as one array per kind (chunked);
    returns the ids of the jobs submitted."""
    done = {job.id for job in graph.jobs.values() if store.is_done(job)}
    ready: dict[str, list[Job]] = {}
    for job in graph.jobs.values():
        if job.id in blocked or job.id in active or job.id in done or store.is_running(job):
            continue
        if all(i in done or job.kind in PARTIAL_KINDS and i in blocked for i in job.inputs):
            ready.setdefault(job.kind, []).append(job)  # a partial job (the analysis): once its inputs ended
    pack_of = packs(graph, launcher.pack, memory_gb=launcher.pack_memory_gb, skip=done)
    chunk = min(x for x in (launcher.max_array_size, cluster_max_array_size(), 10**6) if x)
    submitted = []
    for kind, jobs in ready.items():
        ids = {job.id for job in jobs}
        units = []  # one task each: a job, or a pack whose members are all ready (scaleworld.study.packing)
        for job in jobs:
            pack = pack_of[job.id]
            if job.id == pack[0] and all(i in ids for i in pack):
                units.append([graph.jobs[i] for i in pack])
        executor = _executor(store, launcher, kind)
        for start in range(0, len(units), chunk):
            part = units[start : start + chunk]
            for unit in part:
                for job in unit:
                    store.prepare(job)
            with _outside_this_job(), executor.batch():
                tasks = [executor.submit(JobCall(str(store.root), [job.id for job in unit])) for unit in part]
            for unit, task in zip(part, tasks):
                for job in unit:
                    (store.job_dir(job) / "failed.json").unlink(missing_ok=True)
                    (store.job_dir(job) / "slurm.json").write_text(json.dumps({"slurm_job_id": task.job_id}))
                    submitted.append(job.id)
    return submitted


def run_slurm(store: RunStore, graph: Graph, launcher: Any, *, poll_s: float = 3.0,
              max_poll_s: float = 3.0) -> dict[str, int]:
    """Submit stage after stage until the study is finished or blocked; returns counts of done /
    failed / blocked jobs. Polls every `poll_s` while jobs finish, doubling the wait up to `max_poll_s`
    while nothing does (the detached driver waits on jobs of hours without asking sacct every 3 s)."""
    require_cluster()
    blocked: set[str] = set()
    active = active_jobs(store, list(graph.jobs.values()))
    for job in graph.jobs.values():  # a re-run retries what failed before, as the local executor does
        if job.id not in active and not store.is_done(job):
            (store.job_dir(job) / "failed.json").unlink(missing_ok=True)
    mine: dict[str, float] = {}  # the jobs this driver submitted -> when (monotonic seconds)
    silent: dict[str, str] = {}  # job id -> state, of tasks of `mine` that ended unfinished, last poll
    wait, waiting_before = poll_s, -1
    while True:
        states = task_states(store, [j for j in graph.jobs.values() if not store.is_done(j)])
        now = time.monotonic()
        unseen = {job_id for job_id, at in mine.items() if job_id not in states and now - at < ACCOUNTING_GRACE_S
                  and not store.is_done(graph.jobs[job_id])}  # submitted, not in sacct yet
        active = {job_id for job_id, state in states.items() if state in ACTIVE_STATES} | unseen
        ended = {job_id: state for job_id, state in states.items() if job_id in mine
                 and state in ENDED_WITHOUT_RESULT and store.failure(graph.jobs[job_id]) is None}
        for job_id in ended.keys() & silent.keys():  # seen twice: killed (the OOM killer) before it could say why
            job = graph.jobs[job_id]
            if not store.is_done(job) and not store.is_running(job) and store.failure(job) is None:
                write_json_atomic(store.job_dir(job) / "failed.json", {
                    "reason": f"its SLURM task ended {ended[job_id]} unfinished; see its log under {store.root}/slurm"})
        silent = ended
        for job in graph.jobs.values():  # a failed job blocks everything downstream of it (but partial jobs)
            if job.id not in blocked and (store.failure(job) is not None and job.id not in active
                                          or job.kind not in PARTIAL_KINDS and any(i in blocked for i in job.inputs)):
                blocked.add(job.id)
        tasks = submit_ready(store, graph, launcher, blocked, active | silent.keys())  # not resubmitted unseen
        mine.update(dict.fromkeys(tasks, time.monotonic()))
        if tasks:
            print(f"submitted {len(tasks)} SLURM tasks", flush=True)
        waiting = [j for j in graph.jobs.values() if not store.is_done(j) and j.id not in blocked]
        if not waiting:
            break
        wait = poll_s if tasks or len(waiting) != waiting_before else min(2 * wait, max_poll_s)
        waiting_before = len(waiting)
        if not tasks and not silent and not active and not any(store.is_running(j) for j in waiting):
            # nothing queued and nothing submittable: only blocked work is left. `active` is this poll's
            # snapshot, so a task that finished since (no longer in `waiting`) still counts: the next
            # poll submits what it unblocked.
            blocked.update(j.id for j in waiting)
            continue
        time.sleep(wait)
    done = sum(store.is_done(j) for j in graph.jobs.values())
    failed = sum(store.failure(j) is not None for j in graph.jobs.values())
    return {"done": done, "failed": failed, "blocked": len(blocked) - failed}


DRIVER_RECORD = "driver.json"
DRIVER_REQUEUES = 10_000
"""A detached driver requeues itself at every time limit until the study ends: days of them."""
DRIVER_POLL_S = 30.0
"""How often, at most, a detached driver asks sacct while nothing finishes: it waits on jobs of minutes
to hours (every 3 s while jobs finish)."""


@contextlib.contextmanager
def _outside_this_job() -> Iterator[None]:
    """Submit as from a login shell: inside a SLURM job (the detached driver) the environment holds
    the driver's own SLURM_* / SBATCH_* settings (its CPUs, memory, job id), which sbatch and the
    srun of a submitted script would read as the new job's. SLURM_CONF (where the cluster is) stays."""
    own = {k: os.environ.pop(k) for k in list(os.environ)
           if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"}
    try:
        yield
    finally:
        os.environ.update(own)


class DriverCall(submitit.helpers.Checkpointable):
    """The study's driver as a SLURM job (`run --detach`): `run_slurm` until the study is done or
    blocked, with the launcher settings of the spec the run root was last run with."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self) -> dict[str, int]:
        from omegaconf import OmegaConf

        store = RunStore(Path(self.root))
        launcher = OmegaConf.load(store.root / "spec.yaml").launcher
        counts = run_slurm(store, store.read_plan(), launcher, max_poll_s=DRIVER_POLL_S)
        print(f"driver: {counts}", flush=True)
        return counts


def driver_state(store: RunStore) -> tuple[str, str] | None:
    """(SLURM job id, state) of the run root's detached driver, None if it never had one. A driver
    sacct does not list yet counts as PENDING for ACCOUNTING_GRACE_S after its submission (slurmdbd
    records it asynchronously), then as UNKNOWN, as does a damaged record."""
    record = store.root / DRIVER_RECORD
    if not record.is_file():
        return None
    try:
        recorded = read_record(record)
        slurm_id = str(recorded["slurm_job_id"])
        submitted = datetime.datetime.fromisoformat(recorded["submitted_utc"])
    except (DamagedRunError, KeyError, TypeError, ValueError):
        return "?", "UNKNOWN"
    out = subprocess.run(["sacct", "-j", slurm_id, "-n", "-X", "-P", "-o", "State"], capture_output=True,
                         text=True).stdout.split()
    if out:
        return slurm_id, out[-1]
    age = (datetime.datetime.now(datetime.timezone.utc) - submitted).total_seconds()
    return slurm_id, "PENDING" if age < ACCOUNTING_GRACE_S else "UNKNOWN"


def submit_driver(store: RunStore, launcher: Any) -> tuple[str, bool]:
    """Hand the driver to the cluster (`DriverCall`); returns (its SLURM job id, whether it was
    submitted now): a driver already queued or running is left to finish, not doubled."""
    require_cluster()
    running = driver_state(store)
    if running is not None and running[1] in ACTIVE_STATES:
        return running[0], False
    executor = submitit.AutoExecutor(folder=store.root / "slurm" / "%j", cluster="slurm",
                                     slurm_max_num_timeout=DRIVER_REQUEUES)
    executor.update_parameters(**slurm_parameters(launcher, DRIVER))
    with _outside_this_job():
        task = executor.submit(DriverCall(str(store.root.resolve())))
    write_json_atomic(store.root / DRIVER_RECORD, {
        "slurm_job_id": task.job_id,
        "submitted_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return task.job_id, True


def slurm_lines(store: RunStore, graph: Graph) -> list[str]:
    """What `status` says of SLURM: the driver (its job, state and log) and, per kind, its arrays and
    the states of its unfinished jobs' tasks."""
    lines = []
    driver = driver_state(store)
    if driver is not None:
        logs = sorted((store.root / "slurm" / driver[0]).glob("*_log.out"))
        lines.append(f"driver: SLURM job {driver[0]} {driver[1]}" + (f" (log: {logs[-1]})" if logs else ""))
    arrays: dict[str, set[str]] = {}
    for job in graph.jobs.values():
        record = store.job_dir(job) / "slurm.json"
        if record.is_file():
            with contextlib.suppress(DamagedRunError, KeyError):
                arrays.setdefault(job.kind, set()).add(str(read_record(record)["slurm_job_id"]).split("_")[0])
    if not arrays:
        return lines
    states = task_states(store, [j for j in graph.jobs.values() if j.kind in arrays and not store.is_done(j)])
    for kind, ids in arrays.items():
        counted: dict[str, int] = {}
        for job in graph.by_kind(kind):
            if job.id in states:
                counted[states[job.id]] = counted.get(states[job.id], 0) + 1
        tally = ", ".join(f"{state} {n}" for state, n in sorted(counted.items()))
        lines.append(f"slurm {kind}: arrays {', '.join(sorted(ids, key=int))}" + (f"; unfinished: {tally}" if tally
                                                                                 else ""))
    return lines
