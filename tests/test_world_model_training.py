"""Training the world model on real (small) Atari data: overfitting, held-out NLL, resume, NaN guard."""

import contextlib
import json
import subprocess
import sys

import pytest
import torch

from scaleworld.data.dataset import OfflineDataset, verify_dataset
from scaleworld.data.layout import DatasetError
from scaleworld.data.sampling import split_episodes
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.fidelity import evaluate_fidelity
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.models.encode import encode_dataset
from scaleworld.models.model_files import load_dynamics, load_tokenizer
from scaleworld.training.config import TrainConfig, matched_steps, tokens_to_steps
from scaleworld.training.runs import train_dynamics, train_tokenizer
from scaleworld.training.trainer import TrainingDiverged, lr_factor

SMALL = DynamicsConfig(width=64, depth=2, heads=4, context=16)


def _train(steps, **kw):
    return TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=10, eval_every=kw.pop("eval_every", 50),
                       checkpoint_every=kw.pop("checkpoint_every", 50), log_every=5, **kw)


def test_token_dataset_records_its_tokenizer_and_matches_its_encoding(breakout_tokens, breakout_ds, frozen_tokenizer):
    m = verify_dataset(breakout_tokens)
    tokenizer, identity = load_tokenizer(frozen_tokenizer)
    assert m["tokenizer"]["sha256"] == identity["sha256"]
    assert m["episodes"] == json.loads((breakout_ds / "manifest.json").read_text())["episodes"]
    tokens, pixels = OfflineDataset.open(breakout_tokens).data, OfflineDataset.open(breakout_ds).data
    assert tokens["tokens"].shape == (600, 32) and tokens["tokens"].dtype == torch.uint8
    assert torch.equal(torch.as_tensor(tokens["tokens"][:50]), tokenizer.encode(torch.as_tensor(pixels["pixels"][:50])))
    assert torch.equal(torch.as_tensor(tokens["action"]), torch.as_tensor(pixels["action"]))
    with pytest.raises(ScaleworldError, match="already exists"):
        encode_dataset(tokenizer_dir=frozen_tokenizer, data_dir=breakout_ds, out=breakout_tokens, progress=False)
    with pytest.raises(ScaleworldError, match="already a token dataset"):
        encode_dataset(tokenizer_dir=frozen_tokenizer, data_dir=breakout_tokens, out=breakout_tokens.parent / "x",
                       progress=False)


def test_corrupted_token_dataset_is_detected(tmp_path, breakout_tokens):
    import shutil

    copy = tmp_path / "t"
    shutil.copytree(breakout_tokens, copy)
    f = copy / "storage" / "tokens.memmap"
    raw = bytearray(f.read_bytes())
    raw[7] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="tokens.memmap: checksum mismatch"):
        verify_dataset(copy)


def test_overfitting_a_tiny_real_dataset_drives_the_loss_far_down(tmp_path, breakout_tokens):
    info = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL,
                          train=_train(150, eval_every=150), val_fraction=0.0, progress=False)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert history[-1]["step"] == 150
    first = 32 * torch.log(torch.tensor(32.0)).item()  # an untrained model's NLL, ~110.9 nats
    assert info["final"]["loss_latent"] < 0.1 * first
    assert (tmp_path / "run" / "logs").is_dir() and (tmp_path / "run" / "dynamics.pt").is_file()


def _unigram_nll(ds, train_eps, val_eps):
    """Held-out NLL (nats/frame) of per-variable token frequencies counted on the training episodes."""
    tokens = torch.as_tensor(ds.data["tokens"]).long()

    def rows(eps):
        return torch.cat([torch.arange(int(ds.episode_starts[e]), int(ds.episode_starts[e] + ds.episode_lengths[e]))
                          for e in eps.tolist()])

    train, val = tokens[rows(train_eps)], tokens[rows(val_eps)]
    nll = 0.0
    for g in range(tokens.shape[1]):
        counts = torch.bincount(train[:, g], minlength=32).double() + 0.5  # add-1/2 smoothing
        logp = (counts / counts.sum()).log()
        nll -= logp[val[:, g]].mean().item()
    return nll


def test_held_out_nll_of_a_trained_model_beats_the_unigram_baseline(tmp_path, breakout_tokens, frozen_tokenizer,
                                                                    capsys):
    info = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, train=_train(200),
                          val_fraction=0.25, split_seed=0, progress=False)
    ds = OfflineDataset.open(breakout_tokens)
    train_eps, val_eps = split_episodes(len(ds.episode_lengths), val_fraction=0.25, seed=0)
    baseline = _unigram_nll(ds, train_eps, val_eps)
    record = evaluate_fidelity(dynamics_dir=tmp_path / "run", tokenizer_dir=frozen_tokenizer,
                               token_dirs=[breakout_tokens], context_steps=4, horizon=4, rollouts=4,
                               out=tmp_path / "fidelity.json")
    nll = record["games"]["Breakout"]["nll_nats_per_frame"]
    assert baseline > 2.0  # the tokens carry information, so the comparison means something
    assert nll < baseline - 1.0, (nll, baseline)  # more than a nat per frame better
    assert abs(nll - info["final"]["val_loss_latent"]) < 0.5 * nll + 0.5  # eval and trainer agree roughly
    saved = json.loads((tmp_path / "fidelity.json").read_text())
    game = saved["games"]["Breakout"]
    # the recorded baselines: the unigram agrees with the count above (other smoothing, the first frames
    # of episodes left out); whether the model beats both is recorded (this 200-step model: 1.06 nats
    # against copy-last-frame 1.00, unigram 2.36)
    assert game["baseline_nll"]["unigram"] == pytest.approx(baseline, abs=0.2)
    assert game["beats_baselines"] is (nll < min(game["baseline_nll"].values()))
    from scaleworld.cli.main import main  # the command prints the same figures
    assert main(["eval", "fidelity", "--dynamics", str(tmp_path / "run"), "--tokenizer", str(frozen_tokenizer),
                 "--tokens", str(breakout_tokens), "--context-steps", "4", "--horizon", "4", "--rollouts", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"(baselines: unigram {game['baseline_nll']['unigram']:.4f}, copy last frame" in printed
    assert len(game["open_loop"]["psnr"]) == 4 and all(p > 5 for p in game["open_loop"]["psnr"])
    # Beside each horizon step, the tokenizer alone on the same real frames: the floor of the model's error.
    assert len(game["open_loop"]["tokenizer_psnr"]) == 4 and all(p > 5 for p in game["open_loop"]["tokenizer_psnr"])
    assert game["reward_mae"] >= 0 and game["held_out_episodes"] == len(val_eps)


@contextlib.contextmanager
def _killed_at_sample(call: int):
    """The `call`-th batch drawn (training or held-out) raises KeyboardInterrupt: a run killed mid-step."""
    import scaleworld.data.sampling as sampling

    original = sampling.MultiGameWindows.sample
    calls = {"n": 0}

    def sample(self, batch):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt("killed")
        return original(self, batch)

    sampling.MultiGameWindows.sample = sample
    try:
        yield
    finally:
        sampling.MultiGameWindows.sample = original


def test_resumed_training_ends_bit_identical_to_an_uninterrupted_run(tmp_path, breakout_tokens):
    config = _train(24, eval_every=8, checkpoint_every=8, eval_batches=1)
    train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "whole", model=SMALL, train=config, progress=False)

    # The same run, interrupted inside step 19 (after the checkpoint at step 16), then resumed.
    with _killed_at_sample(19 + 2), pytest.raises(KeyboardInterrupt):  # +2: the evaluations at steps 8, 16
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "split", model=SMALL, train=config,
                       progress=False)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["step"] == 16
    assert not (tmp_path / "split" / "dynamics.pt").exists()
    train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "split", model=SMALL, train=config, progress=False)

    a, _ = load_dynamics(tmp_path / "whole")
    b, _ = load_dynamics(tmp_path / "split")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    ha = json.loads((tmp_path / "whole" / "metrics.json").read_text())["history"]
    hb = json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]
    assert ha == hb


@pytest.mark.parametrize("train_seed, split_seed", [(1, 0), (0, 3)])
def test_a_tokenizer_never_trains_on_the_dynamics_models_held_out_episodes(tmp_path, breakout_ds, train_seed,
                                                                          split_seed):
    """The split is by split_seed alone: the held-out episodes the tokenizer is measured on (all of
    their frames: there are fewer than the measurement's cap) are exactly the dynamics models'."""
    from scaleworld.data.sampling import episode_rows
    from scaleworld.models.tokenizer_config import TokenizerConfig

    ds = OfflineDataset.open(breakout_ds)
    config = TokenizerConfig(channels=(8, 8, 8, 8))
    info = train_tokenizer(data_dirs=[breakout_ds], out=tmp_path / "tok", config=config, split_seed=split_seed,
                           train=TrainConfig(steps=2, batch_size=4, seed=train_seed), progress=False)
    _, held_out = split_episodes(len(ds.episode_lengths), val_fraction=0.1, seed=split_seed)
    by_train_seed = split_episodes(len(ds.episode_lengths), val_fraction=0.1, seed=train_seed)[1]
    assert not torch.equal(held_out, by_train_seed)  # the two candidate splits differ: the test can tell
    quality = info["quality"]["Breakout"]
    assert quality["frames_from"] == "held_out" and info["split_seed"] == split_seed
    assert quality["frames"] == len(episode_rows(ds.episode_starts, ds.episode_lengths, held_out))


def _diverge_at_draw(monkeypatch, draw: int) -> None:
    """Put a NaN reward into the `draw`-th batch the dynamics runs sample (evaluations draw too)."""
    import scaleworld.data.sampling as sampling

    original = sampling.MultiGameWindows.sample
    calls = {"n": 0}

    def nan_reward(self, batch):
        calls["n"] += 1
        td = original(self, batch)
        if calls["n"] == draw:
            td["next", "reward"][0, 0] = float("nan")
        return td

    monkeypatch.setattr(sampling.MultiGameWindows, "sample", nan_reward)


def test_a_nan_loss_stops_with_the_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, breakout_tokens,
                                                                                   monkeypatch):
    _diverge_at_draw(monkeypatch, 7 + 1)  # +1: the held-out evaluation at step 4
    with pytest.raises(TrainingDiverged, match=r"loss_reward is nan at step 7: .*checkpoint\.pt"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL,
                       train=_train(20, eval_every=4, checkpoint_every=4, eval_batches=1), progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["loss"].values() if v.is_floating_point())


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_nothing_behind(tmp_path, breakout_tokens,
                                                                             monkeypatch):
    _diverge_at_draw(monkeypatch, 1)
    with pytest.raises(TrainingDiverged, match=r"loss_reward is nan at step 1: .*no checkpoint was written yet"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL,
                       train=_train(20, eval_every=4, checkpoint_every=4, eval_batches=1), progress=False)
    assert not (tmp_path / "run").exists()  # no empty logs/ tree, no folder


def test_joint_training_adds_game_embeddings_and_scores_each_game(tmp_path, breakout_tokens, pong_tokens,
                                                                  frozen_tokenizer):
    info = train_dynamics(token_dirs=[breakout_tokens, pong_tokens], out=tmp_path / "joint", model=SMALL,
                          train=_train(20), val_fraction=0.2, progress=False)
    assert info["mode"] == "joint" and info["games"] == ["Breakout", "Pong"]
    model, _ = load_dynamics(tmp_path / "joint")
    assert model.config.games == ("Breakout", "Pong") and model.game_embed.num_embeddings == 2
    record = evaluate_fidelity(dynamics_dir=tmp_path / "joint", tokenizer_dir=frozen_tokenizer,
                               token_dirs=[breakout_tokens, pong_tokens], context_steps=2, horizon=2, rollouts=2)
    assert set(record["games"]) == {"Breakout", "Pong"} and "unmeasured" not in record
    # A game whose held-out split holds no transition (at toy scale: one 1-step episode) is named, and
    # the joint model's other games are still measured; a model with none measured fails.
    import scaleworld.evaluation.fidelity as fidelity

    measure = fidelity.one_step_metrics

    def no_pong(model, ds, *args, **kwargs):
        if ds.game == "Pong":
            raise fidelity.NoHeldOutTransitions("the held-out episodes have no transitions: collect more data")
        return measure(model, ds, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fidelity, "one_step_metrics", no_pong)
        record = evaluate_fidelity(dynamics_dir=tmp_path / "joint", tokenizer_dir=frozen_tokenizer,
                                   token_dirs=[breakout_tokens, pong_tokens], context_steps=2, horizon=2, rollouts=2)
        assert set(record["games"]) == {"Breakout"} and record["unmeasured"]["Pong"].startswith("the held-out")
        with pytest.raises(ScaleworldError, match="no transitions"):
            evaluate_fidelity(dynamics_dir=tmp_path / "joint", tokenizer_dir=frozen_tokenizer,
                              token_dirs=[pong_tokens], context_steps=2, horizon=2, rollouts=2)
    single = train_dynamics(token_dirs=[pong_tokens], out=tmp_path / "single", model=SMALL, train=_train(5),
                            progress=False)
    assert single["mode"] == "single"
    with pytest.raises(ScaleworldError, match="trained on \\['Pong'\\], not Breakout"):
        evaluate_fidelity(dynamics_dir=tmp_path / "single", tokenizer_dir=frozen_tokenizer,
                          token_dirs=[breakout_tokens])


def test_budgets_schedules_and_matching():
    assert tokens_to_steps(10_000, batch_size=16, seq_len=64) == 10
    assert tokens_to_steps(10_001, batch_size=16, seq_len=64) == 10  # ceil(9.77) = 10
    assert matched_steps(joint_steps=2600, num_games=26, rule="tokens_per_game") == 100
    assert matched_steps(joint_steps=2600, num_games=26, rule="total_steps") == 2600
    with pytest.raises(ScaleworldError, match="unknown matching rule"):
        matched_steps(joint_steps=1, num_games=1, rule="epochs")
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert lr_factor(55, cfg) == pytest.approx(0.55)
    with pytest.raises(ScaleworldError, match="train.steps=0"):
        TrainConfig(steps=0)
    with pytest.raises(ScaleworldError, match="train.logger='mlflow': use csv, tensorboard or wandb"):
        TrainConfig(logger="mlflow")


def test_tokenizer_training_lowers_reconstruction_error_and_is_resumable(tmp_path, breakout_ds):
    from scaleworld.models.tokenizer import TokenizerConfig

    config = TokenizerConfig(channels=(8, 16, 32, 32))
    train = TrainConfig(steps=30, batch_size=16, lr=2e-3, warmup_steps=5, eval_every=10, checkpoint_every=10)
    info = train_tokenizer(data_dirs=[breakout_ds], out=tmp_path / "tok", config=config, train=train,
                           progress=False)
    history = info["final"]
    runs = json.loads((tmp_path / "tok" / "metrics.json").read_text())["history"]
    assert runs[-1]["val_loss_reconstruction"] < 0.5 * runs[0]["val_loss_reconstruction"]
    assert info["scope"] == "per_game" and history["step"] == 30
    tokenizer, identity = load_tokenizer(tmp_path / "tok")
    assert identity["scope"] == "per_game" and len(identity["sha256"]) == 64
    with pytest.raises(ScaleworldError, match=r"other settings \(train.checkpoint_every: 10 in the checkpoint, 250"):
        train_tokenizer(data_dirs=[breakout_ds], out=tmp_path / "tok", config=config,
                        train=TrainConfig(steps=31, batch_size=16), progress=False)
    with pytest.raises(ScaleworldError, match="expected a token dataset"):
        train_dynamics(token_dirs=[breakout_ds], out=tmp_path / "x", model=SMALL, train=train)


def test_a_resumed_tokenizer_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, breakout_ds, pong_ds):
    """Sampled codes and BatchNorm statistics included: both are in the checkpoint."""
    from scaleworld.models.tokenizer import TokenizerConfig

    config = TokenizerConfig(channels=(8, 16, 32, 32))
    train = TrainConfig(steps=12, batch_size=8, lr=2e-3, warmup_steps=2, eval_every=4, checkpoint_every=4,
                        eval_batches=1)
    data = [breakout_ds, pong_ds]  # shared: each game's error weighted by its own variance
    train_tokenizer(data_dirs=data, out=tmp_path / "whole", config=config, train=train, progress=False)

    with _killed_at_sample(10 + 2), pytest.raises(KeyboardInterrupt):  # +2: the evaluations at steps 4 and 8
        train_tokenizer(data_dirs=data, out=tmp_path / "split", config=config, train=train, progress=False)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["step"] == 8
    info = train_tokenizer(data_dirs=data, out=tmp_path / "split", config=config, train=train, progress=False)
    a, b = (torch.load(tmp_path / run / "tokenizer.pt", weights_only=False)["state_dict"] for run in ("whole", "split"))
    assert a.keys() == b.keys() and any("running_var" in k for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert info["quality"] == json.loads((tmp_path / "whole" / "run.json").read_text())["quality"]


def test_a_run_folder_refuses_to_resume_a_run_of_another_model(tmp_path, breakout_tokens):
    train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL,
                   train=_train(2, eval_every=1, checkpoint_every=1), progress=False)
    wider = DynamicsConfig(width=96, depth=2, heads=4, context=16)
    with pytest.raises(ScaleworldError, match=r"other settings \(model.width: 64 in the checkpoint, 96 now"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=wider,
                       train=_train(2, eval_every=1, checkpoint_every=1), progress=False)


def test_edge_fair_windows_train_and_a_resume_with_other_windows_names_them(tmp_path, breakout_tokens):
    info = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, windows="edge_fair",
                          train=_train(4, eval_every=2, checkpoint_every=2), progress=False)
    assert info["windows"] == "edge_fair" and info["final"]["step"] == 4
    assert torch.isfinite(torch.tensor(info["final"]["loss_latent"]))
    with pytest.raises(ScaleworldError, match=r"other settings \(windows: 'edge_fair' in the checkpoint, absent now"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL,
                       train=_train(4, eval_every=2, checkpoint_every=2), progress=False)


def test_life_loss_as_the_termination_target_trains_and_is_scored_against_it(tmp_path, breakout_tokens,
                                                                           frozen_tokenizer):
    from scaleworld.objectives.world_model import DynamicsLoss

    ds = OfflineDataset.open(breakout_tokens)
    lost = torch.as_tensor(ds.data["next", "life_loss"])
    assert int(lost.sum()) > int(torch.as_tensor(ds.data["next", "terminated"]).sum())  # the point: more signal
    info = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, termination="life_loss",
                          train=_train(4, eval_every=2, checkpoint_every=2), progress=False)
    assert info["termination"] == "life_loss"
    model, identity = load_dynamics(tmp_path / "run")
    assert identity["termination"] == "life_loss"
    window = ds.data[:16].to_tensordict().reshape(1, 16)
    window["mask"] = torch.ones(1, 16, dtype=torch.bool)
    loss = DynamicsLoss(model, termination="life_loss")
    target = loss.termination_target(window)
    assert torch.equal(target, (window["next", "terminated"] | window["next", "life_loss"])[..., 0])  # rows: [B, T, 1]
    assert torch.equal(DynamicsLoss(model).termination_target(window), window["next", "terminated"][..., 0])
    with pytest.raises(ScaleworldError, match="termination='lives': use game_over or life_loss"):
        DynamicsLoss(model, termination="lives")
    record = evaluate_fidelity(dynamics_dir=tmp_path / "run", tokenizer_dir=frozen_tokenizer,
                               token_dirs=[breakout_tokens], context_steps=2, horizon=2, rollouts=2, seed=0)
    assert record["termination_target"] == "life_loss"
    assert record["games"]["Breakout"]["termination_f1"] is not None  # lost lives in the held-out episodes


def test_the_termination_target_enters_identities_only_when_chosen():
    from pathlib import Path

    from scaleworld.study.expand import build_graph
    from scaleworld.study.spec import SpecError
    from scaleworld.study.spec_load import load_spec

    smoke = Path(__file__).resolve().parents[1] / "studies" / "smoke.yaml"
    default = {j.id for j in build_graph(load_spec(smoke)).by_kind("dynamics")}
    chosen = build_graph(load_spec(smoke, ["train.termination=life_loss"])).by_kind("dynamics")
    assert all(j.config["termination"] == "life_loss" for j in chosen)
    assert default == {j.id for j in build_graph(load_spec(smoke, ["train.termination=game_over"])).by_kind("dynamics")}
    assert default.isdisjoint(j.id for j in chosen)
    with pytest.raises(SpecError, match="train.termination: 'lives': use game_over or life_loss"):
        load_spec(smoke, ["train.termination=lives"])


def test_a_tokenizer_that_diverges_is_stopped_by_the_guard_not_a_traceback(tmp_path, breakout_ds):
    """Weights blown up by an absurd learning rate give NaN logits: the code draw (a multinomial)
    once crashed on them; now the NaN reaches the loss and the guard names it, one line, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "train", "tokenizer", "--data", str(breakout_ds),
                           "--out", str(tmp_path / "tok"), "--steps", "30", "--lr", "1e30", "--no-progress"],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is nan at step" in lines[0] and "lower train.lr" in lines[0]
    assert not (tmp_path / "tok").exists()
