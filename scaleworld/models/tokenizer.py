"""The categorical tokenizer: 64x64 RGB frame <-> 32 groups x 32 classes.

Trained first (reconstruction), then frozen: every dataset is encoded once to 32 tokens a frame,
so the dynamics model reads 32 bytes instead of 12 KB a frame and its held-out NLL is comparable
across model sizes and between single-game and joint runs that share the tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    groups: int = 32
    """Categorical latent variables per frame."""
    classes: int = 32
    """Classes per variable (tokens are uint8, so at most 256)."""
    channels: tuple[int, ...] = (32, 64, 128, 256)
    """Conv widths; each stage halves the resolution (64 -> 4 with four stages)."""
    frame_size: int = 64
    unimix: float = 0.01
    """Share of a uniform distribution mixed into each categorical (keeps gradients alive)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TokenizerConfig:
        return cls(**{**values, "channels": tuple(values["channels"])})


class Tokenizer(nn.Module):
    """Conv encoder -> categorical latents (straight-through) -> conv decoder.

    Pixels enter as uint8 [..., 64, 64, 3] and leave as float reconstructions in [0, 1].
    """

    def __init__(self, config: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        self.config = c = config
        down: list[nn.Module] = []
        cin = 3
        for cout in c.channels:
            down += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(1, cout), nn.SiLU()]
            cin = cout
        self.encoder = nn.Sequential(*down)
        self.bottom = c.frame_size // 2 ** len(c.channels)  # spatial size after the encoder
        flat = c.channels[-1] * self.bottom**2
        self.to_logits = nn.Linear(flat, c.groups * c.classes)
        self.from_latent = nn.Linear(c.groups * c.classes, flat)
        up: list[nn.Module] = []
        widths = list(reversed(c.channels))
        for cin, cout in zip(widths, widths[1:] + [widths[-1]]):
            up += [nn.GroupNorm(1, cin), nn.SiLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
        up += [nn.Conv2d(widths[-1], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*up)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 64, 64, 3] -> logits [B, groups, classes]."""
        x = pixels.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        h = self.encoder(x).flatten(1)
        return self.to_logits(h).view(-1, self.config.groups, self.config.classes)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        u = self.config.unimix
        return (1 - u) * logits.softmax(-1) + u / self.config.classes

    def straight_through(self, logits: torch.Tensor) -> torch.Tensor:
        """One-hot of each variable's most likely class [B, groups, classes], with the gradient of
        the (unimix) probabilities. The decoder is trained on exactly the tokens `encode` produces;
        with sampled one-hots instead, the encoder can hide information in small probability shifts
        that the deterministic encoding then loses (seen here: constant tokens after training)."""
        probs = self.probs(logits)
        onehot = F.one_hot(probs.argmax(-1), self.config.classes).to(probs.dtype)
        return onehot + probs - probs.detach()

    def decode_onehot(self, onehot: torch.Tensor) -> torch.Tensor:
        """[B, groups, classes] -> reconstruction float [B, 64, 64, 3] in [0, 1]."""
        h = self.from_latent(onehot.flatten(1)).view(-1, self.config.channels[-1], self.bottom, self.bottom)
        x = self.decoder(h)
        return (x + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Deterministic tokens uint8 [B, groups] (each variable's most likely class)."""
        return self.logits(pixels).argmax(-1).to(torch.uint8)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, groups] -> pixels uint8 [B, 64, 64, 3]."""
        onehot = F.one_hot(tokens.long(), self.config.classes).float()
        return (self.decode_onehot(onehot) * 255).round().to(torch.uint8)
