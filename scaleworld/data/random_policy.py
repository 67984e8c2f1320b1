"""The uniform-random policy: the "random" anchor of expert-random normalisation.

A scaleworld policy is a TensorDict module: it reads ``"pixels"`` uint8 [N, S, S, 3],
``"action_mask"`` bool [N, 18] and ``"is_init"`` bool [N, 1], writes ``"action"`` int64 [N] (ids in
the full 18-action space), keeps any state it has in the tensordict as TorchRL's recurrent modules
do (read at the root, written under ``"next"``: `scaleworld.data.collect.Acting`), and describes
itself with an ``identity`` dict recorded in manifests. A TorchRL ``TensorDictModule`` with an
``identity`` attribute fits.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase


class RandomPolicy(TensorDictModuleBase):
    """Uniform over the legal actions of each row's ``action_mask``; seeded explicitly."""

    in_keys = ["action_mask"]
    out_keys = ["action"]

    def __init__(self, *, seed: int):
        super().__init__()
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "random", "seed": self.seed, "actions": "uniform over legal actions"}

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        mask = td["action_mask"]  # bool [N, 18]
        scores = torch.rand(mask.shape, generator=self._generator).masked_fill(~mask, -1.0)
        td["action"] = scores.argmax(dim=-1)  # uniform over the legal ids, int64 [N]
        return td
