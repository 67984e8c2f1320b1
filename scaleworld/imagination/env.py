"""`ImaginationEnv`: the fast path `Imagination` as a TorchRL `ModelBasedEnvBase` environment.

Keys (batch [B]): ``latent`` int64 [B, groups], ``hidden`` float32 [B, width] and
``action_mask`` bool [B, 18] (the game's legal actions, for `torchrl.envs.transforms.ActionMask`
or a masked policy), ``action`` int64 [B] in the full 18-action space, ``("next", "reward")``
float32 [B, 1], ``done``/``terminated``/``truncated`` bool [B, 1] (never truncated: the horizon
is the caller's `max_steps`).

A reset without ``"_reset"`` restarts every rollout; with it (what `rollout(...,
break_when_any_done=False)` and collectors send after a termination) only the masked rows
restart, from new real contexts, while the others keep their KV-cache history. Everything is the
wrapped `Imagination`'s state and generator, so the env and the fast path give identical
trajectories for the same generator seed.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, Unbounded
from torchrl.envs import ModelBasedEnvBase

from scaleworld.imagination.core import Imagination


class ImaginationEnv(ModelBasedEnvBase):
    def __init__(self, imagination: Imagination):
        super().__init__(imagination.model, device=imagination.device, batch_size=torch.Size([imagination.batch]))
        self.imagination = imagination
        c = imagination.model.config
        b = imagination.batch
        n = torch.Size([b])
        self.observation_spec = Composite(
            latent=Categorical(c.classes, shape=(b, c.groups), dtype=torch.int64),
            hidden=Unbounded(shape=(b, c.width), dtype=torch.float32),
            action_mask=Binary(n=c.num_actions, shape=(b, c.num_actions), dtype=torch.bool),
            shape=n,
        )
        self.action_spec = Categorical(c.num_actions, shape=n, dtype=torch.int64)
        self.reward_spec = Unbounded(shape=(b, 1), dtype=torch.float32)
        done = Categorical(2, shape=(b, 1), dtype=torch.bool)
        self.done_spec = Composite(done=done, terminated=done.clone(), truncated=done.clone(), shape=n)

    def _flags(self, terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        done = terminated[:, None]
        return {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        rows = None
        if tensordict is not None and "_reset" in tensordict.keys():
            rows = tensordict["_reset"].reshape(self.imagination.batch)
        self.imagination.reset(rows)
        no = torch.zeros(self.imagination.batch, dtype=torch.bool, device=self.device)
        return self.imagination.observation().update(self._flags(no))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        reward, terminated = self.imagination.step(tensordict["action"])
        out: TensorDict = self.imagination.observation()
        out["reward"] = reward[:, None]
        return out.update(self._flags(terminated))

    def _set_seed(self, seed: int | None) -> None:
        self.imagination.generator.manual_seed(0 if seed is None else int(seed))
