"""`LegalActions`: a TorchRL transform that puts a game's legal actions into every observation.

Atari 100k agents act in the full 18-action space, where most games ignore some actions. TorchRL's
`ActionMask` transform masks the action spec from an ``action_mask`` entry; ALE's gymnasium env has
none, so this writes the game's (constant) mask, bool [18], into every reset and step, and masks
the action spec with it once (the mask never changes), so the spec's ``rand()`` — a Collector's
policy when it is given none — draws legal actions only.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Binary, Composite, TensorSpec
from torchrl.envs import Transform


class LegalActions(Transform):
    """Writes ``action_mask`` (`mask`, bool [actions]) into every reset and step of its env."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(in_keys=[], out_keys=["action_mask"])
        self.mask = mask.bool()

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return next_tensordict.set("action_mask", self.mask.clone())

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset.set("action_mask", self.mask.clone())

    def transform_action_spec(self, action_spec: TensorSpec) -> TensorSpec:
        # constant: the spec's rand() draws legal actions from the start (a Composite holds it at "action")
        inner = action_spec["action"] if isinstance(action_spec, Composite) else action_spec
        inner.update_mask(self.mask.clone())
        return action_spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec["action_mask"] = Binary(n=len(self.mask), shape=self.mask.shape, dtype=torch.bool)
        return observation_spec
