"""The actor-critic loss on imagined rollouts (DreamerV3/STORM style), a TorchRL LossModule.

Input: an imagined batch [B, H] in TorchRL's layout (`Imagination.rollout`, `ImaginationEnv`):
``latent``, ``hidden``, ``action_mask``, ``action`` and ``next`` with the same observation keys
plus ``reward``, ``done`` and ``terminated`` (all [B, H, 1]).

Built from TorchRL's parts, as its own losses are:

- Returns: TD(lambda), TorchRL's `TDLambdaEstimator` (``make_value_estimator``; the default,
  `ValueEstimators.TDLambda`, with the loss's gamma and lambda), bootstrapped from the slow critic,
  cut at terminations (a restart after a termination is a ``done``, so no return crosses it).
  Computed without gradient: the world model is frozen.
- The slow critic is TorchRL's target parameters (``convert_to_functional(...,
  create_target_params=True)``: ``target_critic_network_params``), moved towards the critic by
  TorchRL's `SoftUpdate` after each optimiser step (`scaleworld.imagination.train` steps one with
  ``tau=target_tau``; without an updater TorchRL warns, as for its own losses).
- Critic: cross-entropy of its two-hot symlog distribution against the returns.
- Actor: REINFORCE on discrete actions with advantage (R - v) / max(1, S), S the EMA of the 95th
  minus the 5th percentile of the returns, TorchRL's `PercentileValueNorm` (rate 1 - return_decay),
  started at the first batch's percentiles rather than at 0 (so the first updates are not scaled as
  if the returns spanned nothing), plus an entropy bonus over the legal actions.

Kept from scaleworld rather than TorchRL's DreamerV3 losses: those roll the imagination out
themselves through a `DreamerEnv` (ours is the KV-cached fast path, CUDA-graphed), and TorchRL's
two-hot (`two_hot_encode`) interpolates in raw value space on symexp-spaced bins with an in-place
scatter, which fails under `torch.func.vmap` (packed dynamics training shares
`scaleworld.models.twohot` with the reward head): the two-hot here is DreamerV3's original, in
symlog space (ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictParams
from tensordict.utils import NestedKey
from torchrl.modules import PercentileValueNorm
from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators
from torchrl.objectives.value import TDLambdaEstimator

from scaleworld.models.agent import ActorCritic
from scaleworld.models.policy_config import PolicyConfig
from scaleworld.models.twohot import expected_value, two_hot


class ActorCriticLoss(LossModule):
    """Returns ``loss_actor``, ``loss_critic``, ``loss_entropy`` and ``metric_*`` diagnostics (`out_keys`)."""

    @dataclass
    class _AcceptedKeys:
        latent: NestedKey = "latent"
        hidden: NestedKey = "hidden"
        action_mask: NestedKey = "action_mask"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        value: NestedKey = "state_value"

    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TDLambda
    out_keys = ["loss_actor", "loss_critic", "loss_entropy", "metric_return", "metric_reward", "metric_entropy",
                "metric_return_scale", "metric_terminated"]

    critic_network: TensorDictModule
    critic_network_params: TensorDictParams
    target_critic_network_params: TensorDictParams

    def __init__(self, agent: ActorCritic, *, gamma: float = PolicyConfig.gamma, lmbda: float = PolicyConfig.lmbda,
                 entropy_coef: float = PolicyConfig.entropy_coef, return_decay: float = PolicyConfig.return_decay,
                 percentiles: tuple[float, float] = (0.05, 0.95)):
        super().__init__()
        self.agent = agent
        self.gamma = gamma
        self.lmbda = lmbda
        self.entropy_coef = entropy_coef
        # the critic's weights are the agent's own; the slow copy is TorchRL's target parameters
        self.convert_to_functional(agent.value_operator(), "critic_network", create_target_params=True)
        self.retnorm = PercentileValueNorm(quantiles=percentiles, rate=1 - return_decay, min_scale=1.0)
        self.register_buffer("return_seen", torch.zeros((), dtype=torch.bool))
        self.make_value_estimator(self.default_value_estimator, gamma=gamma, lmbda=lmbda)
        self.target_behind = False
        """True after loading a checkpoint of the earlier layout, whose slow critic had not yet followed
        the last update (it moved at the start of the next): the trainer's updater catches it up once."""
        self.register_load_state_dict_pre_hook(_migrate_checkpoint)

    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams) -> None:
        """TD(lambda) only (the returns the actor and critic are defined on), TorchRL's estimator."""
        value_type = value_type or self.default_value_estimator
        if value_type != ValueEstimators.TDLambda:
            raise NotImplementedError(f"ActorCriticLoss computes TD(lambda) returns, not {value_type}")
        hyperparams = {"gamma": self.gamma, "lmbda": self.lmbda, **hyperparams}
        self._value_estimator = TDLambdaEstimator(value_network=self.critic_network, vectorized=True, **hyperparams)
        self._forward_value_estimator_keys()

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if getattr(self, "_value_estimator", None) is not None:
            k = self.tensor_keys
            self._value_estimator.set_keys(value=k.value, reward=k.reward, done=k.done, terminated=k.terminated)

    @property
    def in_keys(self):
        k = self.tensor_keys
        return [k.latent, k.hidden, k.action_mask, k.action, ("next", k.latent), ("next", k.hidden),
                ("next", k.reward), ("next", k.done), ("next", k.terminated)]

    @torch.no_grad()
    def lambda_returns(self, td: TensorDictBase) -> torch.Tensor:
        """TD(lambda) returns [B, H] bootstrapped from the target critic."""
        k = self.tensor_keys
        data = td.select(*self.in_keys)
        data["next", k.reward] = data["next", k.reward].float()
        return self.value_estimator.value_estimate(data, target_params=self.target_critic_network_params).squeeze(-1)

    @torch.no_grad()
    def _return_scale(self, returns: torch.Tensor) -> torch.Tensor:
        if self.training:
            rate = self.retnorm.rate
            # the first batch: its percentiles exactly (lerp by 1 is exact); the weight chosen on the device
            # (a 0-dim tensor lerp_ takes), as `bool(return_seen)` would make the host wait for the GPU
            self.retnorm.rate = torch.where(self.return_seen, rate, 1.0)
            self.retnorm.update(returns.reshape(-1, 1).float())
            self.retnorm.rate = rate
            self.return_seen.fill_(True)
        return self.retnorm.scale().squeeze(-1)

    def forward(self, td: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        c = self.agent.config
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


def _migrate_checkpoint(module: torch.nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints of runs begun before the loss was built on TorchRL's parts: the slow critic was the
    agent's ``target_critic`` and the return percentiles flat buffers; a run in progress resumes."""
    old = prefix + "agent.target_critic."
    module.target_behind = any(k.startswith(old) for k in state_dict)
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "target_critic_network_params.module.critic." + key[len(old):]] = state_dict.pop(key)
        online = prefix + "agent.critic." + key[len(old):]  # the critic's weights, under their TorchRL name too
        state_dict.setdefault(prefix + "critic_network_params.module.critic." + key[len(old):], state_dict[online])
    for name in ("low", "high"):
        if prefix + f"return_{name}" in state_dict:
            state_dict[prefix + f"retnorm.{name}"] = state_dict.pop(prefix + f"return_{name}").reshape(1)
    for name in ("gamma", "lmbda"):  # the estimator's settings: the loss's own, not state
        state_dict.setdefault(prefix + f"_value_estimator.{name}", getattr(module.value_estimator, name))
