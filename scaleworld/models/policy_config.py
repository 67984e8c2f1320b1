"""`PolicyConfig`: what an actor-critic in imagination learns from and its network's size, the one
statement of these defaults (the actor-critic, its loss, the study spec's ``policy`` section and
`scaleworld policy train` take theirs from here); `AgentConfig`, the actor-critic's shape, and its
parameter count by formula. A light module: no torch, so the spec and `plan` read it without
importing torch or TorchRL."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaleworld.atari.games import NUM_ACTIONS
from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics_config import DynamicsConfig


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """What the actor-critic learns from; optimisation settings are a `TrainConfig` (its
    batch_size is the number of imagined rollouts per step)."""

    horizon: int = 16
    """Imagined steps per rollout."""
    context_steps: int = 8
    """Real steps each rollout starts from (the last one is its first observation); fewer in an
    episode's first steps, which start with the history they have."""
    gamma: float = 0.985
    lmbda: float = 0.95
    entropy_coef: float = 3e-4
    return_decay: float = 0.99
    """EMA decay of the return percentiles that normalise advantages."""
    target_tau: float = 0.02
    """EMA step of the slow target critic, per training step."""
    units: int = 256
    layers: int = 2
    """Hidden layers of the actor and of the critic (0: linear heads on the features)."""

    def __post_init__(self) -> None:
        for name in ("horizon", "context_steps", "units"):
            if getattr(self, name) < 1:
                raise ScaleworldError(f"policy.{name}={getattr(self, name)} must be at least 1")
        if self.layers < 0:
            raise ScaleworldError(f"policy.layers={self.layers} must be at least 0")
        if self.entropy_coef < 0:
            raise ScaleworldError(f"policy.entropy_coef={self.entropy_coef} must be at least 0 (a negative "
                                  "bonus rewards certainty)")
        for name in ("gamma", "lmbda", "return_decay", "target_tau"):
            if not 0 < getattr(self, name) <= 1:
                raise ScaleworldError(f"policy.{name}={getattr(self, name)} must be in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """The actor-critic's shape: its inputs are a dynamics model's (`DynamicsConfig`), its hidden
    layers the policy's (`PolicyConfig`); the defaults are theirs."""

    groups: int = DynamicsConfig.groups
    classes: int = DynamicsConfig.classes
    hidden_size: int = DynamicsConfig.width
    """The dynamics model's width."""
    num_actions: int = NUM_ACTIONS
    units: int = PolicyConfig.units
    layers: int = PolicyConfig.layers
    value_bins: int = 255
    value_limit: float = 20.0
    """Critic bins span [-limit, limit] in symlog space."""

    @classmethod
    def for_model(cls, model: DynamicsConfig, policy: PolicyConfig | None = None) -> AgentConfig:
        """The actor-critic on `model`'s latents and hidden state, with `policy`'s hidden layers
        (default: PolicyConfig's)."""
        policy = policy or PolicyConfig()
        return cls(groups=model.groups, classes=model.classes, hidden_size=model.width,
                   num_actions=model.num_actions, units=policy.units, layers=policy.layers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AgentConfig:
        return cls(**values)


def agent_parameters(config: AgentConfig) -> int:
    """Parameters of `ActorCritic(config)` by formula (a test checks it against the module's count):
    actor and critic are each an MLP on [one-hot latent, hidden state] of `layers` x (Linear,
    LayerNorm) and a Linear head (the actions; the critic's value bins)."""
    inputs = config.groups * config.classes + config.hidden_size

    def mlp(outputs: int) -> int:
        width, total = inputs, 0
        for _ in range(config.layers):
            total += width * config.units + config.units + 2 * config.units
            width = config.units
        return total + width * outputs + outputs

    return mlp(config.num_actions) + mlp(config.value_bins)
