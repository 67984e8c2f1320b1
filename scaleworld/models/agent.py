"""The agent trained in imagination: actor and critic on [latent, hidden state].

Both read the same features: the one-hot latent z_t (groups x classes) concatenated with the
dynamics model's hidden state h_{t-1} (width), see `scaleworld/imagination/core.py`. The actor
outputs logits over the full 18-action space with illegal actions masked out (the game's legal
set, `action_mask`); the critic outputs a two-hot distribution over symlog bins (DreamerV3).
`ActorCritic.value_operator` is the critic as TorchRL's value networks are (``state_value``
[..., 1] from ``latent`` and ``hidden``): the loss keeps its slow target copy as TorchRL's target
parameters (`scaleworld.objectives.actor_critic`). Policy files written before that held the
target copy too (``target_critic.*``): they load, the copy dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn

from scaleworld.models.categorical import sample_categorical
from scaleworld.models.policy_config import AgentConfig
from scaleworld.models.twohot import expected_value

MASKED = -1e9
"""Logit of an illegal action: softmax gives it exactly 0 (a finite value keeps 0 * logit = 0)."""


def _mlp(inputs: int, units: int, layers: int, outputs: int) -> nn.Sequential:
    body: list[nn.Module] = []
    for i in range(layers):
        body += [nn.Linear(inputs if i == 0 else units, units), nn.LayerNorm(units), nn.SiLU()]
    return nn.Sequential(*body, nn.Linear(units if layers else inputs, outputs))


def features(latent: torch.Tensor, hidden: torch.Tensor, classes: int) -> torch.Tensor:
    """latent int [..., groups], hidden float [..., width] -> float [..., groups*classes + width]."""
    onehot = F.one_hot(latent.long(), classes).flatten(-2).to(hidden.dtype)
    return torch.cat([onehot, hidden], dim=-1)


class TwoHotValue(nn.Module):
    """The critic's expected value: (latent, hidden) -> float [..., 1] (a TorchRL value network's
    ``state_value``), symexp of the mean bin of its two-hot distribution."""

    def __init__(self, critic: nn.Module, config: AgentConfig):
        super().__init__()
        self.critic = critic
        self.classes = config.classes
        self.limit = config.value_limit

    def forward(self, latent: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return expected_value(self.critic(features(latent, hidden, self.classes)).float(), self.limit)[..., None]


class ActorCritic(nn.Module):
    def __init__(self, config: AgentConfig):
        super().__init__()
        self.config = c = config
        size = c.groups * c.classes + c.hidden_size
        self.actor = _mlp(size, c.units, c.layers, c.num_actions)
        self.critic = _mlp(size, c.units, c.layers, c.value_bins)
        nn.init.zeros_(self.critic[-1].weight)  # start by predicting a value of exactly 0
        nn.init.zeros_(self.critic[-1].bias)
        self.register_load_state_dict_pre_hook(_drop_target_copy)

    def features(self, latent: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """latent int [..., groups], hidden float [..., width] -> float [..., groups*classes + width]."""
        return features(latent, hidden, self.config.classes)

    def logits(self, features: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
        """Action logits [..., 18], illegal actions at MASKED."""
        return self.actor(features).float().masked_fill(~action_mask, MASKED)

    def value_operator(self) -> TensorDictModule:
        """The critic as a TorchRL value network: ``latent``, ``hidden`` -> ``state_value`` [..., 1]
        (its parameters are the critic's own)."""
        return TensorDictModule(TwoHotValue(self.critic, self.config), in_keys=["latent", "hidden"],
                                out_keys=["state_value"])


def _drop_target_copy(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Policy files of earlier versions held the critic's slow copy (``target_critic.*``), now the loss's."""
    for key in [k for k in state_dict if k.startswith(prefix + "target_critic.")]:
        del state_dict[key]


class ActorPolicy(TensorDictModuleBase):
    """The actor as a TorchRL policy: reads latent, hidden, action_mask; writes action (and logits).

    Samples with its own `generator` (explicit RNG), or takes the most likely action (greedy).
    """

    in_keys = ["latent", "hidden", "action_mask"]
    out_keys = ["action", "logits"]

    def __init__(self, agent: ActorCritic, *, generator: torch.Generator | None = None, greedy: bool = False):
        super().__init__()
        if generator is None and not greedy:
            raise ValueError("a sampling policy needs a generator (or greedy=True)")
        self.agent = agent
        self.generator = generator
        self.greedy = greedy

    @torch.no_grad()
    def forward(self, td: TensorDictBase) -> TensorDictBase:
        logits = self.agent.logits(self.agent.features(td["latent"], td["hidden"]), td["action_mask"])
        td["logits"] = logits
        td["action"] = logits.argmax(-1) if self.greedy else sample_categorical(logits, self.generator)
        return td
