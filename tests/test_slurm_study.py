"""The SLURM executor on a real local cluster (tools/slurm/start.sh; CI starts one). Skipped without one."""

import json
import subprocess
import sys

import pytest

from scaleworld.study.slurm import slurm_answers

from .test_slurm_cluster import _sacct_states
from .test_study import MICRO, _outputs, _spec_file

pytestmark = pytest.mark.skipif(not slurm_answers(), reason="no SLURM cluster answers `sinfo`")

LAUNCH = ["launcher.kind=slurm", "launcher.mem_gb=2", "launcher.cpus=1", "launcher.time_min=10"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "scaleworld.cli", *map(str, args)], capture_output=True, text=True)


def test_slurm_arrays_produce_the_same_results_as_the_local_executor(tmp_path):
    spec = _spec_file(tmp_path, MICRO)
    local = _run("run", spec, f"run_root={tmp_path / 'local'}", "--no-progress")
    assert local.returncode == 0, local.stdout + local.stderr
    slurm = _run("run", spec, f"run_root={tmp_path / 'slurm'}", *LAUNCH, "--no-progress")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert _outputs(tmp_path / "slurm") == _outputs(tmp_path / "local")
    records = list((tmp_path / "slurm").glob("*/*/slurm.json"))
    assert len(records) == 9 and all(json.loads(r.read_text())["slurm_job_id"] for r in records)


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
    # ~4000 steps of the tiny model take over a minute here, past the 1-minute limit: SLURM signals
    # the task, submitit requeues it, and the trainer resumes from its last checkpoint (every 200 steps).
    spec = _spec_file(tmp_path, MICRO)
    root = tmp_path / "root"
    proc = _run("run", spec, f"run_root={root}", "launcher.kind=slurm", "launcher.mem_gb=2", "launcher.cpus=1",
                "launcher.time_min=1", "launcher.requeues=8", "train.steps=4000", "train.checkpoint_every=200",
                "train.eval_every=2000", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (dynamics,) = [d.parent for d in root.glob("dynamics/*/done.json")]
    metrics = json.loads((dynamics / "metrics.json").read_text())
    assert metrics["resumed_at"] and all(step % 200 == 0 and 0 < step < 4000 for step in metrics["resumed_at"])
    assert metrics["history"][-1]["step"] == 4000
    slurm_id = json.loads((dynamics / "slurm.json").read_text())["slurm_job_id"]
    states = _sacct_states(slurm_id)  # once the last is final: the driver may return before sacct says so
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states
