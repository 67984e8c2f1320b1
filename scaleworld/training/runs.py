"""The two training runs of the world model: tokenizer (on pixels) and dynamics (on tokens).

A run folder holds ``checkpoint.pt`` (resumable), ``logs/`` (TorchRL CSV), ``metrics.json`` and,
when finished, the trained model (``tokenizer.pt`` / ``dynamics.pt``) and ``run.json`` describing
the run (settings, datasets, the episode split, parameter counts). Datasets are named by content
(`OfflineDataset.content_id`) wherever a file's bytes or a resume depend on them, so a run moved
elsewhere resumes and writes the same model file; ``run.json`` adds the paths as given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.files import write_json_atomic
from scaleworld.data.held_out import SPLIT_SEED, VAL_FRACTION, VALIDATION_FRACTION
from scaleworld.data.sampling import MultiGameWindows, split_episodes, split_validation
from scaleworld.data.windows import WINDOWS
from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import TERMINATION_TARGETS, DynamicsConfig, parameter_counts
from scaleworld.models.model_files import DYNAMICS_BEST_FILE, DYNAMICS_FILE, TOKENIZER_FILE, save_model
from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig
from scaleworld.models.tokenizer_quality import frame_variance, game_quality
from scaleworld.objectives.world_model import DynamicsLoss, TokenizerLoss
from scaleworld.training.config import TrainConfig
from scaleworld.training.trainer import Trainer


def _open_all(dirs: list[str | Path], *, want_tokens: bool) -> list[OfflineDataset]:
    if not dirs:
        raise ScaleworldError("no dataset given: pass at least one --data folder")
    datasets = [OfflineDataset.open(d) for d in dirs]
    for ds in datasets:
        is_tokens = ds.is_tokens
        if is_tokens != want_tokens:
            need = "a token dataset (scaleworld tokens encode)" if want_tokens else "a pixel dataset"
            raise ScaleworldError(f"{ds.path}: expected {need}")
    return datasets


def _splits(datasets, *, val_fraction: float, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    pairs = [split_episodes(len(ds.episode_lengths), val_fraction=val_fraction, seed=seed) for ds in datasets]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def tokenizer_objective(model: Tokenizer, datasets: list[OfflineDataset], train_episodes: list[torch.Tensor], *,
                        seed: int, device: str | torch.device) -> tuple[TokenizerLoss, torch.Generator]:
    """The version 2 objective of `model` on these games: each game's error over its pixel variance on
    its training frames (every game counts alike), classes drawn from a generator of the run's own
    (returned: the trainer checkpoints it)."""
    variance = torch.tensor([frame_variance(ds, eps) for ds, eps in zip(datasets, train_episodes)])
    codes = torch.Generator(torch.device(device)).manual_seed(seed + 2)  # + 1 seeds the held-out batches
    return TokenizerLoss(model, game_variance=variance, generator=codes).to(device), codes


def train_tokenizer(*, data_dirs: list[str | Path], out: str | Path, config: TokenizerConfig = TokenizerConfig(),
                    train: TrainConfig, val_fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED,
                    progress: bool = True, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train a tokenizer on frames of one game (scope per_game) or several (scope shared), then
    measure its quality per game (`scaleworld.models.tokenizer_quality`) on the held-out episodes
    of the same split as the dynamics models' (`split_seed`), so it never trains on their held-out
    frames. The quality record goes into run.json and the saved tokenizer."""
    out = Path(out)
    datasets = _open_all(data_dirs, want_tokens=False)
    content = [ds.content_id for ds in datasets]
    train_eps, val_eps = _splits(datasets, val_fraction=val_fraction, seed=split_seed)
    torch.manual_seed(train.seed)
    model = Tokenizer(config).to(device)
    gen = torch.Generator().manual_seed(train.seed)
    val_gen = torch.Generator().manual_seed(train.seed + 1)
    train_view = MultiGameWindows(datasets, seq_len=1, generator=gen, episodes=train_eps)
    has_val = all(len(v) for v in val_eps)
    val_view = MultiGameWindows(datasets, seq_len=1, generator=val_gen, episodes=val_eps) if has_val else None
    loss, codes = tokenizer_objective(model, datasets, train_eps, seed=train.seed, device=device)
    trainer = Trainer(
        loss=loss, sample_train=train_view.sample,
        sample_val=val_view.sample if val_view else None, val_generator=val_gen, config=train,
        run_dir=out, generators={"train": gen, "codes": codes}, progress=progress, describe="tokenizer",
        device=device,
        identity={"model": config.to_dict(), "datasets": content,
                  "val_fraction": val_fraction, "split_seed": split_seed},
    )
    # Measured on the held-out episodes, or on the training ones where fewer than 2 frames are held out.
    measured = [(val, "held_out") if int(ds.episode_lengths[val].sum()) >= 2 else (train_ep, "train")
                for ds, train_ep, val in zip(datasets, train_eps, val_eps)]
    final = trainer.fit()
    quality = {ds.game: game_quality(model, ds, episodes, frames_from=where, seed=train.seed)
               for ds, (episodes, where) in zip(datasets, measured)}  # on the training device
    model = model.cpu()
    info = {
        "kind": "tokenizer",
        "scope": "shared" if len(datasets) > 1 else "per_game",
        "games": [ds.game for ds in datasets],
        "datasets": content, "dataset_paths": [str(ds.path) for ds in datasets],
        "train": asdict(train), "val_fraction": val_fraction, "split_seed": split_seed, "final": final,
        "quality": quality,
    }
    save_model(out / TOKENIZER_FILE, kind="tokenizer", config=config.to_dict(), module=model,
               extra={"scope": info["scope"], "games": info["games"], "quality": quality})
    write_json_atomic(out / "run.json", info)
    return info


@dataclass
class DynamicsRun:
    """One dynamics run, set up and not yet trained: what a `Trainer` (or one slot of a
    `PackedTrainer`) needs, and what `finish_dynamics` writes once it is trained."""

    out: Path
    net: DynamicsModel
    loss: DynamicsLoss
    train_view: MultiGameWindows
    val_view: MultiGameWindows | None
    generator: torch.Generator
    val_generator: torch.Generator
    identity: dict[str, Any]
    describe: str
    info: dict[str, Any]  # run.json without "final" (and "best")
    extra: dict[str, Any]  # the saved model's record
    keep_best: bool

    def trainer(self, *, config: TrainConfig, device: str | torch.device, progress: bool) -> Trainer:
        return Trainer(loss=self.loss, sample_train=self.train_view.sample,
                       sample_val=self.val_view.sample if self.val_view else None, val_generator=self.val_generator,
                       config=config, run_dir=self.out, generators={"train": self.generator}, progress=progress,
                       device=device, keep_best=self.net if self.keep_best else None, identity=self.identity,
                       describe=self.describe, compile_on_cuda=True)


def prepare_dynamics(*, token_dirs: list[str | Path], out: str | Path, model: DynamicsConfig, train: TrainConfig,
                     val_fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED, windows: str = WINDOWS[0],
                     termination: str = TERMINATION_TARGETS[0], validation_fraction: float = VALIDATION_FRACTION,
                     device: str | torch.device = "cpu") -> DynamicsRun:
    """Open the data, split it, initialise the model (from ``train.seed``) and its samplers:
    everything of `train_dynamics` before training (its arguments are described there)."""
    out = Path(out)
    datasets = _open_all(token_dirs, want_tokens=True)
    content = [ds.content_id for ds in datasets]
    tokenizers = {ds.manifest["tokenizer"]["sha256"] for ds in datasets}
    if len(tokenizers) != 1:
        raise ScaleworldError("the token datasets come from different tokenizers: encode them with one tokenizer")
    tok_cfg = datasets[0].manifest["tokenizer"]["config"]
    joint = len(datasets) > 1
    model = DynamicsConfig.from_dict({
        **model.to_dict(), "games": [ds.game for ds in datasets] if joint else [],
        "groups": tok_cfg["groups"], "classes": tok_cfg["classes"],
    })
    train_eps, val_eps = _splits(datasets, val_fraction=val_fraction, seed=split_seed)
    if validation_fraction:  # the trainer evaluates on a validation split of the training episodes
        pairs = []
        for ds, eps in zip(datasets, train_eps):
            try:
                pairs.append(split_validation(eps, fraction=validation_fraction, seed=split_seed))
            except ScaleworldError as exc:
                raise ScaleworldError(f"{ds.path} ({ds.game}): {exc}") from None
        train_eps, val_eps = [p[0] for p in pairs], [p[1] for p in pairs]
    torch.manual_seed(train.seed)
    net = DynamicsModel(model).to(device)
    gen = torch.Generator().manual_seed(train.seed)
    val_gen = torch.Generator().manual_seed(train.seed + 1)
    # the sampler's sequence length is the model's context (the tokenizer's is one frame); a batch holds
    # the columns the loss reads (its in_keys less the sampler's own mask and game)
    loss = DynamicsLoss(net, termination=termination)
    read = [k for k in loss.in_keys if k not in ("mask", "game")]
    train_view = MultiGameWindows(datasets, seq_len=model.context, generator=gen, episodes=train_eps, windows=windows,
                                  resident_on=device, keys=read)
    has_val = all(len(v) for v in val_eps)
    val_view = (MultiGameWindows(datasets, seq_len=model.context, generator=val_gen, episodes=val_eps,
                                 resident_on=device, keys=read) if has_val else None)
    identity = {"model": model.to_dict(), "datasets": content,
                **({"validation_fraction": validation_fraction} if validation_fraction else {}),
                **({"windows": windows} if windows != WINDOWS[0] else {}),  # defaults: no key (older runs)
                **({"termination": termination} if termination != TERMINATION_TARGETS[0] else {})}
    info = {
        "kind": "dynamics",
        "mode": "joint" if joint else "single",
        "games": [ds.game for ds in datasets],
        "datasets": content, "dataset_paths": [str(ds.path) for ds in datasets],
        "tokenizer_sha256": tokenizers.pop(),
        "model": model.to_dict(), "params": parameter_counts(model),
        "train": asdict(train), "tokens_seen": train.steps * train.batch_size * model.context,
        "val_fraction": val_fraction, "split_seed": split_seed, "windows": windows, "termination": termination,
        "validation_fraction": validation_fraction,
    }
    extra = {"games": info["games"], "mode": info["mode"], "val_fraction": val_fraction, "split_seed": split_seed,
             "datasets": info["datasets"], "tokenizer_sha256": info["tokenizer_sha256"],  # its tokens' encoder
             **({"termination": termination} if termination != TERMINATION_TARGETS[0] else {}),
             **({"validation_fraction": validation_fraction} if validation_fraction else {})}
    return DynamicsRun(
        out=out, net=net, loss=loss, train_view=train_view,
        val_view=val_view, generator=gen, val_generator=val_gen, identity=identity,
        describe=f"dynamics d{model.depth} w{model.width}" + (" joint" if joint else f" {datasets[0].game}"),
        info=info, extra=extra, keep_best=bool(validation_fraction))


def finish_dynamics(run: DynamicsRun, *, final: dict[str, Any], best: dict[str, Any] | None) -> dict[str, Any]:
    """Write a trained run's model (``dynamics.pt``; ``dynamics_best.pt`` from `best`, the trainer's
    {step, value, state}, when the run kept one) and its run.json; returns run.json's record."""
    info = {**run.info, "final": final}
    config = run.info["model"]
    save_model(run.out / DYNAMICS_FILE, kind="dynamics", config=config, module=run.net.cpu(), extra=run.extra)
    if best is not None:  # the weights at the lowest validation NLL, in a module of their own
        run.net.load_state_dict(best["state"])
        kept = {"step": best["step"], "validation_nll": best["value"]}
        kept["sha256"] = save_model(run.out / DYNAMICS_BEST_FILE, kind="dynamics", config=config, module=run.net,
                                    extra={**run.extra, "best": kept})
        info["best"] = kept
    write_json_atomic(run.out / "run.json", info)
    return info


def train_dynamics(*, token_dirs: list[str | Path], out: str | Path, model: DynamicsConfig, train: TrainConfig,
                   val_fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED, windows: str = WINDOWS[0],
                   termination: str = TERMINATION_TARGETS[0], validation_fraction: float = VALIDATION_FRACTION,
                   progress: bool = True, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train a dynamics model on one game's tokens (single) or several games' (joint, balanced).
    `windows`: how training windows are drawn (`scaleworld.data.windows`); held-out
    evaluation keeps ``inside`` windows, so its loss reads the same across runs. `termination`: what
    the termination head learns (`TERMINATION_TARGETS`); recorded with the model (fidelity scores
    against it, imagination ends rollouts on it). `validation_fraction` > 0: that share of each game's
    training episodes (`split_validation`, never a held-out one) is kept out of training; the
    trainer's evaluation reads it, and the weights at its lowest next-latent NLL are saved beside the
    final ones (``dynamics_best.pt``, with their step): early stopping as a second reading."""
    run = prepare_dynamics(token_dirs=token_dirs, out=out, model=model, train=train, val_fraction=val_fraction,
                           split_seed=split_seed, windows=windows, termination=termination,
                           validation_fraction=validation_fraction, device=device)
    trainer = run.trainer(config=train, device=device, progress=progress)
    final = trainer.fit()
    return finish_dynamics(run, final=final, best=trainer.best)
