"""World-model fidelity on held-out episodes: NLL, reward error, termination F1, open-loop rollouts.

- Next-latent NLL in nats per frame (summed over the 32 variables), over every transition of the
  held-out episodes, read in consecutive windows of the model's context. Comparable across sizes
  and between single and joint runs because all read the same frozen tokenizer's tokens.
- Training-split NLL: the same NLL on as many episodes (drawn by the seed) of those the model
  trained on: what regime-rule/2's mechanism check compares across sizes (do bigger models fit
  their training data better?).
- Baselines (``baseline_nll``, `scaleworld/evaluation/baselines.py`): the unigram and the
  copy-last-frame predictors of the next latent, fitted on the game's training split and scored on
  the same held-out transitions in the same units; ``beats_baselines``: the model's NLL is below
  both. A model that does not beat them has learned nothing a trivial predictor does not know.
- Reward: mean absolute error of the predicted (expected) reward; termination: F1 at p > 0.5.
- Open loop: from `rollouts` real contexts of `context_steps` steps, the model imagines `horizon`
  steps (most likely latent per variable, real actions) through its KV cache; each imagined frame
  is decoded by the tokenizer and compared with the real frame: MSE and PSNR per horizon step.
  Beside them, ``tokenizer_mse`` / ``tokenizer_psnr``: the same real frames through the tokenizer
  alone (decode of their stored tokens), the floor no dynamics model can beat. The gap between the
  two is the dynamics model's own error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.files import write_json_atomic
from scaleworld.data.sampling import split_episodes, split_validation, window_rows
from scaleworld.errors import ScaleworldError
from scaleworld.evaluation.baselines import BASELINES, NextLatentBaselines, fit_baselines
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import TERMINATION_TARGETS
from scaleworld.models.tokenizer_quality import psnr_db
from scaleworld.models.twohot import expected_value
from scaleworld.objectives.world_model import DynamicsLoss
from scaleworld.version import __version__

FIDELITY_FORMAT = "scaleworld.fidelity/1"


class NoHeldOutTransitions(ScaleworldError):
    """A game's held-out episodes hold no transition to score (too little data for the split)."""


def held_out_windows(ds: OfflineDataset, episodes: torch.Tensor, length: int):
    """(start, length, i): consecutive non-overlapping windows [start, start+length) covering each
    held-out episode, i its position in `episodes`."""
    for i, e in enumerate(episodes.tolist()):
        start, n = int(ds.episode_starts[e]), int(ds.episode_lengths[e])
        for offset in range(0, n, length):
            yield start + offset, min(length, n - offset), i


@torch.no_grad()
def one_step_metrics(model: DynamicsModel, ds: OfflineDataset, episodes: torch.Tensor, game: int | None,
                     batch: int = 32, termination: str = TERMINATION_TARGETS[0],
                     baselines: NextLatentBaselines | None = None) -> dict[str, Any]:
    """Held-out NLL, reward MAE and termination F1; the termination is scored against the target the
    model was trained on (`termination`, recorded with it). ``episode_nll``: per episode (in the
    order given) its summed NLL and its scored frames, [[nats, frames], ...], so an analysis can
    resample the held-out episodes. With `baselines`, ``baseline_nll`` {name: nats per frame} of
    each on the same transitions."""
    loss = DynamicsLoss(model, termination=termination)
    c = model.config
    abs_err = 0.0
    tp = fp = fn = 0
    steps = 0
    windows = list(held_out_windows(ds, episodes, c.context))
    per_episode = torch.zeros(len(episodes), 2, dtype=torch.float64)  # [E, (nats, frames)]
    baseline_sums = dict.fromkeys(BASELINES, 0.0)
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]
        first, remaining, which = torch.tensor(chunk).T  # [3, B]
        index, mask = window_rows(first, remaining, c.context)
        td = ds.data[index.reshape(-1)].reshape(len(chunk), c.context).to_tensordict()
        td["mask"] = mask
        if game is not None:
            td["game"] = torch.full(td.batch_size, game, dtype=torch.int64)
        terms = loss.terms(td)
        per_episode[:, 0].index_add_(0, which, (terms["latent"] * terms["latent_mask"]).sum(-1).double())
        per_episode[:, 1].index_add_(0, which, terms["latent_mask"].sum(-1).double())
        if baselines is not None:
            for name, nll in baselines.nll(td["tokens"]).items():  # [B, T-1], the model's positions
                baseline_sums[name] += float((nll.double() * terms["latent_mask"]).sum())
        mask = td["mask"]
        reward = expected_value(terms["out"]["reward_logits"], c.reward_limit)
        abs_err += float(((reward - td["next", "reward"].squeeze(-1)).abs() * mask).sum())  # rows: [B, T, 1]
        pred = (terms["out"]["termination_logits"] > 0) & mask
        true = loss.termination_target(td) & mask
        tp += int((pred & true).sum())
        fp += int((pred & ~true).sum())
        fn += int((~pred & true).sum())
        steps += int(mask.sum())
    nll_sum, frames = per_episode.sum(0).tolist()
    if frames == 0:
        raise NoHeldOutTransitions("the held-out episodes have no transitions: collect more data or raise val_fraction")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None  # None: no terminations to score
    record = {"nll_nats_per_frame": nll_sum / frames, "reward_mae": abs_err / steps, "termination_f1": f1,
              "transitions": int(frames), "episode_nll": per_episode.tolist()}
    if baselines is not None:
        record["baseline_nll"] = {name: total / frames for name, total in baseline_sums.items()}
        record["beats_baselines"] = bool(record["nll_nats_per_frame"] < min(record["baseline_nll"].values()))
    return record


def game_baselines(ds: OfflineDataset, identity: dict[str, Any], *, classes: int) -> NextLatentBaselines:
    """The baselines of `ds`'s game, fitted on the train side of the model's episode split (all of it:
    the same for every model of the game that shares the split, whatever its validation split)."""
    train, _ = split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                              seed=identity["split_seed"])
    tokens = ds.data["tokens"]
    starts, lengths = ds.episode_starts, ds.episode_lengths
    return fit_baselines((torch.as_tensor(tokens[int(starts[e]): int(starts[e]) + int(lengths[e])])
                          for e in train.tolist()), classes=classes)


@torch.no_grad()
def open_loop(model: DynamicsModel, tokenizer, ds: OfflineDataset, pixels: OfflineDataset, episodes: torch.Tensor,
              game: int | None, *, context_steps: int, horizon: int, rollouts: int,
              generator: torch.Generator, keep: int = 0) -> dict[str, Any]:
    """MSE / PSNR per horizon step of imagined frames vs real ones, and of the tokenizer's own
    reconstructions of the same real frames (pixels in [0, 1]). With `keep`, ``frames`` holds the
    first `keep` rollouts as uint8 [keep, horizon, S, S, 3]: ``real``, ``tokenizer``, ``imagined``."""
    need = context_steps + horizon
    if need > model.config.context:
        raise ScaleworldError(f"context_steps + horizon = {need} exceeds the model's context {model.config.context}")
    long_enough = [e for e in episodes.tolist() if int(ds.episode_lengths[e]) >= need]
    if not long_enough:
        return {"mse": [], "psnr": [], "tokenizer_mse": [], "tokenizer_psnr": [], "rollouts": 0}
    picks = torch.randint(len(long_enough), (rollouts,), generator=generator)
    starts = []
    for p in picks.tolist():
        e = long_enough[p]
        offset = int(torch.randint(int(ds.episode_lengths[e]) - need + 1, (1,), generator=generator))
        starts.append(int(ds.episode_starts[e]) + offset)
    index = torch.tensor(starts)[:, None] + torch.arange(need)[None, :]  # [R, need]
    tokens = torch.as_tensor(ds.data["tokens"][index.flatten()]).view(rollouts, need, -1).long()
    actions = torch.as_tensor(ds.data["action"][index.flatten()]).view(rollouts, need)
    frames = pixels.data["pixels"]
    real = torch.as_tensor(frames[index.flatten()]).view(rollouts, need, *frames.shape[1:])  # [R, need, S, S, 3]
    games = None if game is None else torch.full((rollouts,), game, dtype=torch.int64)
    cache = model.new_cache(rollouts)
    out = None
    for t in range(context_steps):  # real context
        out = model.step(cache, tokens[:, t], actions[:, t], games)
    mse, floor, imagined, recon = [], [], [], []
    for h in range(horizon):
        latent = out["latent_logits"][:, 0].argmax(-1)  # [R, G] imagined z_{context+h}
        imagined.append(tokenizer.decode(latent))  # [R, S, S, 3] uint8
        recon.append(tokenizer.decode(tokens[:, context_steps + h]))
        target = real[:, context_steps + h].float() / 255.0
        mse.append(float(((imagined[-1].float() / 255.0 - target) ** 2).mean()))
        floor.append(float(((recon[-1].float() / 255.0 - target) ** 2).mean()))
        out = model.step(cache, latent, actions[:, context_steps + h], games)
    record = {"mse": mse, "psnr": [psnr_db(m) for m in mse], "tokenizer_mse": floor,
              "tokenizer_psnr": [psnr_db(m) for m in floor],
              "rollouts": rollouts}
    if keep:
        record["frames"] = {"real": real[:keep, context_steps:], "tokenizer": torch.stack(recon, 1)[:keep],
                            "imagined": torch.stack(imagined, 1)[:keep]}
    return record


def _roles(datasets: list[OfflineDataset], identity: dict[str, Any]) -> dict[str, dict[str, OfflineDataset]]:
    """game -> {held_out, train}: the dataset whose held-out episodes are scored (one the model did
    not train on, if given: the data-matched control is scored on the game's usual data) and the one
    it trained on (for the training-split NLL; absent if none was given)."""
    trained = {d["manifest_sha256"] for d in identity.get("datasets") or [] if isinstance(d, dict)}
    roles: dict[str, dict[str, OfflineDataset]] = {}
    for ds in datasets:
        role = roles.setdefault(ds.game, {})
        if ds.content_id["manifest_sha256"] in trained:
            role["train"] = ds
            role.setdefault("held_out", ds)
        else:
            role["held_out"] = ds
    return roles


def _training_sample(ds: OfflineDataset, identity: dict[str, Any], count: int, seed: int) -> torch.Tensor:
    """`count` of the episodes the model trained on (its split's training side less its validation
    split), drawn by `seed`: the training-split NLL reads as many episodes as the held-out NLL."""
    train, _ = split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                              seed=identity["split_seed"])
    if identity.get("validation_fraction"):
        train, _ = split_validation(train, fraction=identity["validation_fraction"], seed=identity["split_seed"])
    picks = np.random.default_rng([seed, 3]).choice(len(train), size=min(len(train), max(1, count)), replace=False)
    return train[np.sort(picks)]


def _game_records(model: DynamicsModel, identity: dict[str, Any], tokenizer, datasets: list[OfflineDataset], *,
                  context_steps: int, horizon: int, rollouts: int, seed: int,
                  fitted: dict[str, NextLatentBaselines], unmeasured: dict[str, str]) -> dict[str, Any]:
    """{game: metrics} of one model on each game's held-out episodes (the model's own split), with
    ``train_nll_nats_per_frame``: the same NLL on as many of the episodes it trained on (None when
    its training data were not given). A joint model's game whose held-out episodes hold no
    transition (a split of one 1-step episode, at toy scale) goes into `unmeasured` with the reason,
    and the other games are measured; a model with no game measured fails."""
    from scaleworld.models.encode import open_source

    games = list(model.config.games)
    target = identity.get("termination", TERMINATION_TARGETS[0])  # what the termination head was trained on
    generator = torch.Generator().manual_seed(seed)  # the same rollouts for every model given this seed
    records = {}
    for roles in _roles(datasets, identity).values():
        ds = roles["held_out"]
        if games and ds.game not in games:
            raise ScaleworldError(f"{ds.path}: game {ds.game} is not one of the joint model's games {games}")
        if not games and ds.game not in identity["games"]:
            raise ScaleworldError(f"{ds.path}: the model was trained on {identity['games']}, not {ds.game}")
        game = games.index(ds.game) if games else None
        _, val = split_episodes(len(ds.episode_lengths), val_fraction=identity["val_fraction"],
                                seed=identity["split_seed"])
        pixels = open_source(ds)
        if ds.game not in fitted:  # the final and the best checkpoint share the split: fit once per game
            fitted[ds.game] = game_baselines(ds, identity, classes=model.config.classes)
        baselines = fitted[ds.game]
        try:
            one_step = one_step_metrics(model, ds, val, game, termination=target, baselines=baselines)
        except NoHeldOutTransitions as exc:
            if len(datasets) == 1:
                raise
            unmeasured[ds.game] = str(exc)
            continue
        records[ds.game] = {
            **one_step,
            "baselines_fitted_on": {"frames": baselines.frames, "transitions": baselines.transitions},
            "open_loop": open_loop(model, tokenizer, ds, pixels, val, game, context_steps=context_steps,
                                   horizon=horizon, rollouts=rollouts, generator=generator),
            "held_out_episodes": len(val),
            "train_nll_nats_per_frame": None, "train_episodes": 0,
        }
        if "train" in roles:
            train = _training_sample(roles["train"], identity, len(val), seed)
            records[ds.game]["train_nll_nats_per_frame"] = one_step_metrics(
                model, roles["train"], train, game, termination=target)["nll_nats_per_frame"]
            records[ds.game]["train_episodes"] = len(train)
    if not records:
        raise ScaleworldError(f"no game's held-out episodes have a transition ({', '.join(sorted(unmeasured))}): "
                              "collect more data or raise val_fraction")
    return records


def evaluate_fidelity(*, dynamics_dir: str | Path, tokenizer_dir: str | Path, token_dirs: list[str | Path],
                      context_steps: int = 8, horizon: int = 8, rollouts: int = 32, seed: int = 0,
                      out: str | Path | None = None) -> dict[str, Any]:
    """Fidelity of a trained dynamics model on each game's held-out episodes (its own split).

    The token datasets may be others than the model trained on (the data-matched control trains on
    a larger dataset and is scored on the game's usual one, given beside it): the split is the
    model's (val_fraction, split_seed), so every run is scored on the same held-out episodes of the
    same tokens; the training-split NLL reads the dataset it trained on (`_roles`). A run that
    kept its best checkpoint (`DYNAMICS_BEST_FILE`) is scored at both: ``games`` holds the final
    checkpoint's figures, ``best`` = {step, validation_nll, sha256, games} the best one's, on the
    same rollouts."""
    from scaleworld.models.model_files import DYNAMICS_BEST_FILE, check_same_tokenizer, load_dynamics, load_tokenizer

    model, identity = load_dynamics(dynamics_dir)
    tokenizer, tok_identity = load_tokenizer(tokenizer_dir)
    check_same_tokenizer(identity, tok_identity["sha256"], what=f"the tokenizer in {tokenizer_dir}")
    datasets = [OfflineDataset.open(d) for d in token_dirs]
    for token_dir, ds in zip(token_dirs, datasets):
        if ds.manifest["tokenizer"]["sha256"] != tok_identity["sha256"]:
            raise ScaleworldError(f"{token_dir} was encoded by another tokenizer than {tokenizer_dir}")
    settings = {"context_steps": context_steps, "horizon": horizon, "rollouts": rollouts, "seed": seed}
    fitted: dict[str, NextLatentBaselines] = {}  # game -> its baselines, for both checkpoints
    unmeasured: dict[str, str] = {}  # game -> why a joint model's game was not measured (both checkpoints)
    record = {
        "format": FIDELITY_FORMAT, "scaleworld_version": __version__,
        "dynamics": {k: identity[k] for k in ("path", "sha256", "games", "mode")},
        "tokenizer_sha256": tok_identity["sha256"],
        "termination_target": identity.get("termination", TERMINATION_TARGETS[0]),  # what termination_f1 scores
        "settings": settings,
        "games": _game_records(model, identity, tokenizer, datasets, **settings, fitted=fitted,
                               unmeasured=unmeasured),
    }
    if (Path(dynamics_dir) / DYNAMICS_BEST_FILE).is_file():
        best, best_identity = load_dynamics(dynamics_dir, best=True)
        record["best"] = {**best_identity["best"], "sha256": best_identity["sha256"],
                          "games": _game_records(best, best_identity, tokenizer, datasets, **settings,
                                                 fitted=fitted, unmeasured=unmeasured)}
    if unmeasured:
        record["unmeasured"] = unmeasured
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out), record)
    return record
