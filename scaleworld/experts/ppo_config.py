"""PPO's settings, without torch: the study graph checks every expert job's settings when it is built.

Budgets are agent steps, the unit of the standard Atari PPO run (CleanRL's ``total_timesteps``:
10M agent steps = 40M emulator frames at frame skip 4). `budget_steps` turns either unit into agent
steps, so that a spec or a command line can say which one it means and never be misread.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scaleworld.errors import ScaleworldError


@dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """PPO settings; defaults are the usual Atari ones (Schulman et al. 2017; Huang et al. 2022)."""

    agent_steps: int = 10_000_000
    """Budget in agent steps: transitions of the vector of emulators (num_envs per vector step, reset and
    no-op start steps included), rounded up to whole updates. Frames = agent steps x frame skip. The
    default is the standard Atari PPO reference run (10M agent steps = 40M frames)."""
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
    """Value loss = 0.5 x value_coef x squared error (CleanRL / baselines; TorchRL's l2 is the squared error,
    so the loss module gets critic_coeff = value_coef / 2)."""
    clip_value_loss: bool = True
    """Clip the value prediction to within clip_epsilon of the value at collection and take the larger of the
    clipped and unclipped squared errors (CleanRL's default, which its reference scores used)."""
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    """Standardise advantages within each minibatch."""
    clip_rewards: bool = True
    """Learn from sign(reward) (Atari practice); logs and scores always use raw rewards."""
    episodic_life: bool = True
    """Atari: a lost life is a terminal state for learning (GAE does not bootstrap across it); the emulator
    plays on, and logs, stored data and scores keep whole episodes (see train_env.py)."""
    fire_reset: bool = True
    """Atari: in games that wait for FIRE (the game table's needs_fire), FIRE is pressed for the agent at the
    start of each episode (see train_env.py for why not after each lost life)."""
    checkpoint_every: int = 25
    """Write a checkpoint every this many updates (and always at the end or when stopped)."""

    def __post_init__(self) -> None:
        positive = ("agent_steps", "num_envs", "rollout_steps", "epochs", "minibatches", "checkpoint_every")
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

    def total_updates(self) -> int:
        return math.ceil(self.agent_steps / (self.num_envs * self.rollout_steps))


def budget_steps(*, agent_steps: int | None, frames: int | None, frame_skip: int, default: int | None = None,
                 what: str = "the budget") -> int:
    """Agent steps from a budget given in exactly one unit: `agent_steps`, or `frames` (a whole number of
    agent steps at `frame_skip`); neither gives `default` where there is one."""
    if agent_steps is not None and frames is not None:
        raise ScaleworldError(f"{what} is given both in agent steps ({agent_steps}) and in frames ({frames}): "
                              "give one")
    if frames is not None:
        if frames < 1 or frames % frame_skip:
            raise ScaleworldError(f"{what} of {frames} frames is not a positive whole number of agent steps at "
                                  f"frame skip {frame_skip}: give a multiple of {frame_skip}, or agent steps")
        return frames // frame_skip
    if agent_steps is None:
        if default is None:
            raise ScaleworldError(f"{what} is missing: give agent steps or frames")
        return default
    if agent_steps < 1:
        raise ScaleworldError(f"{what} of {agent_steps} agent steps is impossible: it must be at least 1")
    return agent_steps
