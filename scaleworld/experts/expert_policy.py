"""A deployed expert: scaleworld's policy interface around a network that maps views to logits.

Input (the policy interface, see `scaleworld/experts/random_policy.py`): a TensorDict with
``pixels`` uint8 [N, S, S, 3], ``action_mask`` bool [N, 18] and ``is_init`` bool [N]. Output: the
same TensorDict with ``action`` int64 [N] (ids in the full 18-action space), ``logits``
float32 [N, 18] (the expert's logits placed on the full action space, -inf where the expert
has no logit or the action is illegal) and ``view`` (what the network saw, uint8 [N, C, S, S]).

The policy keeps one `FrameStack` (the same code that built the view during PPO training) across
calls, so it must be called on every observation of its N environments, in order, as
`collect_dataset` and `score_policy` do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from scaleworld.atari.games import NUM_ACTIONS
from scaleworld.errors import ScaleworldError
from scaleworld.experts.view import FrameStack, ViewSpec

SAMPLINGS = ("sample", "greedy")


class ExpertPolicy:
    """Acts with an expert network: sampled (or greedy), epsilon-uniform over legal actions, masked."""

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
        if sampling not in SAMPLINGS:
            raise ScaleworldError(f"unknown expert sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
        if not 0.0 <= epsilon <= 1.0:
            raise ScaleworldError(f"epsilon={epsilon} must be in [0, 1]")
        self.logits_fn = logits_fn
        self.view = view
        self.actions = torch.tensor(actions, dtype=torch.int64)  # logit i -> full action id
        self.game = game
        self.seed = seed
        self.sampling = sampling
        self.epsilon = epsilon
        self._stack = FrameStack(view)
        self._generator = torch.Generator().manual_seed(seed)
        self._identity = dict(identity or {"kind": "expert", "game": game})

    @property
    def identity(self) -> dict[str, Any]:
        """Recorded in dataset manifests and score records: which expert, and how it was sampled."""
        return {**self._identity, "seed": self.seed, "sampling": self.sampling, "epsilon": self.epsilon}

    def reset(self) -> None:
        """Forget the frame history (the next call starts a fresh vector of environments)."""
        self._stack.reset()

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        if "is_init" not in td.keys():
            raise ScaleworldError("an expert policy needs 'is_init' (first observation of an episode) in its input")
        mask = td["action_mask"]  # bool [N, 18]
        view = self._stack(td["pixels"], td["is_init"])  # uint8 [N, C, S, S]
        with torch.no_grad():
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
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self._generator).squeeze(-1)
        if self.epsilon > 0.0:
            explore = torch.rand(action.shape, generator=self._generator) < self.epsilon
            scores = torch.rand(mask.shape, generator=self._generator).masked_fill(~mask, -1.0)
            action = torch.where(explore, scores.argmax(-1), action)  # uniform over the legal ids
        td["action"] = action
        td["logits"] = logits
        td["view"] = view
        return td
