"""Integration tests against a real SLURM cluster through submitit.

They run only when a cluster answers (`sinfo` succeeds): start the local single-node one with
`sudo bash tools/slurm/start.sh` (CI does). Otherwise the module is skipped with the reason.

The time-limit test is minute-scale because SLURM's smallest time limit is one minute; it is
submitted first (a module fixture) so the other tests run while it waits for its limit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit


def slurm_available() -> tuple[bool, str]:
    """Whether a SLURM controller answers here, and why not. Asks `sinfo` itself: having the
    client tools on PATH (or `srun`) says nothing about a running cluster."""
    if shutil.which("sinfo") is None:
        return False, "sinfo is not installed"
    try:
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 10 s"
    if proc.returncode != 0:
        return False, f"sinfo failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return True, ""


_available, _why = slurm_available()
if not _available:
    pytest.skip(f"no SLURM cluster ({_why}); start one with tools/slurm/start.sh", allow_module_level=True)

# Pickle this module's functions and classes by value: the job's Python then does not need to
# import `tests.test_slurm_cluster`, whatever folder it starts in.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB_WAIT_S = 240  # generous upper bound for any one job here, so a broken cluster fails, not hangs


def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


class SleepsPastTimeLimit(submitit.helpers.Checkpointable):
    """Two steps of work whose progress lives in a file. Step 1 is recorded, then the job sleeps
    past its time limit; SLURM's warning signal (USR2) makes submitit call `checkpoint` and
    requeue the job; the requeued run reads the file, skips step 1 and finishes with step 2."""

    def __init__(self, progress: str) -> None:
        self.progress = progress

    def __call__(self) -> int:
        path = Path(self.progress)
        lines = path.read_text().splitlines() if path.exists() else []
        attempt = 1 + sum(line.startswith("attempt") for line in lines)
        steps_done = sum(line.startswith("step") for line in lines)
        _append(path, f"attempt {attempt} resumes after {steps_done} steps")
        if steps_done == 0:
            _append(path, "step 1")
            time.sleep(600)  # far past the 1-minute limit: only the signal ends this
        _append(path, "step 2")
        return attempt

    def checkpoint(self, *args, **kwargs):
        _append(Path(self.progress), "checkpoint")
        return super().checkpoint(*args, **kwargs)


def _executor(folder: Path, *, timeout_min: int = 5, max_timeouts: int = 3, **params) -> submitit.AutoExecutor:
    # The cluster's default partition, one CPU, the default memory (DefMemPerCPU): what a plain
    # `scaleworld` launcher would ask for on this test cluster.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_timeouts)
    executor.update_parameters(timeout_min=timeout_min, cpus_per_task=1, **params)
    return executor


def _wait(jobs, timeout_s: float = JOB_WAIT_S) -> None:
    """Wait for submitit jobs with a deadline, asking sacct afresh each time (`job.state` is
    cached by submitit), and cancel them if the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not all(job.done(force_check=True) for job in jobs):
        if time.monotonic() > deadline:
            states = {job.job_id: job.get_info(mode="force").get("State") for job in jobs}
            for job in jobs:
                job.cancel(check=False)
            pytest.fail(f"SLURM jobs not done after {timeout_s:.0f} s: {states}")
        time.sleep(1)


_FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


def _sacct_states(job_id: str, timeout_s: float = 60) -> list[str]:
    """Every state SLURM recorded for a job, requeued runs included (-D), once the last one is
    final: a job's result file appears a moment before SLURM (and sacct) call it COMPLETED."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "State"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        states = [line.split()[0] for line in out.splitlines() if line.strip()]  # "CANCELLED by 0"
        if (states and states[-1] in _FINAL_STATES) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def time_limited_job(tmp_path_factory):
    """Submit the time-limit job before any test runs, so its minute overlaps the others."""
    folder = tmp_path_factory.mktemp("slurm_timeout")
    progress = folder / "progress.txt"
    # SLURM checks time limits every 30 s and sends the warning signal (USR2) at the first check
    # where now + signal_delay_s + 30 >= end. With submitit's default delay (90 s) and a 1-minute
    # limit that can be the check right at the start, before the Python process has installed
    # its handler: the signal is lost (or kills it) and the job dies by TIMEOUT. With 20 s the
    # signal comes 10-40 s after the start, at least 20 s before the limit.
    executor = _executor(folder / "jobs", timeout_min=1, max_timeouts=2, slurm_signal_delay_s=20)
    job = executor.submit(SleepsPastTimeLimit(str(progress)))
    yield job, progress
    if not job.done(force_check=True):
        job.cancel(check=False)


def test_submitit_runs_a_plain_function(tmp_path):
    job = _executor(tmp_path).submit(add, 2, 3)
    _wait([job])
    assert job.result() == 5
    assert _sacct_states(job.job_id) == ["COMPLETED"]


def test_submitit_map_array_runs_every_task(tmp_path):
    executor = _executor(tmp_path, slurm_array_parallelism=3)
    jobs = executor.map_array(square, [1, 2, 3])
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1  # one SLURM job array
    _wait(jobs)
    assert [job.result() for job in jobs] == [1, 4, 9]


def test_job_reaching_time_limit_is_requeued_and_resumes(time_limited_job):
    job, progress = time_limited_job
    _wait([job])
    assert job.result() == 2  # finished in its second attempt
    assert progress.read_text().splitlines() == [
        "attempt 1 resumes after 0 steps",
        "step 1",
        "checkpoint",
        "attempt 2 resumes after 1 steps",
        "step 2",
    ]
    # SLURM itself recorded the requeue: a REQUEUED run, then the COMPLETED one.
    assert _sacct_states(job.job_id) == ["REQUEUED", "COMPLETED"]
