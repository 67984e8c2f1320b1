"""Drawing from categorical logits with an explicit generator: the dynamics model's latents in
imagination and the actor's actions, in imagination and in the real game."""

from __future__ import annotations

import torch


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One sample per row of logits [..., classes] (Gumbel-max: argmax of logits - log Exp(1))."""
    noise = torch.empty(logits.shape, device=logits.device, dtype=torch.float32).exponential_(generator=generator)
    return (logits.float() - noise.log()).argmax(-1)
