"""What PPO is trained on: an Atari game under the protocol, or any discrete gymnasium env.

A task says how to build its lock-step vector of emulators (the `VectorStep` contract of
`scaleworld.atari.envs.VectorAtari`), how an observation becomes the network's input (`view`),
which actions the policy chooses from, how many emulator frames one agent step is, and which
network to use. `train_env.MaskedVectorEnv` and `ppo.train_ppo` work on either kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scaleworld.atari.games import get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.errors import ScaleworldError
from scaleworld.experts.view import FrameStack, ViewSpec

# view_fn(obs from a VectorStep, first flags bool [N]) -> the network input for this observation
ViewFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class AtariTask:
    """An Atari 100k game under `protocol`; the network sees `view` (frames stacked by `FrameStack`).

    The policy chooses among the game's legal (minimal) actions; the env maps the chosen index to
    its id in the full 18-action space. The view's frame size is the protocol's frame size.
    """

    game: str
    protocol: Protocol = Protocol()
    grayscale: bool = True
    """The expert view converts frames to luma (see `scaleworld/experts/view.py`)."""
    stack: int = 4
    """Frames stacked in the expert view."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "game", get_game(self.game).name)  # canonical name; fails early if unknown
        self.view_spec  # noqa: B018 - validates grayscale/stack

    @property
    def name(self) -> str:
        return self.game

    @property
    def view_spec(self) -> ViewSpec:
        return ViewSpec(frame_size=self.protocol.frame_size, grayscale=self.grayscale, stack=self.stack)

    @property
    def actions(self) -> tuple[int, ...]:
        return get_game(self.game).legal_actions

    @property
    def frames_per_step(self) -> int:
        return self.protocol.frame_skip

    @property
    def needs_fire(self) -> bool:
        """The game waits for FIRE at the start of an episode (the game table's measured flag)."""
        return get_game(self.game).needs_fire

    @property
    def view_shape(self) -> tuple[int, ...]:
        return self.view_spec.shape

    view_dtype = torch.uint8

    def make_vector(self, num_envs: int):
        from scaleworld.atari.envs import VectorAtari

        return VectorAtari(self.game, num_envs, protocol=self.protocol)

    def make_view(self) -> ViewFn:
        stack = FrameStack(self.view_spec)
        return lambda obs, first: stack(torch.from_numpy(obs), torch.from_numpy(first))

    def make_network(self, *, seed: int):
        from scaleworld.experts.networks import PPOActorCritic, nature_cnn

        trunk, features = nature_cnn(self.view_spec.shape[0], self.protocol.frame_size)
        return PPOActorCritic(trunk, features, len(self.actions), seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "atari", "game": self.game, "protocol": self.protocol.to_dict(),
                "view": self.view_spec.to_dict()}


@dataclass(frozen=True, kw_only=True)
class GymTask:
    """A gymnasium env with Discrete(n) actions and a vector observation (e.g. CartPole-v1); tanh MLPs
    (separate actor and critic trunks)."""

    env_id: str
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the MLP trunk's hidden layers."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to ``gymnasium.make``."""

    def _probe(self):
        from scaleworld.experts.gym_vector import GymVector

        vec = GymVector(self.env_id, 1, env_kwargs=self.env_kwargs)
        vec.close()
        return vec

    @property
    def name(self) -> str:
        return self.env_id

    @property
    def actions(self) -> tuple[int, ...]:
        return tuple(range(self._probe().num_actions))

    @property
    def view_shape(self) -> tuple[int, ...]:
        return self._probe().observation_shape

    view_dtype = torch.float32
    frames_per_step = 1
    needs_fire = False

    def make_vector(self, num_envs: int):
        from scaleworld.experts.gym_vector import GymVector

        return GymVector(self.env_id, num_envs, env_kwargs=self.env_kwargs)

    def make_view(self) -> ViewFn:
        return lambda obs, first: torch.from_numpy(obs)

    def make_network(self, *, seed: int):
        from scaleworld.experts.networks import PPOActorCritic, mlp

        shape = self.view_shape
        if len(shape) != 1:
            raise ScaleworldError(f"{self.env_id} has observations of shape {shape}: GymTask needs flat vectors")
        trunk, features = mlp(shape[0], self.hidden)
        value_trunk, _ = mlp(shape[0], self.hidden)
        return PPOActorCritic(trunk, features, len(self.actions), seed=seed, value_trunk=value_trunk)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gym", **dataclasses.asdict(self), "hidden": list(self.hidden)}


Task = AtariTask | GymTask
