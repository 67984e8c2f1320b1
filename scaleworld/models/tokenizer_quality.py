"""How well a frozen tokenizer's codes describe a game, and the gate that refuses one that does not.

Every figure is measured per game on that game's frames only, so for a shared tokenizer they are
within-game (conditional on the game): codes that only say which game a frame is from count for
nothing. On up to `QUALITY_FRAMES` frames spread evenly over the given episodes (the held-out ones
of the data split when there are any):

- ``residual_fraction`` = MSE(decode(encode(x)), x) / MSE(m, x), with m the mean of the same frames:
  the share of the frames' pixel variance that the codes leave unexplained (1 - R^2). 1 is no better
  than predicting the mean frame; a collapsed tokenizer is above 1.
- ``psnr_db`` = 10 log10(1 / MSE) of decode(encode(x)), pixels in [0, 1]; ``mean_frame_psnr_db`` the
  same for the mean frame. PSNR alone flatters Atari (most pixels are a static background).
- ``perplexity_median``: per variable, exp(entropy) of its class frequencies over the frames, the
  median over the 32 variables (1: the variable is constant within the game). ``perplexity`` lists all.
- ``distinct_codes``: distinct 32-token vectors among the frames.
- ``sampled_residual_fraction``: the residual fraction when each class is sampled as in training
  instead of taking the mode; close to ``residual_fraction`` when mode and samples agree.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scaleworld.data.sampling import episode_rows
from scaleworld.errors import ScaleworldError
from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION

__all__ = ["MAX_RESIDUAL_FRACTION", "TokenizerQualityError", "check_quality", "dataset_identity", "frame_variance",
           "game_quality", "measure_quality", "perplexity", "psnr_db"]

QUALITY_FRAMES = 1024


class TokenizerQualityError(ScaleworldError):
    """A tokenizer's codes describe too little of a game's frames to be worth encoding."""


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of distributions along the last dimension [..., C] -> [...] (0 log 0 = 0)."""
    p = probs.double()
    return torch.exp(-torch.where(p > 0, p * p.clamp_min(1e-300).log(), 0.0).sum(-1)).to(probs.dtype)


def spread(rows: torch.Tensor, frames: int = QUALITY_FRAMES) -> torch.Tensor:
    """At most `frames` of `rows`, evenly spaced (deterministic: no generator to pass around)."""
    if len(rows) <= frames:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, frames).round().long()]


@torch.no_grad()
def measure_quality(tokenizer: Any, pixels: torch.Tensor, *, generator: torch.Generator,
                    batch: int = 256) -> dict[str, Any]:
    """The module docstring's figures for one game's frames, uint8 [N, S, S, 3] (N >= 2), computed
    on the tokenizer's device (`generator` must be on that device too)."""
    tokens, recon, sampled = [], [], []
    was_training = tokenizer.training
    device = next(tokenizer.parameters()).device
    tokenizer.eval()
    try:
        for start in range(0, len(pixels), batch):
            x = pixels[start:start + batch].to(device)
            logits = tokenizer.logits(x)  # [b, G, C]
            tokens.append(logits.argmax(-1))
            recon.append(tokenizer.decode(tokens[-1]))
            draw = tokenizer.decode_onehot(tokenizer.sample_onehot(logits, generator)).clamp(0, 1)
            sampled.append((draw * 255).round().to(torch.uint8))
    finally:
        tokenizer.train(was_training)
    tokens, recon, sampled = ([t.cpu() for t in ts] for ts in (tokens, recon, sampled))
    codes = torch.cat(tokens)  # [N, G]
    x = pixels.float() / 255

    def mse(y: torch.Tensor) -> float:
        return float(((y.float() / 255 - x) ** 2).mean())

    mean_frame = float(((x - x.mean(0)) ** 2).mean())
    error = mse(torch.cat(recon))
    frequencies = torch.nn.functional.one_hot(codes, tokenizer.config.classes).double().mean(0)  # [G, C]
    per_variable = perplexity(frequencies).tolist()

    def fraction(e: float) -> float:
        return e / mean_frame if mean_frame > 0 else (0.0 if e == 0 else math.inf)

    return {
        "frames": len(pixels),
        "residual_fraction": fraction(error),
        "sampled_residual_fraction": fraction(mse(torch.cat(sampled))),
        "mse": error,
        "mean_frame_mse": mean_frame,
        "psnr_db": psnr_db(error),
        "mean_frame_psnr_db": psnr_db(mean_frame),
        "perplexity_median": float(torch.tensor(per_variable).median()),
        "perplexity": per_variable,
        "distinct_codes": len(torch.unique(codes, dim=0)),
    }


def psnr_db(mse: float) -> float:
    """PSNR in dB of a mean squared error of pixels in [0, 1] (capped at 100 dB for a perfect match)."""
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def frame_variance(dataset: Any, episodes: torch.Tensor, frames: int = 4 * QUALITY_FRAMES,
                   chunk: int = 512) -> float:
    """Mean squared deviation of a pixel (in [0, 1]) from the mean frame, over frames spread across
    `episodes`: the mean-frame MSE of those frames, which TokenizerLoss divides each game's error by
    (a floor of 1e-8 for a game whose frames never change). Two passes in chunks of `chunk` frames."""
    rows = spread(episode_rows(dataset.episode_starts, dataset.episode_lengths, episodes), frames)
    pixels = dataset.data["pixels"]

    def chunks():
        for start in range(0, len(rows), chunk):
            yield torch.as_tensor(pixels[rows[start:start + chunk]]).double() / 255

    mean = sum(x.sum(0) for x in chunks()) / len(rows)
    return max(float(sum(((x - mean) ** 2).sum() for x in chunks()) / (len(rows) * mean.numel())), 1e-8)


def game_quality(tokenizer: Any, dataset: Any, episodes: torch.Tensor, *, frames_from: str,
                 seed: int = 0) -> dict[str, Any]:
    """`measure_quality` on frames spread over `episodes` of a pixel dataset; `frames_from` says
    which episodes those are (``held_out``, ``train``: no held-out episodes, ``unseen``: a dataset
    the tokenizer was not measured on). ``dataset`` identifies the dataset (path, SHA-256 of its
    manifest): the gate reads a record only for the dataset it was measured on."""
    rows = spread(episode_rows(dataset.episode_starts, dataset.episode_lengths, episodes))
    if len(rows) < 2:
        raise ScaleworldError(f"{dataset.path}: fewer than 2 frames to measure the tokenizer on: collect more steps")
    pixels = torch.as_tensor(dataset.data["pixels"][rows])
    generator = torch.Generator(next(tokenizer.parameters()).device).manual_seed(seed)
    return {**measure_quality(tokenizer, pixels, generator=generator), "frames_from": frames_from,
            "dataset": dataset_identity(dataset)}


def dataset_identity(dataset: Any) -> dict[str, str]:
    from scaleworld.data.files import sha256_file
    from scaleworld.data.layout import MANIFEST

    return {"path": str(dataset.path.resolve()), "manifest_sha256": sha256_file(dataset.path / MANIFEST)}


def check_quality(record: dict[str, Any], *, game: str, max_residual: float, tokenizer: str, scope: str) -> None:
    """Raise one line naming the game, the figure and the fix when the residual fraction is too high."""
    if not max_residual > 0:
        raise ScaleworldError(f"max_residual={max_residual}: the allowed residual fraction must be positive "
                              f"(default {MAX_RESIDUAL_FRACTION})")
    residual = record["residual_fraction"]
    if residual <= max_residual:  # NaN never passes
        return
    if record["frames_from"] == "unseen":
        fix = f"train a tokenizer on this {game} data"
    else:
        fix = "train it longer (tokenizer.steps, --steps)" + (
            f" or on {game} alone (tokenizer.scope=per_game, without a joint model)" if scope == "shared" else "")
    raise TokenizerQualityError(
        f"{tokenizer}: the tokenizer leaves {residual:.2f} of {game}'s frame variance unexplained "
        f"(residual fraction on {record['frames']} {record['frames_from'].replace('_', '-')} frames; allowed "
        f"{max_residual:g}), so its tokens miss the game: {fix}, or allow more for a toy run "
        "(tokenizer.max_residual, --max-residual)")
