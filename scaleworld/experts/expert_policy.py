"""A deployed expert: a TensorDictModule around a network that maps views to logits.

Keys (batch [N]), as TorchRL's recurrent modules keep their state: it reads ``pixels`` uint8
[N, S, S, 3], ``action_mask`` bool [N, 18], ``is_init`` bool [N, 1] (or [N]) and its state
``expert_view`` uint8 [N, C, S, S] (the view of the previous observation; absent at the first
call, or zeros from the primer); it writes ``action`` int64 [N] (ids in the full 18-action space),
``logits`` float32 [N, 18] (the expert's logits placed on the full action space, -inf where the
expert has no logit or the action is illegal) and ``("next", "expert_view")``, the view it acted
on (what the network saw), which `step_mdp` (a Collector, ``env.rollout``) moves to the root for
the next step. So the frame history lives in the tensordict, not in the object: one expert can
act in any number of envs, in any order, and a rollout can be replayed from any of its steps.

In a TorchRL env (`scaleworld.atari.envs.make_torchrl_env` writes ``is_init``), add the state's
primer, ``env.append_transform(expert.make_tensordict_primer())``, or let the Collector add it
(``auto_register_policy_transforms=True``). `scaleworld.data.collect.Acting` carries the state
the same way for the vector emulators of collection and scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from scaleworld.atari.games import NUM_ACTIONS
from scaleworld.errors import ScaleworldError
from scaleworld.experts.view import ViewSpec, next_view

SAMPLINGS = ("sample", "greedy")
STATE_KEY = "expert_view"


class ExpertPolicy(TensorDictModuleBase):
    """Acts with an expert network: sampled (or greedy), epsilon-uniform over legal actions, masked.

    Randomness comes from the policy's own generator (seeded by `seed`).
    """

    in_keys = ["pixels", "action_mask", "is_init", STATE_KEY]
    out_keys = ["action", "logits", ("next", STATE_KEY)]

    def __init__(
        self,
        *,
        logits_fn: Callable[[torch.Tensor], torch.Tensor],
        view: ViewSpec,
        actions: tuple[int, ...],
        game: str,
        seed: int,
        sampling: str = "sample",
        epsilon: float = 0.0,
        identity: dict[str, Any] | None = None,
    ):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ScaleworldError(f"unknown expert sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
        if not 0.0 <= epsilon <= 1.0:
            raise ScaleworldError(f"epsilon={epsilon} must be in [0, 1]")
        self.logits_fn = logits_fn
        self.view = view
        self.register_buffer("actions", torch.tensor(actions, dtype=torch.int64), persistent=False)  # logit i -> id
        self.game = game
        self.seed = seed
        self.sampling = sampling
        self.epsilon = epsilon
        self.generator = torch.Generator().manual_seed(seed)
        self._identity = dict(identity or {"kind": "expert", "game": game})

    @property
    def identity(self) -> dict[str, Any]:
        """Recorded in dataset manifests and score records: which expert, and how it was sampled."""
        return {**self._identity, "seed": self.seed, "sampling": self.sampling, "epsilon": self.epsilon}

    def make_tensordict_primer(self):
        """TorchRL's `TensorDictPrimer` of the state: zeros of ``expert_view`` in every reset."""
        from torchrl.data import Unbounded
        from torchrl.envs import TensorDictPrimer

        return TensorDictPrimer({STATE_KEY: Unbounded(shape=self.view.shape, dtype=torch.uint8)},
                                default_value=0, random=False)

    @torch.no_grad()
    def forward(self, td: TensorDictBase) -> TensorDictBase:
        if "is_init" not in td.keys():
            raise ScaleworldError("an expert policy needs 'is_init' (first observation of an episode) in its input: "
                                  "add TorchRL's InitTracker to the env (make_torchrl_env has it)")
        batch = td.batch_size  # any shape: [] for a single env, [N] for a vector of them; flattened to [N]
        s = self.view.frame_size
        pixels = td["pixels"]
        if pixels.shape[len(batch):] != (s, s, 3):
            raise ScaleworldError(f"the expert sees {s}x{s} RGB frames, got pixels {list(pixels.shape)} for a batch of "
                                  f"{list(batch)}: use the protocol the expert was made for (frame_size={s})")
        mask = td["action_mask"].reshape(-1, NUM_ACTIONS)  # bool [N, 18]
        previous = td.get(STATE_KEY, None)
        previous = None if previous is None else previous.reshape(-1, *self.view.shape)
        view = next_view(self.view, previous, pixels.reshape(-1, s, s, 3), td["is_init"].reshape(-1))  # [N, C, S, S]
        own = self.logits_fn(view).to(torch.float32)  # [N, len(actions)]
        logits = torch.full((own.shape[0], NUM_ACTIONS), float("-inf"))
        logits[:, self.actions] = own
        logits = logits.masked_fill(~mask, float("-inf"))  # [N, 18]
        known = torch.isfinite(logits).any(-1)
        if not bool(known.all()):
            raise ScaleworldError(
                f"none of the expert's actions {self.actions.tolist()} is legal in this game: "
                f"the expert was made for {self.game}; collect or score it on that game"
            )
        if self.sampling == "greedy":
            action = logits.argmax(-1)
        else:
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator).squeeze(-1)
        if self.epsilon > 0.0:
            explore = torch.rand(action.shape, generator=self.generator) < self.epsilon
            scores = torch.rand(mask.shape, generator=self.generator).masked_fill(~mask, -1.0)
            action = torch.where(explore, scores.argmax(-1), action)  # uniform over the legal ids
        td["action"] = action.reshape(batch)
        td["logits"] = logits.reshape(*batch, NUM_ACTIONS)
        td["next", STATE_KEY] = view.reshape(*batch, *self.view.shape)
        return td
