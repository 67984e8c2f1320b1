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


def test_detach_hands_the_driver_to_the_cluster_and_the_study_finishes_without_a_login(tmp_path):
    """`run --detach` submits the driver as a SLURM job and exits: the study finishes with nothing
    left running on the submitting side. Also the cluster's own settings (scaleworld.study.cluster): a
    job-name prefix, setup lines run on the node before each job (the driver's too), an sbatch option
    passed through (--export, whose variable the setup line sees), and resources per kind (collect asks
    for 1 GB, the rest for 2, the driver for 1 CPU and 4 GB), as SLURM recorded them. (Not CPUs: on the
    CI's 2-CPU node the driver holds one, so a 2-CPU job would never start.)"""
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    marker = tmp_path / "setup-ran.txt"
    cluster = ["launcher.job_name=swtest", f"launcher.setup=['echo $SLURM_JOB_NAME $SW_PASSED >> {marker}']",
               "launcher.sbatch={export: 'ALL,SW_PASSED=through'}", "launcher.resources.collect.mem_gb=1"]
    first = _run("run", spec, f"run_root={root}", *LAUNCH, *cluster, "--detach", "--no-progress")
    assert first.returncode == 0 and "submitted the driver as SLURM job" in first.stdout, first.stdout + first.stderr
    driver = json.loads((root / "driver.json").read_text())["slurm_job_id"]
    again = _run("run", spec, f"run_root={root}", *LAUNCH, *cluster, "--detach", "--no-progress")
    assert again.returncode == 0 and f"the driver already runs as SLURM job {driver}" in again.stdout, again.stdout
    states = _sacct_states(driver, timeout_s=900)  # this side only waits; the cluster runs the study
    assert states[-1] == "COMPLETED", states
    assert len(list(root.glob("*/*/done.json"))) == 9
    status = _run("status", root)
    text = " ".join(status.stdout.split())
    assert status.returncode == 0 and f"driver: SLURM job {driver} COMPLETED (log: {root}/slurm/{driver}/" in text
    assert "slurm dynamics: arrays" in text and "slurm analysis: arrays" in text, text
    ran = marker.read_text().split("\n")
    assert {"swtest-driver through", "swtest-collect through", "swtest-anchor through",
            "swtest-dynamics through"} <= set(ran), ran
    asked = {}
    for record in [*root.glob("*/*/slurm.json"), root / "driver.json"]:
        slurm_id = json.loads(record.read_text())["slurm_job_id"]
        _sacct_states(slurm_id)  # recorded
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", slurm_id, "-o", "JobName,ReqCPUS,ReqMem"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.split()
        asked[record.parent.parent.name if record.name == "slurm.json" else "driver"] = tuple(out[-1].split("|"))
    assert asked["collect"] == ("swtest-collect", "1", "1G") and asked["dynamics"] == ("swtest-dynamics", "1", "2G")
    assert asked["driver"] == ("swtest-driver", "1", "4G"), asked


def test_a_bad_cluster_setting_is_refused_before_anything_is_submitted(tmp_path):
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    for bad, key in (("launcher.sbatch={bogus-option: 1}", "launcher.sbatch.bogus-option"),
                     ("launcher.sbatch={mem: 9}", "launcher.sbatch.mem"),
                     ("launcher.resources.collect.cpus=0", "launcher.resources.collect.cpus")):
        proc = _run("run", spec, f"run_root={root}", *LAUNCH, bad, "--no-progress")
        assert proc.returncode == 2 and key in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not root.exists()


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
    # collect, tokenizer, tokens, anchor, and the analysis of what finished
    assert len(list(root.glob("*/*/done.json"))) == 5 and list(root.glob("analysis/*/slurm.json"))
    (analysis,) = root.glob("analysis/*/analysis.json")
    assert json.loads(analysis.read_text())["missing"]["by_kind"]["fidelity"] == {"failed": 0, "not_run": 1}
    killed = json.loads((folder / "slurm.json").read_text())["slurm_job_id"]
    status = _run("status", root)  # exits 1, naming the failed job's log: its SLURM task's
    text = " ".join(status.stdout.split())
    assert status.returncode == 1 and f"(log: {root}/slurm/{killed}/" in text and "_log.out)" in text, text
    assert f"slurm dynamics: arrays {killed.split('_')[0]}" in text, text
    # a re-run retries the failed job (from its checkpoint): a new task, the failure forgotten
    rerun = subprocess.Popen([sys.executable, "-m", "scaleworld.cli", *map(str, run)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _task_of(folder) in (killed, None):
            assert time.monotonic() < deadline and rerun.poll() is None, "the re-run did not resubmit the job"
            time.sleep(0.2)
        assert not (folder / "failed.json").exists()
    finally:
        rerun.kill()
        rerun.wait()
        # SIGKILL: submitit ignores the SIGTERM of a plain scancel, so the task would hold a CPU for KillWait
        subprocess.run(["scancel", "--full", "--signal=KILL", _task_of(folder) or killed])


def _task_of(folder):
    """The SLURM task recorded in a job folder (None while it is being written)."""
    try:
        return json.loads((folder / "slurm.json").read_text())["slurm_job_id"]
    except (ValueError, KeyError):
        return None
