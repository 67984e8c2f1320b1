"""PPO's settings, without torch: the study graph checks every expert job's settings when it is built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scaleworld.errors import ScaleworldError


@dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """PPO settings; defaults are the usual Atari ones (Schulman et al. 2017; Huang et al. 2022)."""

    frames: int = 10_000_000
    """Budget in emulator frames (agent steps x frame skip); rounded up to whole updates."""
    seed: int = 0
    """Seeds the network initialisation, action sampling, minibatch order and the emulators."""
    num_envs: int = 8
    """Emulators stepped together."""
    rollout_steps: int = 128
    """Steps per emulator per update (a batch is num_envs x rollout_steps transitions)."""
    epochs: int = 4
    """Passes over each batch."""
    minibatches: int = 4
    """Minibatches per pass."""
    learning_rate: float = 2.5e-4
    """Adam step size (annealed linearly to 0 over the run when anneal_lr)."""
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.1
    """PPO ratio clipping."""
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    """Standardise advantages within each minibatch."""
    clip_rewards: bool = True
    """Learn from sign(reward) (Atari practice); logs and scores always use raw rewards."""
    checkpoint_every: int = 25
    """Write a checkpoint every this many updates (and always at the end or when stopped)."""

    def __post_init__(self) -> None:
        positive = ("frames", "num_envs", "rollout_steps", "epochs", "minibatches", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ScaleworldError(f"PPO {name}={getattr(self, name)} must be at least 1")
        if self.num_envs * self.rollout_steps < self.minibatches:
            raise ScaleworldError(f"PPO minibatches={self.minibatches} exceeds the batch of "
                                  f"num_envs x rollout_steps = {self.num_envs * self.rollout_steps}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ScaleworldError(f"PPO {name}={getattr(self, name)} must be in [0, 1]")
        if self.learning_rate <= 0 or self.clip_epsilon <= 0:
            raise ScaleworldError("PPO learning_rate and clip_epsilon must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def total_updates(self, frames_per_step: int) -> int:
        return math.ceil(self.frames / (self.num_envs * self.rollout_steps * frames_per_step))
