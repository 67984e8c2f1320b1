"""`scaleworld plan --calibrate`: every kind measured on this machine, saved, read back; bad files refused."""

import json
import os
import subprocess
import sys

from scaleworld.study.calibration import CALIBRATION_FORMAT
from scaleworld.study.expand import build_graph
from scaleworld.study.graph import KINDS
from scaleworld.study.spec_load import load_spec

from .conftest import MICRO


def _plan(*args):
    return subprocess.run([sys.executable, "-m", "scaleworld.cli", "plan", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "250"})  # one line per row


def _rows(stdout: str) -> dict[str, list[str]]:
    """kind -> the cells of its row in the calibrated table (the plain table's | as separators)."""
    table = stdout[stdout.index("measured"):]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells and cells[0] in KINDS:
            rows[cells[0]] = cells
    return rows


def test_plan_calibrate_measures_every_kind_saves_and_reads_it_back(tmp_path):
    spec = tmp_path / "micro.yaml"
    # two trials: policy shapes that differ in their seed once shared a scratch folder, and the second
    # refused the first's checkpoint as a run of other settings
    spec.write_text(MICRO.replace("policy: {steps: 2,", "policy: {trials: 2, steps: 2,"))
    calibration = tmp_path / "calibration.json"
    measured = _plan(spec, f"run_root={tmp_path / 'root'}", "--calibrate", "--seconds", "0.05", "--calibration",
                     calibration, "--no-progress")
    assert measured.returncode == 0, measured.stdout + measured.stderr
    kinds = {job.kind for job in build_graph(load_spec(spec, [f"run_root={tmp_path / 'root'}"])).jobs.values()}
    rows = _rows(measured.stdout)
    assert set(rows) == kinds  # every kind of the study has a row
    for kind, cells in rows.items():
        if kind != "analysis":
            assert float(cells[3]) > 0, cells  # CPU-hours: this machine has no GPU
            assert "/s" in cells[4], cells  # the rate it measured
    assert "MFU" in rows["dynamics"][5] and "at most" in rows["anchor"][5]  # no data yet: episode cap
    record = json.loads(calibration.read_text())
    assert record["format"] == CALIBRATION_FORMAT and record["peak_flops"] > 0 and record["rates"]

    read = _plan(spec, f"run_root={tmp_path / 'root'}", "--calibration", calibration)
    assert read.returncode == 0, read.stderr
    assert _rows(read.stdout) == rows  # the saved rates give the same hours, nothing measured again
    bigger = _plan(spec, f"run_root={tmp_path / 'root'}", "train.batch_size=8", "--calibration", calibration)
    assert "never calibrated: run --calibrate" in bigger.stdout  # a dynamics shape it has no rate for

    uncalibrated = _plan(spec, f"run_root={tmp_path / 'root'}")
    assert "--calibrate measures every kind's rate on this machine instead" in " ".join(uncalibrated.stdout.split())


def test_a_bad_calibration_file_or_setting_is_one_line_and_exit_2(tmp_path):
    spec = tmp_path / "micro.yaml"
    spec.write_text(MICRO)
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "calibration/1", "rates": {"x": -1}')
    for path, message in ((damaged, "not a calibration"), (tmp_path / "none.json", "no such calibration")):
        proc = _plan(spec, "--calibration", path)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    damaged.write_text('{"format": "calibration/1", "rates": {"x": -1}, "peak_flops": 1}')
    assert "not a calibration/1 file" in _plan(spec, "--calibration", damaged).stderr
    for seconds in ("0", "nan", "-1", "inf", "1e-12"):  # nan once hung; 1e-12 timed one call, noise and all
        proc = _plan(spec, "--calibrate", "--seconds", seconds)
        assert proc.returncode == 2 and f"argument --seconds: {seconds} is impossible" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_plan_calibrate_takes_episode_lengths_from_the_collected_data(confound_study):
    spec, root = confound_study
    proc = _plan(spec, f"run_root={root}", "--calibrate", "--seconds", "0.05", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(proc.stdout)
    assert "at most" not in rows["anchor"][5] and "at most" not in rows["control"][5]  # measured, not the cap
