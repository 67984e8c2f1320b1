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

Actions: int64 [B] indices (``action_encoding="categorical"``, the default) or one-hot [B, 18]
(``"one_hot"``: what ``ProbabilisticActor(distribution_class=OneHotCategorical)`` writes); either
is accepted whatever the spec says, and anything else, or an index outside the 18 actions, is
refused with a message naming the shape or value.

>>> import torch
>>> from scaleworld.imagination.core import Imagination, StartContexts
>>> from scaleworld.models.dynamics import DynamicsModel
>>> from scaleworld.models.dynamics_config import DynamicsConfig
>>> _ = torch.manual_seed(0)
>>> model = DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=8))
>>> starts = StartContexts(tokens=torch.zeros(20, 32, dtype=torch.uint8), actions=torch.zeros(20, dtype=torch.int64),
...                        starts=torch.arange(16), steps=4, game=None, action_mask=torch.ones(18, dtype=torch.bool))
>>> env = ImaginationEnv(Imagination(model, starts, batch=3, generator=torch.Generator().manual_seed(0)))
>>> td = env.rollout(5, break_when_any_done=False)  # random legal actions; ended rollouts restart
>>> td.batch_size, td["next", "reward"].shape, td["latent"].dtype
(torch.Size([3, 5]), torch.Size([3, 5, 1]), torch.int64)
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import ModelBasedEnvBase

from scaleworld.errors import ScaleworldError
from scaleworld.imagination.core import Imagination

ACTION_ENCODINGS = ("categorical", "one_hot")


class ImaginationEnv(ModelBasedEnvBase):
    """A trained dynamics model as a batched TorchRL environment (keys and shapes: module docstring)."""

    @classmethod
    def from_run(cls, dynamics_dir, token_dir, *, batch: int, seed: int = 0, starts: str = "all",
                 context_steps: int = 8, action_encoding: str = ACTION_ENCODINGS[0],
                 device: str | torch.device = "cpu") -> ImaginationEnv:
        """One call from files: the dynamics model saved in `dynamics_dir` (a run folder, or a study's
        dynamics job folder), imagining from real contexts of the token dataset `token_dir` (its
        episodes `starts` names: held_out, train or all, of the model's own split)."""
        from scaleworld.data.dataset import OfflineDataset
        from scaleworld.imagination.train import start_contexts
        from scaleworld.models.store import load_dynamics

        model, identity = load_dynamics(dynamics_dir)
        contexts = start_contexts(model, identity, OfflineDataset.open(token_dir), starts=starts, steps=context_steps)
        model = model.to(device).eval().requires_grad_(False)
        imagination = Imagination(model, contexts.to(device), batch=batch,
                                  generator=torch.Generator(device=device).manual_seed(seed))
        return cls(imagination, action_encoding=action_encoding)

    def __init__(self, imagination: Imagination, *, action_encoding: str = ACTION_ENCODINGS[0]):
        if action_encoding not in ACTION_ENCODINGS:
            raise ScaleworldError(f"action_encoding={action_encoding!r}: use {' or '.join(ACTION_ENCODINGS)}")
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
        self.action_spec = (Categorical(c.num_actions, shape=n, dtype=torch.int64) if action_encoding == "categorical"
                            else OneHot(c.num_actions, shape=(b, c.num_actions), dtype=torch.int64))
        self.action_spec.update_mask(imagination.action_mask.clone())  # the game's legal actions: rand() draws those
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

    def _action(self, action: torch.Tensor) -> torch.Tensor:
        """int64 [B] from an index [B] (or [B, 1]) or a one-hot [B, actions]; refused otherwise."""
        b, n = self.imagination.batch, self.imagination.model.config.num_actions
        if action.shape == (b, n):  # one-hot, of any dtype
            if not bool(((action == 0) | (action == 1)).all() & (action.sum(-1) == 1).all()):
                raise ScaleworldError(f"a one-hot action [{b}, {n}] needs exactly one 1 per row")
            return action.argmax(-1)
        if action.shape in ((b,), (b, 1)) and not action.is_floating_point():
            action = action.reshape(b).long()
            if not bool(((action >= 0) & (action < n)).all()):
                raise ScaleworldError(f"an action is outside the {n} actions: {action.tolist()}")
            return action
        raise ScaleworldError(f"an action of shape {list(action.shape)} and dtype {action.dtype}: give int64 [{b}] "
                              f"indices or one-hot [{b}, {n}]")

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        reward, terminated = self.imagination.step(self._action(tensordict["action"]))
        out: TensorDict = self.imagination.observation()
        out["reward"] = reward[:, None]
        return out.update(self._flags(terminated))

    def _set_seed(self, seed: int | None) -> None:
        self.imagination.generator.manual_seed(0 if seed is None else int(seed))
