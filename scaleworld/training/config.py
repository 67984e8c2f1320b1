"""What a training run is asked to do, without torch (the study graph builds 23,514 of these in
about a second): `TrainConfig`, token budgets as steps, and the matched single-game budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scaleworld.errors import ScaleworldError


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 1000
    """Gradient steps (the budget; `tokens_to_steps` converts a token budget)."""
    batch_size: int = 16
    """Items per step, what the trainer's sampler draws: sequences (dynamics), frames (tokenizer),
    imagined rollouts (policy)."""
    lr: float = 3e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at the last step."""
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 4
    checkpoint_every: int = 250
    log_every: int = 10
    compile: bool = False
    logger: str = "csv"
    """TorchRL logger: csv (default, in RUN/logs), tensorboard or wandb (their packages must be installed)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ScaleworldError(f"train.{name}={getattr(self, name)} must be at least 1")
        if not self.lr > 0:
            raise ScaleworldError(f"train.lr={self.lr} must be positive")
        if self.logger not in ("csv", "tensorboard", "wandb"):
            raise ScaleworldError(f"train.logger={self.logger!r}: use csv, tensorboard or wandb")


def tokens_to_steps(tokens: int, *, batch_size: int, seq_len: int) -> int:
    """Gradient steps that consume `tokens` tokens (one token per time step), rounded up."""
    return max(1, math.ceil(tokens / (batch_size * seq_len)))


MatchRule = Literal["tokens_per_game", "total_steps", "data"]

MATCH_RULES: dict[str, str] = {
    "tokens_per_game": "the joint run's exposure per game (joint_steps / G steps) on the same data.steps "
                       "of its game: with the default joint_steps, the single run itself",
    "total_steps": "the joint run's gradient steps (G x its exposure per game) on the same data.steps of "
                   "its game: G times the optimisation on the same frames",
    "data": "the joint run's exposure per game and its count of distinct transitions: G x data.steps of its "
            "own game from the same expert (breaks the Atari 100k budget on purpose)",
}
"""What each matched-control rule holds equal to the joint run (G = the joint run's games); the
report labels the control with it."""

JOINT_SHORT = ("the joint run at 1/G of its exposure per game (joint_steps / G steps): the same games "
               "and diversity with a single run's total steps")
"""What the ``joint_short`` mode holds equal: exposure against diversity."""


def matched_steps(*, joint_steps: int, num_games: int, rule: MatchRule) -> int:
    """Gradient steps for a single-game run matched to a joint run (same batch and window).

    ``tokens_per_game`` and ``data``: the single run sees as many tokens of its game as the joint
    run saw of each game (joint_steps / num_games); ``data`` sees them on num_games times more
    distinct transitions. ``total_steps``: as many gradient steps as the joint run.
    """
    if rule in ("tokens_per_game", "data"):
        return max(1, math.ceil(joint_steps / num_games))
    if rule == "total_steps":
        return joint_steps
    raise ScaleworldError(f"unknown matching rule {rule!r}: use {', '.join(MATCH_RULES)}")
