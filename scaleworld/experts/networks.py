"""The PPO actor-critic: a trunk shared by a policy head (logits) and a value head, as TorchRL modules.

Atari experts use the Nature-DQN CNN (Mnih et al. 2015: 32 8x8/4, 64 4x4/2, 64 3x3/1, 512 units)
on the expert view (uint8 [B, C, S, S], scaled to [0, 1] inside the network); gymnasium tasks
with vector observations use a tanh MLP. Initialisation follows the usual PPO practice
(orthogonal, gain sqrt(2) in the trunk, 0.01 on the policy head, 1 on the value head, zero
biases), drawn from a generator seeded explicitly so the global torch RNG plays no part.

The TensorDict keys: ``"view"`` -> ``"hidden"`` (trunk) -> ``"logits"`` -> ``"action"`` (an
index into the task's action list) and ``"action_log_prob"`` (policy), ``"state_value"`` (value).
"""

from __future__ import annotations

import math

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from scaleworld.errors import ScaleworldError


class ScaleBytes(nn.Module):
    """uint8 [B, ...] -> float32 in [0, 1]: the view stays uint8 everywhere outside the network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255.0


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class NatureCNN(nn.Module):
    """uint8 [*, C, S, S] -> float [*, 512] for any leading dims (GAE evaluates [N, T] batches)."""

    def __init__(self, in_channels: int, frame_size: int):
        super().__init__()
        side = frame_size
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            side = _conv_out(side, kernel, stride)
        if side < 1:
            raise ScaleworldError(f"frame_size={frame_size} is too small for the Nature CNN: use at least 36")
        self.net = nn.Sequential(
            ScaleBytes(),
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),  # S=64: [B, 32, 15, 15]
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # [B, 64, 6, 6]
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),  # [B, 64, 4, 4]
            nn.Flatten(),
            nn.Linear(64 * side * side, 512), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        features = self.net(x.reshape(-1, *x.shape[-3:]))  # [prod(lead), 512]
        return features.reshape(*lead, features.shape[-1])


def nature_cnn(in_channels: int, frame_size: int) -> tuple[NatureCNN, int]:
    """The Nature-DQN trunk and its feature width (512)."""
    return NatureCNN(in_channels, frame_size), 512


def mlp(in_features: int, hidden: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """float [B, in_features] -> float [B, hidden[-1]] with tanh activations."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers), width


def _init(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
            nn.init.zeros_(layer.bias)


class PPOActorCritic(nn.Module):
    """Policy and value heads on a trunk, and the TorchRL operators PPO uses.

    With `value_trunk` None the trunk is shared (the Atari practice: one CNN, rewards clipped so
    value targets stay small); otherwise the critic has its own trunk (the practice for small MLP
    tasks, where unclipped returns would let the value loss swamp a shared trunk).

    `policy` is a ``ProbabilisticActor`` (view -> action index, action_log_prob, sampled from a
    Categorical over the logits), `value` a ``ValueOperator`` (view -> state_value), `loss_value`
    the critic to hand to ``ClipPPOLoss`` next to `policy` (see below).
    `logits_module()` is the plain ``nn.Module`` view -> logits that an expert checkpoint exports.
    """

    def __init__(self, trunk: nn.Module, features: int, num_actions: int, *, seed: int,
                 value_trunk: nn.Module | None = None):
        from torchrl.data import Categorical
        from torchrl.modules import ActorValueOperator, ProbabilisticActor, ValueOperator

        super().__init__()
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            self.trunk = trunk
            self.value_trunk = value_trunk
            self.policy_head = nn.Linear(features, num_actions)
            self.value_head = nn.Linear(features, 1)
        generator = torch.Generator().manual_seed(seed)
        for module, gain in ((self.trunk, math.sqrt(2.0)), (self.value_trunk, math.sqrt(2.0)),
                             (self.policy_head, 0.01), (self.value_head, 1.0)):  # 0.01: near-uniform policy
            if module is not None:
                _init(module, gain, generator)
        self.num_actions = num_actions

        logits = TensorDictModule(self.policy_head, in_keys=["hidden"], out_keys=["logits"])
        dist = dict(in_keys=["logits"], out_keys=["action"], spec=Categorical(num_actions),
                    distribution_class=torch.distributions.Categorical, return_log_prob=True)
        if value_trunk is None:
            common = TensorDictModule(self.trunk, in_keys=["view"], out_keys=["hidden"])
            critic = ValueOperator(self.value_head, in_keys=["hidden"])
            operator = ActorValueOperator(common, ProbabilisticActor(logits, **dist), critic)
            self.policy = operator.get_policy_operator()
            self.value = operator.get_value_operator()
            # In ClipPPOLoss the actor runs first and leaves the trunk's "hidden" (with its graph) in the
            # minibatch; the critic then needs only its head. Same loss and gradients, one trunk pass
            # instead of two (a missing "hidden" would fail loudly, never silently).
            self.loss_value = critic
        else:
            self.policy = ProbabilisticActor(
                TensorDictSequential(TensorDictModule(self.trunk, in_keys=["view"], out_keys=["hidden"]), logits),
                **dist,
            )
            self.value = ValueOperator(nn.Sequential(self.value_trunk, self.value_head), in_keys=["view"])
            self.loss_value = self.value

    def logits_module(self) -> nn.Sequential:
        """view -> logits [B, num_actions], sharing this model's parameters."""
        return nn.Sequential(self.trunk, self.policy_head)
