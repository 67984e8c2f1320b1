"""What a job asks the cluster for (scaleworld.study.cluster): resources per kind, the cluster's own
settings, and the refusals of settings no cluster would take. The real cluster's view of the same
settings is in tests/test_slurm_study.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaleworld.study.cluster import kind_resources, slurm_parameters, uses_gpu
from scaleworld.study.graph import KINDS
from scaleworld.study.kinds import GPU_KINDS
from scaleworld.study.spec_load import load_spec

JOINT26 = str(Path(__file__).parents[1] / "studies" / "joint26.yaml")


def test_cpu_kinds_ask_for_no_gpu_and_a_kind_can_be_given_its_own_resources():
    spec = load_spec(JOINT26, ["launcher.resources.control.gpus=0", "launcher.resources.control.cpus=16",
                               "launcher.resources.dynamics.time_min=600"])
    launcher = spec.launcher
    for kind in KINDS:
        res = kind_resources(launcher, kind)
        expected_gpus = 0 if kind in ("collect", "anchor", "analysis", "control") else launcher.gpus
        assert res.gpus == expected_gpus, kind
        assert uses_gpu(launcher, kind) == (kind in GPU_KINDS and kind != "control"), kind
    assert kind_resources(launcher, "control").cpus == 16 and kind_resources(launcher, "expert").cpus == launcher.cpus
    assert kind_resources(launcher, "dynamics").time_min == 600
    assert kind_resources(launcher, "analysis").mem_gb == 16  # joint26.yaml's own resources section
    dynamics, collect = slurm_parameters(launcher, "dynamics"), slurm_parameters(launcher, "collect")
    assert dynamics["gpus_per_node"] == 1 and dynamics["timeout_min"] == 600
    assert "gpus_per_node" not in collect and collect["cpus_per_task"] == launcher.cpus
    driver = kind_resources(launcher, "driver")  # run --detach's driver: a small CPU job
    assert (driver.gpus, driver.cpus, driver.mem_gb, driver.time_min) == (0, 1, 4.0, launcher.time_min)
    assert not uses_gpu(launcher, "driver")
    bigger = load_spec(JOINT26, ["launcher.resources.driver.mem_gb=16"]).launcher
    assert kind_resources(bigger, "driver").mem_gb == 16
    assert slurm_parameters(bigger, "driver")["name"] == "scaleworld-driver"


def test_the_cluster_settings_reach_submitit():
    spec = load_spec(JOINT26, ["launcher.account=lab", "launcher.qos=high", "launcher.constraint=h100",
                               "launcher.job_name=wm", "launcher.setup=['module load cuda']",
                               "launcher.sbatch={mail-user: me@lab.org, exclude: node7}"])
    params = slurm_parameters(spec.launcher, "policy")
    assert params["name"] == "wm-policy"
    assert (params["slurm_account"], params["slurm_qos"], params["slurm_constraint"]) == ("lab", "high", "h100")
    collect = slurm_parameters(spec.launcher, "collect")  # no GPU: no GPU type asked for either
    assert "slurm_constraint" not in collect and collect["slurm_account"] == "lab"
    assert params["slurm_setup"] == ["module load cuda"]
    assert params["slurm_additional_parameters"] == {"mail-user": "me@lab.org", "exclude": "node7"}
    import submitit

    submitit.AutoExecutor(folder="/tmp/unused", cluster="slurm").update_parameters(**params)  # all known to submitit


def test_plan_shows_each_kinds_resources_and_the_cluster_settings():
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "plan", JOINT26, "launcher.account=lab",
                           "launcher.sbatch={reservation: week}", "launcher.resources.control.gpus=0"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("resources per SLURM job")[1]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("|")]
    rows = {c[0]: c[1:] for c in cells if c and c[0] in KINDS}
    assert rows["collect"][0] == "0" and rows["control"][0] == "0" and rows["dynamics"][0] == "1"
    assert rows["analysis"][1:3] == ["2", "16"]
    assert "slurm account: lab" in proc.stdout and "slurm sbatch --reservation=week" in proc.stdout


@pytest.mark.parametrize("override,key", [
    ("launcher.resources.bogus.cpus=2", "launcher.resources.bogus"),
    ("launcher.resources.collect.gpu=1", "launcher.resources.collect.gpu"),
    ("launcher.resources.collect.cpus=0", "launcher.resources.collect.cpus"),
    ("launcher.resources.collect.cpus=1.5", "launcher.resources.collect.cpus"),
    ("launcher.resources.collect.mem_gb=.inf", "launcher.resources.collect.mem_gb"),
    ("launcher.resources.collect.time_min='3'", "launcher.resources.collect.time_min"),
    ("launcher.sbatch={time: 5}", "launcher.sbatch.time"),
    ("launcher.sbatch={bogus-option: 1}", "launcher.sbatch.bogus-option"),
    ("launcher.sbatch={exclude: [a, b]}", "launcher.sbatch.exclude"),
    ("launcher.account='two words'", "launcher.account"),
    ("launcher.job_name='a/b'", "launcher.job_name"),
    ("launcher.setup=['']", "launcher.setup[0]"),
    ("launcher.mem_gb=.inf", "launcher.mem_gb"),
])
def test_a_setting_no_cluster_would_take_is_one_line_naming_its_key(tmp_path, override, key):
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "validate", JOINT26, override,
                           f"run_root={tmp_path / 'root'}"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}:"), proc.stderr
    assert not (tmp_path / "root").exists()


def test_the_parameter_formulas_behind_the_disk_estimate_count_the_modules_parameters():
    from scaleworld.models.agent import ActorCritic, AgentConfig
    from scaleworld.models.policy_config import agent_parameters
    from scaleworld.models.tokenizer import Tokenizer
    from scaleworld.models.tokenizer_config import TokenizerConfig, tokenizer_parameters

    for config in (TokenizerConfig(), TokenizerConfig(channels=(4, 8), groups=4, classes=8)):
        assert tokenizer_parameters(config) == sum(p.numel() for p in Tokenizer(config).parameters())
    for config in (AgentConfig(), AgentConfig(units=8, layers=1, hidden_size=64), AgentConfig(layers=0)):
        assert agent_parameters(config) == sum(p.numel() for p in ActorCritic(config).parameters())


def test_the_tokenizers_multiply_accumulates_by_formula_are_its_convolutions_and_linear_maps():
    """Counted from the layers' definitions on a real forward pass: a convolution's output pixels x
    cin x kernel area per output channel, a transposed convolution's input pixels x cout x kernel area
    per input channel, a linear map's weights."""
    import torch

    from scaleworld.models.tokenizer import Tokenizer
    from scaleworld.models.tokenizer_config import TokenizerConfig, tokenizer_macs

    for config in (TokenizerConfig(), TokenizerConfig(channels=(4, 8), groups=4, classes=8)):
        net, counted = Tokenizer(config), {"encode": 0, "decode": 0}

        def count(part, counted=counted):
            def hook(module, inputs, output):
                kernel = module.weight.shape[2] * module.weight.shape[3] if module.weight.dim() == 4 else 1
                if isinstance(module, torch.nn.ConvTranspose2d):
                    counted[part] += inputs[0][0].numel() * module.out_channels * kernel
                elif isinstance(module, torch.nn.Conv2d):
                    counted[part] += output[0].numel() * module.in_channels * kernel
                else:
                    counted[part] += module.in_features * module.out_features
            return hook

        for part, modules in (("encode", [*net.encoder, net.to_logits]), ("decode", [net.from_latent, *net.decoder])):
            for m in modules:
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                    m.register_forward_hook(count(part))
        net.eval()
        with torch.no_grad():
            net.decode(net.encode(torch.zeros(1, config.frame_size, config.frame_size, 3, dtype=torch.uint8)))
        assert tokenizer_macs(config) == counted


def test_plan_estimates_every_kinds_hours_on_the_device_it_holds_and_states_the_assumptions():
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "plan", JOINT26], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[:proc.stdout.index("estimate, assumed")]
    rows = {cells[0]: cells[6:8] for line in table.splitlines()
            if len(cells := [c.strip() for c in line.split("|")[1:-1]]) == 8 and cells[0] in (*KINDS, "total")}
    assert set(rows) == {"expert", "collect", "tokenizer", "tokens", "dynamics", "fidelity", "anchor", "policy",
                         "control", "analysis", "total"}
    for kind in ("collect", "anchor", "analysis"):  # joint26's CPU kinds: no GPU-hours
        assert rows[kind][0] == "-" and float(rows[kind][1]) > 0, rows[kind]
    for kind in ("expert", "tokenizer", "tokens", "dynamics", "fidelity", "policy", "control"):
        assert float(rows[kind][0].replace(",", "")) > 0 and rows[kind][1] == "-", rows[kind]
    assert rows["dynamics"][0] == "1,246.03"  # 6 x parameters x tokens at 40% of an H100, as before
    total = sum(float(rows[k][0].replace(",", "")) for k in rows if k != "total" and rows[k][0] != "-")
    assert float(rows["total"][0].replace(",", "")) == pytest.approx(total, rel=1e-3)
    assert "estimate, assumed: model work at 40% of 989 TFLOP/s" in " ".join(proc.stdout.split())


def test_plan_prints_the_disk_per_kind_with_and_without_checkpoints():
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "plan", JOINT26], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "disk once finished, estimated (launcher.keep_checkpoints=false)" in text
    assert "with launcher.keep_checkpoints=true:" in text and "| total | 23,514 |" in text
