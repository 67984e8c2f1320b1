"""TorchRL LossModules for the two stages of the world model: tokenizer and dynamics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.tokenizer import Tokenizer
from scaleworld.objectives.twohot import two_hot


class TokenizerLoss(LossModule):
    """Reconstruction MSE through the straight-through categorical code, plus a code-usage term.

    Reads ``pixels`` uint8 [..., 64, 64, 3]. Without the usage term the encoder collapses to one code
    for every frame within a few hundred steps (the decoder learns the mean frame; seen on Pong).
    ``loss_code_usage`` = usage_weight x (mean per-frame entropy - entropy of the batch-average
    distribution) / ln(classes): each frame's code sharp, different frames using different codes.
    """

    @dataclass
    class _AcceptedKeys:
        pixels: NestedKey = "pixels"

    default_keys = _AcceptedKeys

    def __init__(self, tokenizer: Tokenizer, *, usage_weight: float = 0.1):
        super().__init__()
        self.tokenizer = tokenizer
        self.usage_weight = usage_weight

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        return [self.tensor_keys.pixels]

    def forward(self, td: TensorDictBase) -> TensorDict:
        pixels = td[self.tensor_keys.pixels]
        pixels = pixels.reshape(-1, *pixels.shape[-3:])
        logits = self.tokenizer.logits(pixels)  # [B, G, C]
        recon = self.tokenizer.decode_onehot(self.tokenizer.straight_through(logits))
        loss = F.mse_loss(recon, pixels.float() / 255.0)
        probs = self.tokenizer.probs(logits)
        per_frame = -(probs * probs.log()).sum(-1).mean()
        average = probs.mean(0)  # [G, C]
        batch = -(average * average.log()).sum(-1).mean()
        usage = self.usage_weight * (per_frame - batch) / math.log(probs.shape[-1])
        return TensorDict({"loss_reconstruction": loss, "loss_code_usage": usage,
                           "total": (loss + usage).detach()}, batch_size=[])


class WorldModelLoss(LossModule):
    """Next-latent cross-entropy (nats per frame), reward two-hot CE, termination BCE, on [B, T] windows.

    Reads ``tokens`` uint8 [B, T, groups], ``action`` [B, T], ``("next", "reward")`` [B, T],
    ``("next", "terminated")`` [B, T], ``mask`` bool [B, T] and, for joint models, ``game`` [B, T].
    Returns ``loss_latent``, ``loss_reward``, ``loss_termination`` (summed by TorchRL-style
    trainers as every ``loss_*`` key) and ``total`` (their sum, detached, for logging).
    """

    @dataclass
    class _AcceptedKeys:
        tokens: NestedKey = "tokens"
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        terminated: NestedKey = ("next", "terminated")
        mask: NestedKey = "mask"
        game: NestedKey = "game"

    default_keys = _AcceptedKeys

    def __init__(self, model: DynamicsModel | TensorDictModuleBase):
        super().__init__()
        self.model = model

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        k = self.tensor_keys
        return [k.tokens, k.action, k.reward, k.terminated, k.mask] + ([k.game] if self.model.config.games else [])

    def terms(self, td: TensorDictBase) -> dict[str, torch.Tensor]:
        """Per-position losses (unreduced) and their masks; shared by training and fidelity."""
        k = self.tensor_keys
        cfg = self.model.config
        tokens = td[k.tokens].long()  # [B, T, G]
        mask = td[k.mask]  # [B, T]
        game = td[k.game] if cfg.games else None
        out = self.model(tokens, td[k.action], game)
        # next latent: position t predicts tokens[t + 1]; valid where t + 1 is in the same window
        logits = out["latent_logits"][:, :-1]  # [B, T-1, G, C]
        latent_nll = F.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten(), reduction="none")
        latent_nll = latent_nll.view(logits.shape[:3]).sum(-1)  # nats per frame [B, T-1]
        reward = td[k.reward].float()
        reward_ce = -(two_hot(reward, cfg.reward_bins, cfg.reward_limit)
                      * out["reward_logits"].log_softmax(-1)).sum(-1)  # [B, T]
        term_bce = F.binary_cross_entropy_with_logits(
            out["termination_logits"], td[k.terminated].float(), reduction="none")  # [B, T]
        return {"latent": latent_nll, "latent_mask": mask[:, 1:], "reward": reward_ce,
                "termination": term_bce, "step_mask": mask, "out": out}

    def forward(self, td: TensorDictBase) -> TensorDict:
        t = self.terms(td)

        def mean(x, m):
            return (x * m).sum() / m.sum().clamp(min=1)

        latent = mean(t["latent"], t["latent_mask"])
        reward = mean(t["reward"], t["step_mask"])
        termination = mean(t["termination"], t["step_mask"])
        return TensorDict(
            {"loss_latent": latent, "loss_reward": reward, "loss_termination": termination,
             "total": (latent + reward + termination).detach()},
            batch_size=[],
        )
