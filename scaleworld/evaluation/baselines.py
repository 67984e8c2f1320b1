"""Trivial predictors of the next latent, in the dynamics model's units: what a world model must beat.

Both predict the G categorical variables of frame t+1 (C classes each) and are scored in nats per
frame (the sum over the G variables of -log p), on exactly the transitions the model's held-out
NLL scores (`fidelity.one_step_metrics` passes them the same windows and mask). Both are fitted
on the training split of the game's token dataset (the train side of the model's episode split),
so every model of a game in a study is compared with the same two numbers.

- unigram: each variable independently from its code frequencies over the training split's
  frames, add-1/2 (Krichevsky-Trofimov) smoothed: p_g(k) = (n_gk + 1/2) / (N + C/2). It knows what
  the game's frames look like and nothing about time. (Add-one would cost a frame of mostly
  constant variables ~G x C / N nats: 1.6 nats at N = 450 frames, where add-1/2 costs half.)
- copy-last-frame: z_{t+1} = z_t, smoothed by mixing in the unigram so that every code has a
  finite NLL: p_g(k | z_t) = (1 - r_g) [k = z_t,g] + r_g p_g(k), with r_g the share of the
  training split's transitions (within episodes) in which variable g changed, smoothed alike:
  r_g = (changes_g + 1/2) / (transitions + 1). It knows that frames change little from step to step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

BASELINES = ("unigram", "copy")
"""The baselines' names, as fidelity.json records them (``baseline_nll``)."""


@dataclass(frozen=True)
class NextLatentBaselines:
    """The two fitted predictors; `log_unigram` [G, C] log p_g(k), `change` [G] r_g."""

    log_unigram: torch.Tensor
    change: torch.Tensor
    frames: int
    """Training-split frames the unigram counted."""
    transitions: int
    """Training-split transitions the change rates counted."""

    def nll(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """tokens [B, T, G] (codes) -> {name: NLL of tokens[:, t + 1] in nats per frame, [B, T - 1]}."""
        tokens = tokens.long()
        nxt, prev = tokens[:, 1:], tokens[:, :-1]  # [B, T-1, G]
        g = torch.arange(tokens.shape[-1])
        log_u = self.log_unigram[g, nxt]  # [B, T-1, G] log p_g(z_{t+1})
        same = (nxt == prev).to(log_u.dtype)
        p_copy = (1.0 - self.change) * same + self.change * log_u.exp()
        return {"unigram": -log_u.sum(-1), "copy": -p_copy.log().sum(-1)}


def fit_baselines(episodes: Iterable[torch.Tensor], *, classes: int) -> NextLatentBaselines:
    """Fit both predictors on `episodes`: each a [n, G] tensor of one training episode's codes, in order."""
    counts = None
    changes = None
    frames = transitions = 0
    for codes in episodes:
        codes = codes.long()
        if counts is None:
            counts = torch.zeros(codes.shape[1], classes, dtype=torch.float64)  # [G, C]
            changes = torch.zeros(codes.shape[1], dtype=torch.float64)  # [G]
        counts.scatter_add_(1, codes.T, torch.ones(codes.T.shape, dtype=torch.float64))
        changes += (codes[1:] != codes[:-1]).sum(0).double()
        frames += codes.shape[0]
        transitions += codes.shape[0] - 1
    if counts is None or frames == 0:
        raise ValueError("fit_baselines needs at least one training frame")
    log_unigram = ((counts + 0.5) / (frames + 0.5 * classes)).log()
    change = (changes + 0.5) / (transitions + 1.0)
    return NextLatentBaselines(log_unigram.float(), change.float(), frames, transitions)
