"""The uniform-random policy: the "random" anchor of expert-random normalisation.

A scaleworld policy is anything that maps a TensorDict holding ``"pixels"`` uint8 [N, S, S, 3]
and ``"action_mask"`` bool [N, 18] to the same TensorDict with ``"action"`` int64 [N] (ids in the
full 18-action space) set, and that describes itself with an ``identity`` dict recorded in
manifests. A TorchRL ``TensorDictModule`` with an ``identity`` attribute fits.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase


class RandomPolicy:
    """Uniform over the legal actions of each row's ``action_mask``; seeded explicitly."""

    def __init__(self, *, seed: int):
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "random", "seed": self.seed, "actions": "uniform over legal actions"}

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        mask = td["action_mask"]  # bool [N, 18]
        scores = torch.rand(mask.shape, generator=self._generator).masked_fill(~mask, -1.0)
        td["action"] = scores.argmax(dim=-1)  # uniform over the legal ids, int64 [N]
        return td
