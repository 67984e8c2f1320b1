"""How an actor-critic is trained in imagination: where rollouts start and the optimiser's settings
(a light module: the study spec derives its ``policy`` section from it and from
`scaleworld.models.policy_config.PolicyConfig` without importing torch or TorchRL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.training.config import TrainConfig

START_SPLITS = ("held_out", "train", "all")
"""Which episodes of the model's own split imagined rollouts start from: its held-out episodes (the
ones fidelity is measured on), its training episodes, or both. The first is the setting from before
the choice existed: jobs with it keep their identities."""
DEFAULT_STARTS = "all"
"""Measured (tools/policy_curve.py on studies/pilot_cpu.yaml's CrazyClimber tiny-d2 seed 0, one policy
per point): the real score was the same from either split (10,469-11,838 against random's 7,003), but
from the held-out episodes alone the imagined reward per step ran ahead of the real one sooner (gap
1.0 at 250 and 500 updates, against 0.08 and 0.33 from all episodes; at 1,000 both ran ahead, 2.0
and 1.8). The reference implementations start from their training data too."""


@dataclass(frozen=True, kw_only=True)
class PolicyTraining:
    """How long and how the actor-critic is optimised, by default: the one statement of these
    defaults (the spec's policy section, `scaleworld policy train` and `policy_train_config`)."""

    steps: int = 1000
    """Actor-critic updates."""
    batch_size: int = 1024
    """Imagined rollouts per update."""
    lr: float = 1e-4
    checkpoint_every: int = 250


POLICY_TRAINING = PolicyTraining()


def policy_train_config(*, steps: int, batch_size: int = POLICY_TRAINING.batch_size, lr: float = POLICY_TRAINING.lr,
                        checkpoint_every: int = POLICY_TRAINING.checkpoint_every, **overrides: Any) -> TrainConfig:
    """A `TrainConfig` with the actor-critic's settings (no weight decay, clip 100, a 10-update
    warmup); warmup, evaluation and checkpoint intervals never exceed `steps`."""
    return TrainConfig(**{"weight_decay": 0.0, "grad_clip": 100.0, "beta2": 0.999, "warmup_steps": min(10, steps),
                          "eval_every": min(250, steps), **overrides, "lr": lr, "batch_size": batch_size,
                          "steps": steps, "checkpoint_every": min(checkpoint_every, steps)})
