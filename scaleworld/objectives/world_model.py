"""TorchRL LossModules for the two stages of the world model: tokenizer and dynamics.

`DynamicsLoss` was named ``WorldModelLoss`` before torchrl 0.14 shipped a
``torchrl.objectives.WorldModelLoss`` (a DreamerV1-style RSSM loss): another thing under the same
name, so it is named by the model it trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import TERMINATION_TARGETS
from scaleworld.models.tokenizer import Tokenizer
from scaleworld.models.tokenizer_quality import perplexity
from scaleworld.models.twohot import two_hot


class TokenizerLoss(LossModule):
    """Reconstruction of each frame through a sampled straight-through categorical code.

    Reads ``pixels`` uint8 [..., 64, 64, 3] and, with `game_variance`, ``game`` (an index into it,
    one per frame). ``loss_reconstruction`` is each frame's squared error summed over its pixels and
    channels (pixels in [0, 1]), averaged over frames. A per-pixel mean would make a 2-pixel ball
    worth 1/6000 of a frame's loss. With `game_variance` [G] (each game's mean squared deviation of
    a pixel from the game's mean frame), each frame's error is divided by its game's summed
    variance: the loss is then the frames' mean residual fraction, the figure the quality gate
    reads (up to its details: training frames' variance, sampled codes, batch statistics), and every
    game of a shared tokenizer counts alike (with plain sums, Boxing's 6x larger pixel variance
    drowned Pong, Breakout and Freeway: tools/bench_tokenizer.py --shared).
    In training the classes are drawn from `generator` (checkpoint it with the run: a resumed run
    then draws what it would have drawn); in eval mode the loss reads the mode, the stored token.
    ``metric_code_perplexity``: the perplexity of each variable's batch-average class distribution,
    averaged over variables (1: every frame gets the same code; logged to spot a collapse early).
    No code-usage term: sampled codes keep the classes in use.
    """

    @dataclass
    class _AcceptedKeys:
        pixels: NestedKey = "pixels"
        game: NestedKey = "game"

    default_keys = _AcceptedKeys
    out_keys = ["loss_reconstruction", "metric_code_perplexity", "total"]

    def __init__(self, tokenizer: Tokenizer, *, game_variance: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.tokenizer = tokenizer
        self.generator = generator
        self.register_buffer("game_variance", None if game_variance is None else game_variance.float())

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        return [self.tensor_keys.pixels] + ([self.tensor_keys.game] if self.game_variance is not None else [])

    def forward(self, td: TensorDictBase) -> TensorDict:
        pixels = td[self.tensor_keys.pixels]
        pixels = pixels.reshape(-1, *pixels.shape[-3:])  # [B, 64, 64, 3]
        logits = self.tokenizer.logits(pixels)  # [B, G, C]
        if self.training:
            code = self.tokenizer.sample_onehot(logits, self.generator)
        else:
            code = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        recon = self.tokenizer.decode_onehot(code)  # [B, 64, 64, 3]
        error = (recon - pixels.float() / 255.0).pow(2).sum((1, 2, 3))  # [B]
        if self.game_variance is not None:
            error = error / (self.game_variance[td[self.tensor_keys.game].reshape(-1)] * pixels[0].numel())
        usage = perplexity(self.tokenizer.probs(logits).detach().mean(0)).mean()  # over [G] variables
        return TensorDict({"loss_reconstruction": error.mean(), "metric_code_perplexity": usage,
                           "total": error.mean().detach()}, batch_size=[])


def _per_step(x: torch.Tensor) -> torch.Tensor:
    """[B, T] from [B, T] or TorchRL's [B, T, 1]."""
    return x.squeeze(-1) if x.dim() == 3 and x.shape[-1] == 1 else x


class DynamicsLoss(LossModule):
    """Next-latent cross-entropy (nats per frame), reward two-hot CE, termination BCE, on [B, T] windows.

    Reads ``tokens`` uint8 [B, T, groups], ``action`` [B, T], ``("next", "reward")`` [B, T] or
    TorchRL's [B, T, 1], ``("next", "terminated")`` likewise (with ``termination="life_loss"`` also
    ``("next", "life_loss")``: the target is then terminated | life_loss), ``mask`` bool [B, T] (padding
    False; absent: every step counts) and, for joint models, ``game``.
    Returns ``loss_latent``, ``loss_reward``, ``loss_termination`` (summed by TorchRL-style
    trainers as every ``loss_*`` key) and ``total`` (their sum, detached, for logging).

    `model` is a `DynamicsModel` or a ``TensorDictModule`` wrapping one; the wrapper's in_keys
    (tokens, action[, game]) then name where the loss reads those inputs.
    """

    @dataclass
    class _AcceptedKeys:
        tokens: NestedKey = "tokens"
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        terminated: NestedKey = ("next", "terminated")
        life_loss: NestedKey = ("next", "life_loss")
        mask: NestedKey = "mask"
        game: NestedKey = "game"

    default_keys = _AcceptedKeys
    out_keys = ["loss_latent", "loss_reward", "loss_termination", "total"]

    def __init__(self, model: DynamicsModel | TensorDictModuleBase, *, termination: str = TERMINATION_TARGETS[0]):
        super().__init__()
        if termination not in TERMINATION_TARGETS:
            raise ScaleworldError(f"termination={termination!r}: use {' or '.join(TERMINATION_TARGETS)}")
        self.termination = termination
        keys = None
        if isinstance(model, TensorDictModuleBase):
            keys, model = list(model.in_keys), getattr(model, "module", None)
        if not isinstance(model, DynamicsModel):
            raise ScaleworldError(f"DynamicsLoss needs a DynamicsModel or a TensorDictModule wrapping one, "
                                  f"not {type(model).__name__}")
        self.model = model
        if keys is not None:
            expected = 3 if model.config.games else 2
            if len(keys) != expected:
                raise ScaleworldError(f"the TensorDictModule's in_keys {keys}: give {expected} keys, in the order "
                                      "tokens, action" + (", game" if model.config.games else ""))
            self.set_keys(**dict(zip(("tokens", "action", "game"), keys)))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        k = self.tensor_keys
        return ([k.tokens, k.action, k.reward, k.terminated, k.mask] + ([k.game] if self.model.config.games else [])
                + ([k.life_loss] if self.termination == "life_loss" else []))

    def termination_target(self, td: TensorDictBase) -> torch.Tensor:
        """bool [B, T]: what the termination head is trained (and scored) to predict."""
        target = _per_step(td[self.tensor_keys.terminated])
        return target | _per_step(td[self.tensor_keys.life_loss]) if self.termination == "life_loss" else target

    def model_inputs(self, td: TensorDictBase) -> tuple[torch.Tensor, ...]:
        """The model's positional inputs read from `td`: tokens [B, T, G], action [B, T] (, game [B, T])."""
        k = self.tensor_keys
        return (td[k.tokens], td[k.action]) + ((td[k.game],) if self.model.config.games else ())

    def terms(self, td: TensorDictBase, out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-position losses (unreduced) and their masks; shared by training and fidelity. `out`: the
        model's outputs on `model_inputs(td)` when the caller ran the model itself (packed training
        calls it with other weights); by default the loss runs its model."""
        k = self.tensor_keys
        cfg = self.model.config
        tokens = td[k.tokens].long()  # [B, T, G]
        mask = td.get(k.mask, None)  # [B, T]; TorchRL's samplers give none: every step counts
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device) if mask is None else mask
        out = self.model(*self.model_inputs(td)) if out is None else out
        # next latent: position t predicts tokens[t + 1]; valid where t + 1 is in the same window
        logits = out["latent_logits"][:, :-1]  # [B, T-1, G, C]
        latent_nll = F.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten(), reduction="none")
        latent_nll = latent_nll.view(logits.shape[:3]).sum(-1)  # nats per frame [B, T-1]
        reward = _per_step(td[k.reward]).float()
        reward_ce = -(two_hot(reward, cfg.reward_bins, cfg.reward_limit)
                      * out["reward_logits"].log_softmax(-1)).sum(-1)  # [B, T]
        term_bce = F.binary_cross_entropy_with_logits(
            out["termination_logits"], self.termination_target(td).float(), reduction="none")  # [B, T]
        return {"latent": latent_nll, "latent_mask": mask[:, 1:], "reward": reward_ce,
                "termination": term_bce, "step_mask": mask, "out": out}

    def forward(self, td: TensorDictBase) -> TensorDict:
        return self.reduce(td)

    def reduce(self, td: TensorDictBase, out: dict[str, torch.Tensor] | None = None) -> TensorDict:
        """The batch's mean loss terms (what `forward` returns), from the model's outputs `out` if given."""
        t = self.terms(td, out)

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
