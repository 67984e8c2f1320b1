"""Symlog two-hot encoding of scalars (rewards, later values), as in DreamerV3."""

from __future__ import annotations

import torch


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def bin_centers(bins: int, limit: float, device=None) -> torch.Tensor:
    return torch.linspace(-limit, limit, bins, device=device)


def two_hot(x: torch.Tensor, bins: int, limit: float) -> torch.Tensor:
    """Scalars [...] -> soft targets [..., bins] putting weight on the two bins around symlog(x)."""
    centers = bin_centers(bins, limit, x.device)
    y = symlog(x).clamp(-limit, limit)
    hi = torch.searchsorted(centers, y.contiguous()).clamp(1, bins - 1)
    lo = hi - 1
    w_hi = (y - centers[lo]) / (centers[hi] - centers[lo])
    target = torch.zeros(*x.shape, bins, device=x.device, dtype=torch.float32)
    # out of place: under torch.func.vmap (packed training) `target` is not batched, lo and w_hi are
    return target.scatter(-1, lo[..., None], (1 - w_hi)[..., None]).scatter_add(-1, hi[..., None], w_hi[..., None])


def expected_value(logits: torch.Tensor, limit: float) -> torch.Tensor:
    """Logits [..., bins] -> the scalar their distribution predicts (symexp of the mean bin)."""
    centers = bin_centers(logits.shape[-1], limit, logits.device)
    return symexp((logits.softmax(-1) * centers).sum(-1))
