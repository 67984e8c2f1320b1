"""The SLURM executor: one submitit job array per ready stage, requeued on timeout or preemption.

Each array task runs `run_jobs` for one job (or one pack of dynamics jobs, ``launcher.pack``: the
packs of `scaleworld.study.packing`, a task once all its members are ready) inside a
`submitit.helpers.Checkpointable`, so a task
that SLURM signals before its time limit (or a preemption) is requeued; training jobs then resume
from their last checkpoint. Results are read from the job folders, never from submitit's return
values, so the driver may detach (`--detach`: submit the ready stage and exit) and a later `run`
or `status` picks up. Arrays are chunked to the cluster's MaxArraySize.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import submitit

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.graph import Graph, Job
from scaleworld.study.jobs import EXIT_LOCKED, run_jobs
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
    params: dict[str, Any] = {
        "name": f"scaleworld-{kind}", "timeout_min": launcher.time_min, "mem_gb": launcher.mem_gb,
        "cpus_per_task": launcher.cpus, "slurm_array_parallelism": launcher.array_parallelism,
        "stderr_to_stdout": True,
        # SLURM checks time limits every 30 s and signals once now + delay + 30 s passes the limit; with
        # submitit's default 90 s a short job can be signalled before Python is ready for it.
        "slurm_signal_delay_s": min(90, max(20, launcher.time_min * 60 // 4)),
    }
    if launcher.gpus:
        params["gpus_per_node"] = launcher.gpus
    if launcher.partition:
        params["slurm_partition"] = launcher.partition
    executor.update_parameters(**params)
    return executor


def submit_ready(store: RunStore, graph: Graph, launcher: Any, blocked: set[str], active: set[str]) -> list[str]:
    """Submit every job whose inputs are done and that is not queued, as one array per kind (chunked);
    returns the ids of the jobs submitted."""
    done = {job.id for job in graph.jobs.values() if store.is_done(job)}
    ready: dict[str, list[Job]] = {}
    for job in graph.jobs.values():
        if job.id in blocked or job.id in active or job.id in done or store.is_running(job):
            continue
        if all(i in done for i in job.inputs):
            ready.setdefault(job.kind, []).append(job)
    pack_of = packs(graph, launcher.pack, skip=done)
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
            with executor.batch():
                tasks = [executor.submit(JobCall(str(store.root), [job.id for job in unit])) for unit in part]
            for unit, task in zip(part, tasks):
                for job in unit:
                    (store.job_dir(job) / "failed.json").unlink(missing_ok=True)
                    (store.job_dir(job) / "slurm.json").write_text(json.dumps({"slurm_job_id": task.job_id}))
                    submitted.append(job.id)
    return submitted


def run_slurm(store: RunStore, graph: Graph, launcher: Any, *, detach: bool = False,
              poll_s: float = 3.0) -> dict[str, int]:
    """Submit stage after stage until the study is finished (or once, with `detach`)."""
    require_cluster()
    blocked: set[str] = set()
    active = active_jobs(store, list(graph.jobs.values()))
    for job in graph.jobs.values():  # a re-run retries what failed before, as the local executor does
        if job.id not in active and not store.is_done(job):
            (store.job_dir(job) / "failed.json").unlink(missing_ok=True)
    mine: dict[str, float] = {}  # the jobs this driver submitted -> when (monotonic seconds)
    silent: dict[str, str] = {}  # job id -> state, of tasks of `mine` that ended unfinished, last poll
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
        for job in graph.jobs.values():  # a failed job blocks everything downstream of it
            if job.id not in blocked and (store.failure(job) is not None and job.id not in active
                                          or any(i in blocked for i in job.inputs)):
                blocked.add(job.id)
        tasks = submit_ready(store, graph, launcher, blocked, active | silent.keys())  # not resubmitted unseen
        mine.update(dict.fromkeys(tasks, time.monotonic()))
        if tasks:
            print(f"submitted {len(tasks)} SLURM tasks", flush=True)
        if detach:
            break
        waiting = [j for j in graph.jobs.values() if not store.is_done(j) and j.id not in blocked]
        if not waiting:
            break
        if not tasks and not silent and not active and not any(store.is_running(j) for j in waiting):
            # nothing queued and nothing submittable: only blocked work is left. `active` is this poll's
            # snapshot, so a task that finished since (no longer in `waiting`) still counts: the next
            # poll submits what it unblocked.
            blocked.update(j.id for j in waiting)
            continue
        time.sleep(poll_s)
    done = sum(store.is_done(j) for j in graph.jobs.values())
    failed = sum(store.failure(j) is not None for j in graph.jobs.values())
    return {"done": done, "failed": failed, "blocked": len(blocked) - failed if not detach else 0}
