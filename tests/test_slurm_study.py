"""The SLURM executor on a real local cluster (tools/slurm/start.sh; CI starts one). Skipped without one."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from scaleworld.study.slurm import slurm_answers

from .conftest import MICRO
from .test_slurm_cluster import _sacct_states
from .test_study import _outputs, _spec_file

pytestmark = pytest.mark.skipif(not slurm_answers(), reason="no SLURM cluster answers `sinfo`")

LAUNCH = ["launcher.kind=slurm", "launcher.mem_gb=2", "launcher.cpus=1", "launcher.time_min=10"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "scaleworld.cli", *map(str, args)], capture_output=True, text=True)


def test_slurm_arrays_produce_the_same_results_as_the_local_executor(tmp_path, confound_study):
    """The study of every mode (the data-matched control, joint_short, best checkpoints) on SLURM
    against the same spec on the local executor (conftest.CONFOUND: 28 jobs)."""
    spec, local = confound_study
    slurm = _run("run", spec, f"run_root={tmp_path / 'slurm'}", *LAUNCH, "--no-progress")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert _outputs(tmp_path / "slurm") == _outputs(local)
    records = list((tmp_path / "slurm").glob("*/*/slurm.json"))
    assert len(records) == 28 and all(json.loads(r.read_text())["slurm_job_id"] for r in records)
    assert sum(name == "dynamics_best.pt" for key in _outputs(local) if isinstance(key, tuple) for name in key) == 6


def test_a_pack_is_one_slurm_task_and_ends_exactly_as_the_local_pack(tmp_path):
    """launcher.pack=2 on the micro study with two seeds: its two dynamics jobs are one SLURM task (one
    slurm job id in both folders), and the packs being fixed by the graph, SLURM's pack trains
    bit-identically to the local executor's."""
    spec = _spec_file(tmp_path, MICRO)
    settings = ["seeds=[0,1]", "launcher.pack=2", "policy.enabled=false"]
    local = _run("run", spec, f"run_root={tmp_path / 'local'}", *settings, "--no-progress")
    assert local.returncode == 0, local.stdout + local.stderr
    slurm = _run("run", spec, f"run_root={tmp_path / 'slurm'}", *settings, *LAUNCH, "--no-progress")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert _outputs(tmp_path / "slurm") == _outputs(tmp_path / "local")
    folders = sorted(p.parent for p in (tmp_path / "slurm").glob("dynamics/*/done.json"))
    assert len(folders) == 2
    assert len({json.loads((f / "slurm.json").read_text())["slurm_job_id"] for f in folders}) == 1
    packed = [json.loads((f / "done.json").read_text())["outputs"]["packed_with"] for f in folders]
    assert packed[0] == packed[1] and sorted(packed[0]) == [f.name for f in folders]


def test_detach_submits_the_ready_stage_and_a_later_run_finishes(tmp_path):
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    first = _run("run", spec, f"run_root={root}", *LAUNCH, "--detach", "--no-progress")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "submitted 2 SLURM tasks" in first.stdout  # only the jobs without inputs (collect, anchor) were ready
    assert len(list(root.glob("*/*/slurm.json"))) == 2
    again = _run("run", spec, f"run_root={root}", *LAUNCH, "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(root.glob("*/*/done.json"))) == 9


def test_a_job_killed_by_its_time_limit_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    # The 1-minute limit leaves a task 30 s (SLURM signals it 30 s early); beside the rest of the test
    # suite on 2 cores a slot trains about 1,200 tiny-model steps (measured: 16,000 steps took 13 slots),
    # so 8,000 steps need several: SLURM signals the task, submitit requeues it, and the trainer resumes
    # from its last checkpoint (every 200 steps), as often as it takes (up to 30 requeues).
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    proc = _run("run", spec, f"run_root={root}", "launcher.kind=slurm", "launcher.mem_gb=2", "launcher.cpus=1",
                "launcher.time_min=1", "launcher.requeues=30", "train.steps=8000", "train.checkpoint_every=200",
                "train.eval_every=4000", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (dynamics,) = [d.parent for d in root.glob("dynamics/*/done.json")]
    metrics = json.loads((dynamics / "metrics.json").read_text())
    assert metrics["resumed_at"] and all(step % 200 == 0 and 0 < step < 8000 for step in metrics["resumed_at"])
    assert metrics["history"][-1]["step"] == 8000
    slurm_id = json.loads((dynamics / "slurm.json").read_text())["slurm_job_id"]
    states = _sacct_states(slurm_id)  # once the last is final: the driver may return before sacct says so
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states


def test_a_task_killed_before_it_could_say_why_fails_its_job_and_a_rerun_retries_it(tmp_path):
    # SIGKILL the dynamics job's process, as the OOM killer would: SLURM ends the task FAILED with no
    # failed.json; the driver records why, blocks what depends on it and stops (not resubmit it forever).
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    run = ("run", spec, f"run_root={root}", *LAUNCH, "train.steps=100000", "train.checkpoint_every=20",
           "train.eval_every=100000", "--no-progress")
    driver = subprocess.Popen([sys.executable, "-m", "scaleworld.cli", *map(str, run)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list(root.glob("dynamics/*/checkpoint.pt")):
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"the driver ended or stalled before the dynamics job started:\n{driver.communicate()[0]}")
        time.sleep(0.2)
    (folder,) = [p.parent for p in root.glob("dynamics/*/checkpoint.pt")]
    os.kill(int((folder / "lock").read_text().split()[-1]), signal.SIGKILL)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 1, output
    reason = json.loads((folder / "failed.json").read_text())["reason"]
    assert re.fullmatch(r"its SLURM task ended [A-Z_]+ unfinished; see its log under .*/slurm", reason), reason
    assert not list(root.glob("fidelity/*/slurm.json"))  # downstream work was never submitted
    assert len(list(root.glob("*/*/done.json"))) == 4  # collect, tokenizer, tokens, anchor
    # a re-run retries the failed job (from its checkpoint)
    again = _run(*run, "--detach")
    try:
        assert again.returncode == 0 and "submitted 1 SLURM tasks" in again.stdout, again.stdout + again.stderr
        assert not (folder / "failed.json").exists()
    finally:
        # SIGKILL: submitit ignores the SIGTERM of a plain scancel, so the task would hold a CPU for KillWait
        slurm_id = json.loads((folder / "slurm.json").read_text())["slurm_job_id"]
        subprocess.run(["scancel", "--full", "--signal=KILL", slurm_id])
