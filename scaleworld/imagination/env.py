"""`ImaginationEnv`: the fast path `Imagination` as a TorchRL `ModelBasedEnvBase` environment.

Keys (batch [B]): ``latent`` int64 [B, groups] (the frame z_t), ``hidden`` float32 [B, width] (the
model's summary h_{t-1} of the history before it), ``action_mask`` bool [B, 18] (the game's legal
actions, for `torchrl.envs.transforms.ActionMask` or a masked policy), ``is_init`` bool [B, 1] (the
row has just started from a context), ``history`` int64 [B] (which KV-cache history the row's state
continues: see below), with a tokenizer also ``pixels`` uint8 [B, S, S, 3] (the latent decoded);
``action`` int64 [B] in the full 18-action space (or one-hot [B, 18]); ``("next", "reward")``
float32 [B, 1], ``done``/``terminated``/``truncated`` bool [B, 1] (never truncated: the horizon is
the caller's `max_steps`).

The state is in the tensordict as far as it can be. The KV cache (the history of every row) is
too large to copy at every step, so the env keeps it and the tensordict names it: ``history`` is a
number the env gives a row's state at every step and restart, and `step` refuses a tensordict whose
``history`` is not the row's current one (a tensordict of an earlier step, or of another env),
naming the rows, instead of continuing a history the tensordict does not describe. The ``latent``
is read from the tensordict: the model steps from the frame the tensordict holds (an edited one
too) with the row's history. ``hidden`` is the model's output; editing it changes only what the
policy reads.

Reset: without ``"_reset"`` every row restarts; with it (what `rollout(...,
break_when_any_done=False)` and collectors send after a termination) only the masked rows, the
others keeping their history. A row restarts from a real context drawn from the start windows, or
from the one the reset's tensordict gives: ``("context", "tokens")`` [B, C, groups] and
``("context", "action")`` [B, C] (a window of a token dataset: a sample of
`scaleworld.data.dataset.OfflineDataset.window_buffer` or TorchRL's `SliceSampler`), optionally
``("context", "mask")`` bool [B, C] (True on the real steps, a prefix: padding after a short
episode's end). The last real step's frame is the first observation and the real steps before it
the history (at most the model's context). Randomness is the wrapped `Imagination`'s generator,
so the env and the fast path give identical trajectories for the same generator seed.

Actions: int64 [B] indices (``action_encoding="categorical"``, the default) or one-hot [B, 18]
(``"one_hot"``: what ``ProbabilisticActor(distribution_class=OneHotCategorical)`` writes); either
is accepted whatever the spec says, and anything else, or an index outside the 18 actions, is
refused with a message naming the shape or value.

>>> import torch
>>> from tensordict import TensorDict
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
>>> window = TensorDict({"tokens": torch.randint(0, 32, (3, 6, 32)), "action": torch.zeros(3, 6, dtype=torch.long)},
...                     batch_size=[3, 6])  # e.g. a replay buffer's sample of a token dataset
>>> td = env.reset(TensorDict({"context": window}, batch_size=[3]))  # imagine on from those real steps
>>> torch.equal(td["latent"], window["tokens"][:, -1]), td["is_init"].all().item()
(True, True)
>>> td["latent"][0] = 0  # an edited frame is the frame the model steps from
>>> _ = env.step(env.rand_action(td))
>>> env.step(td)  # the row's history has moved on: the old tensordict is refused
Traceback (most recent call last):
...
scaleworld.errors.ScaleworldError: rows [0, 1, 2] of the tensordict continue histories the env has moved past ...
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
    """A trained dynamics model as a batched TorchRL environment (keys and shapes: module docstring).

    `tokenizer` (a `scaleworld.models.tokenizer.Tokenizer`, the one the model's tokens came from):
    every observation also holds ``pixels``, its decoding of the latent.
    """

    @classmethod
    def from_run(cls, dynamics_dir, token_dir, *, batch: int, seed: int = 0, starts: str = "all",
                 context_steps: int = 8, action_encoding: str = ACTION_ENCODINGS[0], tokenizer_dir=None,
                 device: str | torch.device = "cpu") -> ImaginationEnv:
        """One call from files: the dynamics model saved in `dynamics_dir` (a run folder, or a study's
        dynamics job folder), imagining from real contexts of the token dataset `token_dir` (its
        episodes `starts` names: held_out, train or all, of the model's own split); with
        `tokenizer_dir`, decoded ``pixels`` too."""
        from scaleworld.data.dataset import OfflineDataset
        from scaleworld.imagination.train import start_contexts
        from scaleworld.models.model_files import check_same_tokenizer, load_dynamics, load_tokenizer

        model, identity = load_dynamics(dynamics_dir)
        tokens = OfflineDataset.open(token_dir)
        check_same_tokenizer(identity, tokens.manifest["tokenizer"]["sha256"], what=f"the token dataset {token_dir}")
        contexts = start_contexts(model, identity, tokens, starts=starts, steps=context_steps)
        model = model.to(device).eval().requires_grad_(False)
        imagination = Imagination(model, contexts.to(device), batch=batch,
                                  generator=torch.Generator(device=device).manual_seed(seed))
        tokenizer = None
        if tokenizer_dir is not None:
            tokenizer, which = load_tokenizer(tokenizer_dir)
            if which["sha256"] != tokens.manifest["tokenizer"]["sha256"]:
                raise ScaleworldError(f"{tokenizer_dir}: not the tokenizer that encoded {token_dir} (its manifest "
                                      "names another): give that tokenizer's run folder")
            tokenizer = tokenizer.to(device)
        return cls(imagination, action_encoding=action_encoding, tokenizer=tokenizer)

    def __init__(self, imagination: Imagination, *, action_encoding: str = ACTION_ENCODINGS[0], tokenizer=None):
        if action_encoding not in ACTION_ENCODINGS:
            raise ScaleworldError(f"action_encoding={action_encoding!r}: use {' or '.join(ACTION_ENCODINGS)}")
        super().__init__(imagination.model, device=imagination.device, batch_size=torch.Size([imagination.batch]))
        self.imagination = imagination
        self.tokenizer = None if tokenizer is None else tokenizer.eval()
        c = imagination.model.config
        b = imagination.batch
        n = torch.Size([b])
        if tokenizer is not None and (tokenizer.config.groups, tokenizer.config.classes) != (c.groups, c.classes):
            raise ScaleworldError(f"the tokenizer's codes ({tokenizer.config.groups} x {tokenizer.config.classes}) are "
                                  f"not the model's ({c.groups} x {c.classes}): give the tokenizer of its tokens")
        pixels = {} if tokenizer is None else {"pixels": Unbounded(
            shape=(b, tokenizer.config.frame_size, tokenizer.config.frame_size, 3), dtype=torch.uint8)}
        self.observation_spec = Composite(
            latent=Categorical(c.classes, shape=(b, c.groups), dtype=torch.int64),
            hidden=Unbounded(shape=(b, c.width), dtype=torch.float32),
            action_mask=Binary(n=c.num_actions, shape=(b, c.num_actions), dtype=torch.bool),
            is_init=Categorical(2, shape=(b, 1), dtype=torch.bool),
            history=Unbounded(shape=n, dtype=torch.int64),
            **pixels,
            shape=n,
        )
        self.action_spec = (Categorical(c.num_actions, shape=n, dtype=torch.int64) if action_encoding == "categorical"
                            else OneHot(c.num_actions, shape=(b, c.num_actions), dtype=torch.int64))
        self.action_spec.update_mask(imagination.action_mask.clone())  # the game's legal actions: rand() draws those
        self.reward_spec = Unbounded(shape=(b, 1), dtype=torch.float32)
        done = Categorical(2, shape=(b, 1), dtype=torch.bool)
        self.done_spec = Composite(done=done, terminated=done.clone(), truncated=done.clone(), shape=n)
        self._history = torch.zeros(b, dtype=torch.int64, device=self.device)  # each row's current history number
        self._issued = 1  # the next number to give (0: no state yet); every state gets a new one

    def _observation(self, moved: torch.Tensor | None, started: torch.Tensor) -> TensorDict:
        """The imagination's state with the env's keys; rows `moved` (bool [B]; None: all, with no host
        sync) get new history numbers."""
        b = self.imagination.batch
        fresh = torch.arange(self._issued, self._issued + b, device=self.device)  # [B]: unique, never reused
        self._history = fresh if moved is None else torch.where(moved, fresh, self._history)
        self._issued += b
        out = self.imagination.observation()
        out["is_init"] = started[:, None].clone()
        out["history"] = self._history.clone()
        if self.tokenizer is not None:
            out["pixels"] = self.tokenizer.decode(out["latent"])
        return out

    @staticmethod
    def _flags(terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        done = terminated[:, None]
        return {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        b = self.imagination.batch
        rows = None
        if tensordict is not None and "_reset" in tensordict.keys():
            rows = tensordict["_reset"].reshape(b)
        contexts = None
        if tensordict is not None and "context" in tensordict.keys():
            contexts = self._contexts(tensordict["context"], b if rows is None else int(rows.sum()))
        self.imagination.reset(rows, contexts)
        started = torch.ones(b, dtype=torch.bool, device=self.device) if rows is None else rows.clone()
        no = torch.zeros(b, dtype=torch.bool, device=self.device)
        return self._observation(started, started).update(self._flags(no))

    def _contexts(self, context: TensorDictBase, restarting: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """User contexts -> left-padded (tokens int64 [B, C, G], actions int64 [B, C], history int64 [B]),
        the layout `Imagination.start_from` takes (module docstring: the keys)."""
        c = self.imagination.model.config
        b = self.imagination.batch
        tokens, actions = context.get("tokens", None), context.get("action", None)
        if tokens is None or actions is None or tokens.dim() != 3 or tokens.shape[::2] != (b, c.groups) \
                or tuple(actions.shape) != tuple(tokens.shape[:2]) or tokens.is_floating_point():
            got = {k: list(v.shape) for k, v in context.items()}
            raise ScaleworldError(f"a reset context needs integer ('context', 'tokens') [{b}, C, {c.groups}] and "
                                  f"('context', 'action') [{b}, C], got {got}")
        steps = tokens.shape[1]
        mask = context.get("mask", None)
        mask = torch.ones(b, steps, dtype=torch.bool, device=tokens.device) if mask is None else mask.bool()
        real = mask.sum(-1)  # [B] real steps, a prefix of each window
        if not bool((mask == (torch.arange(steps, device=mask.device) < real[:, None])).all() & (real > 0).all()):
            raise ScaleworldError("('context', 'mask') must mark a non-empty prefix of real steps in every row")
        if steps - 1 > c.context:
            raise ScaleworldError(f"a reset context of {steps} steps exceeds the model's context + 1 = {c.context + 1}")
        if restarting < b and steps - 1 > self.imagination.cache.position:
            raise ScaleworldError(f"some rows cannot restart from {steps}-step contexts while the others are "
                                  f"{self.imagination.cache.position} steps in: reset every row, or use shorter "
                                  "contexts")
        n = c.num_actions
        if bool((tokens < 0).any() | (tokens >= c.classes).any() | (actions < 0).any() | (actions >= n).any()):
            raise ScaleworldError(f"a reset context holds a token outside [0, {c.classes}) or an action outside "
                                  f"[0, {n})")
        # left-pad: the real steps end at the window's last step (`StartContexts.windows`' layout)
        index = (torch.arange(steps, device=mask.device)[None, :] - (steps - real)[:, None]).clamp(min=0)  # [B, C]
        gather = index.to(self.device)
        tokens = tokens.to(self.device).long().gather(1, gather[..., None].expand(-1, -1, c.groups))
        return tokens, actions.to(self.device).long().gather(1, gather), (real - 1).to(self.device)

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

    def _state(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The latent to step from, int64 [B]: the tensordict's, for rows whose history is the env's."""
        c = self.imagination.model.config
        history = tensordict.get("history", None)
        if history is None:
            raise ScaleworldError("the tensordict has no 'history': step with the tensordict the env's reset or "
                                  "last step returned")
        latent = tensordict["latent"]
        if latent.shape != (self.imagination.batch, c.groups) or latent.is_floating_point():
            raise ScaleworldError(f"'latent' must be integer codes in [0, {c.classes}) of shape "
                                  f"[{self.imagination.batch}, {c.groups}], got {latent.dtype} {list(latent.shape)}")
        stale = history.reshape(-1) != self._history
        out_of_range = (latent < 0).any() | (latent >= c.classes).any()
        if any(torch.stack([stale.any(), out_of_range]).tolist()):  # one host read for both checks
            if bool(out_of_range):
                raise ScaleworldError(f"'latent' holds codes outside [0, {c.classes})")
            raise ScaleworldError(
                f"rows {stale.nonzero().flatten().tolist()} of the tensordict continue histories the env has moved "
                "past (a tensordict of an earlier step, or of another env): each row goes on from its own KV-cache "
                "history, so step with the tensordict of the last step, or reset those rows (from your own "
                "('context', ...) windows to branch)")
        return latent.long()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.imagination.latent = self._state(tensordict)
        reward, terminated = self.imagination.step(self._action(tensordict["action"]))
        out = self._observation(None, torch.zeros(self.imagination.batch, dtype=torch.bool, device=self.device))
        out["reward"] = reward[:, None]
        return out.update(self._flags(terminated))

    def _set_seed(self, seed: int | None) -> None:
        self.imagination.generator.manual_seed(0 if seed is None else int(seed))
