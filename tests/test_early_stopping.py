"""Early stopping as a second reading: the validation split, the best checkpoint, its resume, and
fidelity at both checkpoints (on real, small Atari token data)."""

import dataclasses
import json

import pytest
import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import split_episodes, split_validation
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.fidelity import evaluate_fidelity
from scaleworld.models.model_files import load_dynamics
from scaleworld.training.runs import train_dynamics

from .test_world_model_training import SMALL, _killed_at_sample, _train


def _overfitting(steps, **kw):
    """lr 3e-2 on a few hundred frames overfits within 30 steps: the best checkpoint is rarely the last."""
    return dataclasses.replace(_train(steps, **kw), lr=3e-2)


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_the_validation_split_comes_from_the_training_episodes_only(split_seed):
    for episodes in (3, 4, 10, 57):
        train, held_out = split_episodes(episodes, val_fraction=0.2, seed=split_seed)
        fit, validation = split_validation(train, fraction=0.25, seed=split_seed)
        assert len(fit) >= 1 and len(validation) >= 1
        assert set(fit.tolist()).isdisjoint(validation.tolist())
        assert set(fit.tolist()) | set(validation.tolist()) == set(train.tolist())
        assert set(validation.tolist()).isdisjoint(held_out.tolist())  # never a fidelity episode


def test_too_few_training_episodes_for_a_validation_split_get_the_fix():
    with pytest.raises(ScaleworldError, match="1 training episode\\(s\\) cannot give a validation split: collect more "
                                              "data or set train.validation_fraction=0"):
        split_validation(torch.tensor([3]), fraction=0.2, seed=0)
    with pytest.raises(ScaleworldError, match="must be in \\(0, 1\\)"):
        split_validation(torch.arange(5), fraction=1.0, seed=0)


def test_a_run_keeps_the_weights_of_its_lowest_validation_nll(tmp_path, breakout_tokens):
    config = _overfitting(30, eval_every=3, checkpoint_every=3, eval_batches=2)
    info = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, train=config,
                          validation_fraction=0.3, progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    curve = {h["step"]: h["val_loss_latent"] for h in metrics["history"]}
    best_step = min(curve, key=lambda s: (curve[s], s))
    assert info["best"]["step"] == best_step and info["best"]["validation_nll"] == curve[best_step]
    assert metrics["best"] == {"step": best_step, "val_loss_latent": curve[best_step]}
    final, _ = load_dynamics(tmp_path / "run")
    best, identity = load_dynamics(tmp_path / "run", best=True)
    assert identity["best"]["step"] == best_step
    differs = any(not torch.equal(a, b) for a, b in zip(final.state_dict().values(), best.state_dict().values()))
    assert best_step < 30 and differs  # overfitting: the best is an earlier, other model
    # the validation episodes were never trained on: they come out of the training side of the split
    ds = OfflineDataset.open(breakout_tokens)
    train, held_out = split_episodes(len(ds.episode_lengths), val_fraction=0.1, seed=0)
    _, validation = split_validation(train, fraction=0.3, seed=0)
    assert len(validation) >= 1 and set(validation.tolist()).isdisjoint(held_out.tolist())


def test_a_resumed_run_keeps_the_same_best_checkpoint(tmp_path, breakout_tokens):
    config = _overfitting(24, eval_every=4, checkpoint_every=8, eval_batches=1)
    whole = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "whole", model=SMALL, train=config,
                           validation_fraction=0.3, progress=False)
    with _killed_at_sample(19 + 4), pytest.raises(KeyboardInterrupt):  # +4: the evaluations at steps 4..16
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "split", model=SMALL, train=config,
                       validation_fraction=0.3, progress=False)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["best"] is not None
    split = train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "split", model=SMALL, train=config,
                           validation_fraction=0.3, progress=False)
    assert split["best"]["step"] == whole["best"]["step"]
    assert split["best"]["validation_nll"] == whole["best"]["validation_nll"]
    a, _ = load_dynamics(tmp_path / "whole", best=True)
    b, _ = load_dynamics(tmp_path / "split", best=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ScaleworldError, match=r"other settings \(validation_fraction: 0.3 in the checkpoint"):
        train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "split", model=SMALL, train=config,
                       validation_fraction=0.2, progress=False)


def test_fidelity_scores_the_final_and_the_best_checkpoint_on_the_same_rollouts(tmp_path, breakout_tokens,
                                                                                 frozen_tokenizer):
    config = _overfitting(30, eval_every=3, checkpoint_every=3, eval_batches=2)
    train_dynamics(token_dirs=[breakout_tokens], out=tmp_path / "run", model=SMALL, train=config,
                   validation_fraction=0.3, progress=False)
    settings = {"tokenizer_dir": frozen_tokenizer, "token_dirs": [breakout_tokens], "context_steps": 2,
                "horizon": 2, "rollouts": 4, "seed": 3}
    record = evaluate_fidelity(dynamics_dir=tmp_path / "run", **settings)
    game = record["games"]["Breakout"]
    nats, frames = torch.tensor(game["episode_nll"]).sum(0).tolist()  # per held-out episode: [nats, frames]
    assert len(game["episode_nll"]) == game["held_out_episodes"] and frames == game["transitions"]
    assert nats / frames == pytest.approx(game["nll_nats_per_frame"])
    # the training-split NLL: as many episodes as held out, from those it trained on (not the validation split)
    assert game["train_episodes"] == game["held_out_episodes"] and game["train_nll_nats_per_frame"] > 0
    best = record["best"]
    assert best["step"] == json.loads((tmp_path / "run" / "run.json").read_text())["best"]["step"]
    # the best checkpoint's figures are those of its weights alone, scored like any final model
    (tmp_path / "alone").mkdir()
    (tmp_path / "run" / "dynamics_best.pt").rename(tmp_path / "alone" / "dynamics.pt")
    alone = evaluate_fidelity(dynamics_dir=tmp_path / "alone", **settings)
    assert alone["games"] == best["games"] and "best" not in alone
    again = evaluate_fidelity(dynamics_dir=tmp_path / "run", **settings)
    assert again["games"] == record["games"]  # the final reading does not depend on the best one
