"""The actor-critic loss on imagined rollouts (DreamerV3/STORM style), a TorchRL LossModule.

Input: an imagined batch [B, H] in TorchRL's layout (`Imagination.rollout`): ``latent``,
``hidden``, ``action_mask``, ``action`` and ``next`` with the same observation keys plus
``reward``, ``done`` and ``terminated`` (all [B, H, 1]).

- Returns: TD(lambda) with bootstrap values from the slow EMA critic, cut at terminations
  (TorchRL's `vec_td_lambda_return_estimate`; a restart after a termination is a ``done``, so no
  return crosses it). Computed without gradient: the world model is frozen.
- Critic: cross-entropy of its two-hot symlog distribution against the returns.
- Actor: REINFORCE on discrete actions with advantage (R - v) / max(1, S), where S is an EMA of
  the 95th minus the 5th percentile of the returns (return normalisation that scales large
  returns down but never small ones up), plus an entropy bonus over the legal actions.
- The EMA target critic moves towards the critic by `target_tau` at every training call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule
from torchrl.objectives.value.functional import vec_td_lambda_return_estimate

from scaleworld.models.agent import ActorCritic
from scaleworld.objectives.twohot import expected_value, two_hot


class ActorCriticLoss(LossModule):
    """Returns ``loss_actor``, ``loss_critic``, ``loss_entropy`` and ``metric_*`` diagnostics."""

    @dataclass
    class _AcceptedKeys:
        latent: str = "latent"
        hidden: str = "hidden"
        action_mask: str = "action_mask"
        action: str = "action"
        reward: str = "reward"
        done: str = "done"
        terminated: str = "terminated"

    default_keys = _AcceptedKeys

    def __init__(self, agent: ActorCritic, *, gamma: float = 0.985, lmbda: float = 0.95, entropy_coef: float = 3e-4,
                 return_decay: float = 0.99, target_tau: float = 0.02, percentiles: tuple[float, float] = (0.05, 0.95)):
        super().__init__()
        self.agent = agent
        self.gamma = gamma
        self.lmbda = lmbda
        self.entropy_coef = entropy_coef
        self.return_decay = return_decay
        self.target_tau = target_tau
        self.percentiles = percentiles
        # EMA of the return percentiles; `return_seen` says whether the EMA has started
        self.register_buffer("return_low", torch.zeros(()))
        self.register_buffer("return_high", torch.zeros(()))
        self.register_buffer("return_seen", torch.zeros((), dtype=torch.bool))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        k = self.tensor_keys
        return [k.latent, k.hidden, k.action_mask, k.action, ("next", k.latent), ("next", k.hidden),
                ("next", k.reward), ("next", k.done), ("next", k.terminated)]

    def value(self, critic: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
        return expected_value(critic(features).float(), self.agent.config.value_limit)

    @torch.no_grad()
    def lambda_returns(self, td: TensorDictBase) -> torch.Tensor:
        """TD(lambda) returns [B, H] bootstrapped from the target critic."""
        k = self.tensor_keys
        nxt = td["next"]
        next_value = self.value(self.agent.target_critic, self.agent.features(nxt[k.latent], nxt[k.hidden]))
        return vec_td_lambda_return_estimate(
            self.gamma, self.lmbda, next_value[..., None], nxt[k.reward].float(), nxt[k.done], nxt[k.terminated],
        ).squeeze(-1)

    @torch.no_grad()
    def _return_scale(self, returns: torch.Tensor) -> torch.Tensor:
        q = torch.tensor(self.percentiles, device=returns.device)
        low, high = torch.quantile(returns.flatten().float(), q)
        if self.training:
            if not bool(self.return_seen):
                self.return_low.copy_(low)
                self.return_high.copy_(high)
                self.return_seen.fill_(True)
            else:
                self.return_low.lerp_(low, 1 - self.return_decay)
                self.return_high.lerp_(high, 1 - self.return_decay)
        return (self.return_high - self.return_low).clamp(min=1.0)

    def forward(self, td: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        c = self.agent.config
        if self.training:
            self.agent.update_target(self.target_tau)
        returns = self.lambda_returns(td)  # [B, H]
        features = self.agent.features(td[k.latent], td[k.hidden])  # [B, H, F]
        critic_logits = self.agent.critic(features).float()  # [B, H, bins]
        target = two_hot(returns, c.value_bins, c.value_limit)
        loss_critic = -(target * critic_logits.log_softmax(-1)).sum(-1).mean()
        value = expected_value(critic_logits.detach(), c.value_limit)
        scale = self._return_scale(returns)
        advantage = (returns - value) / scale

        logits = self.agent.logits(features, td[k.action_mask])  # [B, H, 18]
        log_probs = logits.log_softmax(-1)
        taken = log_probs.gather(-1, td[k.action].long()[..., None]).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return TensorDict(
            {
                "loss_actor": -(taken * advantage).mean(),
                "loss_critic": loss_critic,
                "loss_entropy": -self.entropy_coef * entropy.mean(),
                "metric_return": returns[:, 0].mean().detach(),
                "metric_reward": td["next", k.reward].mean().detach(),
                "metric_entropy": entropy.mean().detach(),
                "metric_return_scale": scale.detach(),
                "metric_terminated": td["next", k.terminated].float().mean().detach(),
            },
            batch_size=[],
        )
