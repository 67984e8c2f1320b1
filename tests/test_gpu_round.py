"""tools/gpu_round.py, the GPU round's one script, checked where no GPU is: its dry run measures
every part at tiny shapes on the CPU (every code path but the GPU's) and writes what it measured."""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_round.py"


def test_the_dry_run_measures_every_part_and_writes_the_results(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--dry-run"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout, proc.stdout
    results = json.loads((tmp_path / "gpu_round.json").read_text())
    parts = results["parts"]
    assert set(parts) >= {"peak", "gpt", "dynamics", "imagine", "update", "agree", "verdicts"}
    assert not [k for v in parts.values() if isinstance(v, dict) for k in v if k.endswith("error")]
    assert "skipped" not in parts  # the dry run is far inside --budget-s
    dynamics = parts["dynamics"]
    assert set(dynamics) >= {"d2 eager", "d2 compiled", "d2 autotune", "d2 packed", "d12 eager", "d12 compiled",
                             "d12 packed", "d48 compiled", "d2 cudagraphs"}
    for name, line in dynamics.items():
        if not isinstance(line, dict):
            continue
        assert line["tokens_per_s"] > 0 and line["mfu"] > 0
        assert line["compile"]["eager_fallbacks"] == 0
        assert (line["compile"]["graphs"] >= 1) == (not name.endswith("eager")), (name, line["compile"])
    assert dynamics["d2 packed"]["runs"] == 8  # the packer's K for launcher.pack 8 (tiny runs fit)
    assert parts["agree"]["packed_vs_separate"] < 1e-4 and parts["agree"]["compiled_vs_eager"] < 1e-4  # fp32
    assert all(line["frames_per_s"] > 0 for line in parts["imagine"].values() if isinstance(line, dict))
    text = (tmp_path / "gpu_round.txt").read_text()
    assert "DRY RUN" in text and "goal MFU at d2, packed" in text and text.rstrip().splitlines()[-1].startswith("done")


def test_without_a_gpu_it_says_so_and_names_the_dry_run(tmp_path):
    if torch.cuda.is_available():
        return  # a GPU machine runs the real round
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no GPU is visible: use --dry-run" in proc.stderr
    assert not (tmp_path / "out").exists()
