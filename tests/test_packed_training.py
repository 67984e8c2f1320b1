"""Filling the GPU: a training step that never reads the device, and packed runs (K runs of one
shape in one batched model) that equal K separate runs, resume exactly, and resume alone."""

import contextlib
import copy
import dataclasses
import json
import shutil

import pytest
import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import MultiGameWindows
from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.models.model_files import load_dynamics
from scaleworld.objectives.world_model import DynamicsLoss
from scaleworld.training.config import TrainConfig
from scaleworld.training.packed import PackedTrainer, pack_runs
from scaleworld.training.runs import prepare_dynamics, train_dynamics
from scaleworld.training.trainer import Trainer, TrainingDiverged

SMALL = DynamicsConfig(width=64, depth=2, heads=4, context=16)
TOLERANCE = 1e-5
"""Packed vs separate, final weights after 24 steps at lr 3e-3: measured up to 1.2e-6 (vmap's batched
GEMMs sum in another order than K separate ones, so not bitwise); the losses agree to ~1e-7."""


def _train(seed: int, steps: int = 24) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=10, eval_every=8, checkpoint_every=8,
                       log_every=4, eval_batches=1, seed=seed)


def _specs(tmp_path, tokens, name, seeds=(0, 1, 2, 3)):
    return [dict(token_dirs=tokens, out=tmp_path / f"{name}{s}", model=SMALL, train=_train(s)) for s in seeds]


def _weights(folder):
    return load_dynamics(folder)[0].state_dict()


def _max_difference(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@contextlib.contextmanager
def _killed_at_sample(call: int):
    """The `call`-th batch drawn by any run (training or held-out) raises KeyboardInterrupt (a pack's
    step draws one batch per run, gathered together)."""
    original = MultiGameWindows.draw
    calls = {"n": 0}

    def draw(self, batch):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt("killed")
        return original(self, batch)

    MultiGameWindows.draw = draw
    try:
        yield
    finally:
        MultiGameWindows.draw = original


def test_a_training_step_reads_nothing_back_from_the_device(breakout_tokens, tmp_path):
    """On the meta device a tensor has no values: any .item(), bool() or float() of a device tensor
    in the step (a sync on CUDA) raises there. The step, the resident windows and the NaN guard's
    record run on it; reading the guard (the one sync, at log steps) is what fails."""
    ds = OfflineDataset.open(breakout_tokens)
    with torch.device("meta"):
        net = DynamicsModel(DynamicsConfig.from_dict({**SMALL.to_dict(), "groups": 32, "classes": 32}))
    view = MultiGameWindows([ds], seq_len=16, generator=torch.Generator().manual_seed(0), resident_on="meta")
    assert view.sample(4)["tokens"].device.type == "meta"
    trainer = Trainer(loss=DynamicsLoss(net), sample_train=view.sample, sample_val=None, config=_train(0),
                      run_dir=tmp_path / "run", generators={}, device="meta", progress=False)
    for _ in range(3):
        metrics = trainer.train_step()
    assert trainer.step == 3 and metrics["loss_latent"].device.type == "meta"
    with pytest.raises(RuntimeError, match="meta"):
        trainer.check_finite()  # the read: on CUDA the only sync, every log_every steps

    run = prepare_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "packed", model=SMALL, train=_train(0))
    runs = [run, copy.copy(run)]
    for r in runs:
        r.train_view.store = r.train_view.store.to("meta")
    packed = PackedTrainer(runs=runs, configs=[_train(0), _train(1)], device="meta", progress=False)
    assert packed.params["latent_head.weight"].shape[0] == 2
    for _ in range(2):
        metrics = packed.train_step()
    assert metrics["loss_latent"].shape == (2,)


def test_the_nan_guard_names_the_step_and_term_and_says_how_late_it_read(tmp_path, breakout_tokens, monkeypatch):
    import scaleworld.data.sampling as sampling

    original = sampling.gather_windows
    calls = {"n": 0}

    def nan_reward(rows, index, **columns):
        calls["n"] += 1
        td = original(rows, index, **columns)
        if calls["n"] == 2 and td.ndim == 2:  # a run's second training batch [B, L]
            td["next", "reward"][0, 0] = float("nan")
        if calls["n"] == 1 and td.ndim == 3:  # a pack's first [K, B, L]: run 1's
            td["next", "reward"][1, 0, 0] = float("nan")
        return td

    monkeypatch.setattr(sampling, "gather_windows", nan_reward)
    with pytest.raises(TrainingDiverged, match=r"loss_reward is nan at step 2: training stopped \(found at step 4"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, train=_train(0),
                       progress=False)
    assert not (tmp_path / "run").exists()  # found before the first checkpoint (step 8): nothing left
    calls["n"] = 0
    with pytest.raises(TrainingDiverged, match=r"run 1 \(p1\): loss_reward is nan at step 1: the pack stopped"):
        pack_runs(_specs(tmp_path, [breakout_tokens], "p", seeds=(0, 1)), progress=False)


def test_a_packed_run_of_four_seeds_equals_four_separate_runs(tmp_path, breakout_tokens, pong_tokens):
    for spec in _specs(tmp_path, [breakout_tokens], "alone"):
        train_dynamics(**spec, progress=False)
    records = pack_runs(_specs(tmp_path, [breakout_tokens], "packed"), progress=False)
    assert [r["train"]["seed"] for r in records] == [0, 1, 2, 3]
    for seed in range(4):
        alone, packed = tmp_path / f"alone{seed}", tmp_path / f"packed{seed}"
        assert _max_difference(_weights(alone), _weights(packed)) < TOLERANCE
        a, b = (json.loads((f / "metrics.json").read_text())["history"] for f in (alone, packed))
        assert [h["step"] for h in a] == [h["step"] for h in b] == [8, 16, 24]
        for ha, hb in zip(a, b):
            for key in ("loss_latent", "loss_reward", "val_loss_latent", "grad_norm"):
                assert ha[key] == pytest.approx(hb[key], rel=TOLERANCE), key
        run_a, run_b = (json.loads((f / "run.json").read_text()) for f in (alone, packed))
        assert {k: v for k, v in run_a.items() if k not in ("final", "dataset_paths")} == \
            {k: v for k, v in run_b.items() if k not in ("final", "dataset_paths")}
    # the seeds differ by far more than the tolerance: the comparison can tell runs apart
    assert _max_difference(_weights(tmp_path / "alone0"), _weights(tmp_path / "packed1")) > 1e3 * TOLERANCE
    # several games' single runs pack too (the same shape), each on its own data
    mixed = [dict(token_dirs=[tokens], out=tmp_path / f"mixed{i}", model=SMALL, train=_train(0))
             for i, tokens in enumerate((breakout_tokens, pong_tokens))]
    assert [r["games"] for r in pack_runs(mixed, progress=False)] == [["Breakout"], ["Pong"]]
    assert _max_difference(_weights(tmp_path / "alone0"), _weights(tmp_path / "mixed0")) < TOLERANCE


def test_a_packed_run_resumes_exactly_and_a_packed_checkpoint_resumes_alone(tmp_path, breakout_tokens):
    pack_runs(_specs(tmp_path, [breakout_tokens], "whole"), progress=False)
    # killed inside step 19 (after the checkpoints at 16): 4 runs draw per step, 4 more per evaluation
    with _killed_at_sample(4 * (18 + 2) + 2), pytest.raises(KeyboardInterrupt):
        pack_runs(_specs(tmp_path, [breakout_tokens], "split"), progress=False)
    for seed in range(4):
        assert torch.load(tmp_path / f"split{seed}" / "checkpoint.pt", weights_only=False)["step"] == 16
        assert not (tmp_path / f"split{seed}" / "dynamics.pt").exists()
    shutil.copytree(tmp_path / "split3", tmp_path / "lone3")
    pack_runs(_specs(tmp_path, [breakout_tokens], "split"), progress=False)  # resumed packed
    for seed in range(4):
        whole, split = _weights(tmp_path / f"whole{seed}"), _weights(tmp_path / f"split{seed}")
        assert all(torch.equal(whole[k], split[k]) for k in whole), seed
        a, b = (json.loads((tmp_path / f"{n}{seed}" / "metrics.json").read_text()) for n in ("whole", "split"))
        assert a["history"] == b["history"] and b["resumed_at"] == [16]
    # one run of the interrupted pack, resumed alone by the separate trainer (its checkpoint is the same format)
    train_dynamics(**_specs(tmp_path, [breakout_tokens], "lone", seeds=(3,))[0], progress=False)
    assert json.loads((tmp_path / "lone3" / "metrics.json").read_text())["resumed_at"] == [16]
    assert _max_difference(_weights(tmp_path / "whole3"), _weights(tmp_path / "lone3")) < TOLERANCE


def test_a_pack_refuses_runs_that_differ_in_more_than_the_seed(tmp_path, breakout_tokens):
    specs = _specs(tmp_path, [breakout_tokens], "p", seeds=(0, 1))
    specs[1]["train"] = dataclasses.replace(_train(1), lr=1e-3)
    with pytest.raises(ScaleworldError, match="share the model and every training setting but the seed"):
        pack_runs(specs, progress=False)
    specs = _specs(tmp_path, [breakout_tokens], "q", seeds=(0, 1))
    specs[1]["model"] = DynamicsConfig(width=64, depth=1, heads=4, context=16)
    with pytest.raises(ScaleworldError, match="share the model"):
        pack_runs(specs, progress=False)


def test_a_study_with_launcher_pack_trains_same_shape_dynamics_jobs_together(confound_study, tmp_path):
    """The confound micro study (two games, every mode) with launcher.pack=2: each game's single runs
    share a process, and so do the matched ones; every model is within the tolerance of the same job
    of the study run unpacked, and the packs are the ones `packs` fixes from the graph."""
    import subprocess
    import sys

    from scaleworld.study.packing import packs
    from scaleworld.study.store import RunStore

    spec, reference = confound_study
    root = tmp_path / "root"
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "run", str(spec), f"run_root={root}",
                           "launcher.pack=2", "policy.enabled=false", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(root)
    graph = store.read_plan()
    expected = packs(graph, 2)
    together = {}
    for job in graph.by_kind("dynamics"):
        record = json.loads((store.job_dir(job) / "done.json").read_text())["outputs"]
        together[job.id] = tuple(record.get("packed_with", [job.id]))
        assert together[job.id] == expected[job.id]
        alone = reference / "dynamics" / job.id
        assert _max_difference(_weights(store.job_dir(job)), _weights(alone)) < TOLERANCE
    sizes = sorted(len(p) for p in set(together.values()))
    assert sizes.count(2) == 2, together  # single Pong + Breakout, matched Pong + Breakout


def test_a_compiler_failure_falls_back_to_eager_after_one_line(monkeypatch, capsys):
    from scaleworld.training.trainer import compiled_or_eager

    def broken_compiler(fn):
        def call(*args):
            raise RuntimeError("no C++ compiler found\nthe rest of the message")
        return call

    monkeypatch.setattr(torch, "compile", broken_compiler)
    step = compiled_or_eager(lambda x: x + 1, enabled=True)
    assert step(1) == 2 and step(2) == 3
    assert capsys.readouterr().err == ("torch.compile failed (RuntimeError: no C++ compiler found); "
                                       "training eagerly\n")  # once, on the first call
    with pytest.raises(ZeroDivisionError):  # an error of the function itself still surfaces
        compiled_or_eager(lambda x: x / 0, enabled=True)(1)
    assert compiled_or_eager(abs, enabled=False) is abs


def test_the_packer_caps_a_pack_by_the_estimated_memory_of_its_runs():
    """`launcher.pack` is a ceiling: a model size whose K runs' estimated training memory would not fit
    in `launcher.pack_memory_gb` (less the margin) packs fewer; the estimate follows its formula."""
    from scaleworld.models.dynamics_config import parameter_counts, training_bytes
    from scaleworld.models.ladders import get_size
    from scaleworld.study.graph import Graph, Job
    from scaleworld.study.kinds import DynamicsStage
    from scaleworld.study.packing import MEMORY_MARGIN, pack_size

    d96 = get_size("paper-d96").config(context=64)
    per_token_layer = 34 * 512  # Korthikanti et al.'s 34 x width at ffn_mult 4
    heads = 16 * (1024 + 255 + 1) + 2 * 1024
    assert training_bytes(d96, batch=64) == 16 * parameter_counts(d96)["total"] + 64 * 64 * (96 * per_token_layer
                                                                                             + heads)

    def job(size: str) -> Job:
        stage = DynamicsStage(model=get_size(size).config(context=64).to_dict(),
                              train={**dataclasses.asdict(_train(0)), "batch_size": 64}, val_fraction=0.2, split_seed=0)
        return Job("dynamics", stage.config(), [], {})

    graph = Graph()  # no tokenizer job upstream: the model's own code shape (32 x 32)

    fits = int(MEMORY_MARGIN * 80 * 2**30 // training_bytes(d96, batch=64))
    assert fits == 6  # paper-d96 at batch 64 on an 80 GB GPU: 8 runs would not fit (the figure)
    assert pack_size(graph, job("paper-d96"), 8, 80.0) == 6
    assert pack_size(graph, job("paper-d2"), 8, 80.0) == 8
    assert pack_size(graph, job("paper-d96"), 8, 1.0) == 1  # never below one run
    assert pack_size(graph, job("paper-d96"), 8, None) == 8  # no cap asked


def test_a_compiled_training_step_compiles_once(breakout_tokens, tmp_path):
    """After its first step a compiled dynamics step is never compiled again (a recompile costs a
    whole compile on a GPU; the rotary angles' per-device cache used to cause one on the second step),
    alone and packed. aot_eager: dynamo's guards and graphs without inductor's code generation."""
    from scaleworld.training.trainer import compile_counts

    torch._dynamo.reset()
    run = prepare_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "alone", model=SMALL, train=_train(0))
    config = dataclasses.replace(_train(0), compile=True)
    alone = Trainer(loss=run.loss, sample_train=run.train_view.sample, sample_val=None, config=config,
                    run_dir=tmp_path / "alone", generators={}, progress=False, compile_options={"backend": "aot_eager"})
    runs = [prepare_dynamics(token_dirs=[breakout_tokens], out=tmp_path / f"p{s}", model=SMALL, train=_train(s))
            for s in (0, 1)]
    packed = PackedTrainer(runs=runs, configs=[config, dataclasses.replace(config, seed=1)], device="cpu",
                           progress=False, compile_options={"backend": "aot_eager"})
    for trainer in (alone, packed):
        trainer.train_step()
        after_first = compile_counts()
        assert after_first["graphs"] >= 1
        for _ in range(3):
            trainer.train_step()
        assert compile_counts() == after_first
    assert compile_counts()["eager_fallbacks"] == 0
