"""The categorical tokenizer: 64x64 RGB frame <-> 32 groups x 32 classes.

Trained first (reconstruction), then frozen: every dataset is encoded once to 32 tokens a frame,
so the dynamics model reads 32 bytes instead of 12 KB a frame and its held-out NLL is comparable
across model sizes and between single-game and joint runs that share the tokenizer.

Version 2 (issue 11; measured in tools/bench_tokenizer.py): during training each variable's class
is *sampled* from its (1%-unimix) distribution, straight-through, as in STORM and DreamerV3; the
stored token is the mode. Sampling spreads frames over the classes from the first step (so every
decoder column trains) and makes the encoder sharpen each distribution until mode and sample
agree; the quality record checks that agreement on held-out frames. The conv stacks normalise
with BatchNorm (each channel over the batch and positions, running averages at encode time)
rather than per frame: measured, this was the largest single gain (ARCHITECTURE.md). Version 1
used the argmax code and per-frame GroupNorm(1, C); its codes clustered frames instead of
describing them.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from scaleworld.models.tokenizer_config import TOKENIZER_VERSION, TokenizerConfig

__all__ = ["TOKENIZER_VERSION", "Tokenizer", "TokenizerConfig"]


class Tokenizer(nn.Module):
    """Conv encoder -> categorical latents (sampled straight-through in training) -> conv decoder.

    Pixels enter as uint8 [B, 64, 64, 3]; `decode` returns uint8 frames, `decode_onehot` the
    unclamped float reconstruction the loss reads.
    """

    def __init__(self, config: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        self.config = c = config
        down: list[nn.Module] = []
        cin = 3
        for cout in c.channels:
            down += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.SiLU()]
            cin = cout
        self.encoder = nn.Sequential(*down)
        self.bottom = c.frame_size // 2 ** len(c.channels)  # spatial size after the encoder
        flat = c.channels[-1] * self.bottom**2
        self.to_logits = nn.Linear(flat, c.groups * c.classes)
        self.from_latent = nn.Linear(c.groups * c.classes, flat)
        up: list[nn.Module] = []
        widths = list(reversed(c.channels))
        for cin, cout in zip(widths, widths[1:] + [widths[-1]]):
            up += [nn.BatchNorm2d(cin), nn.SiLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
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

    def sample_onehot(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A one-hot class per variable drawn from the unimix probabilities [B, groups, classes], with
        their gradient (straight-through): what the decoder is trained on."""
        probs = self.probs(logits)
        # Diverged weights (NaN logits) must reach the loss, where the trainer's guard names the step,
        # not crash the draw: non-finite probabilities are drawn as uniform, and stay NaN in `probs`.
        finite = torch.where(torch.isfinite(probs), probs, 1.0).detach()
        index = torch.multinomial(finite.flatten(0, 1), 1, generator=generator).view(probs.shape[:-1])
        onehot = F.one_hot(index, self.config.classes).to(probs.dtype)
        return onehot + probs - probs.detach()

    def decode_onehot(self, onehot: torch.Tensor) -> torch.Tensor:
        """[B, groups, classes] -> reconstruction float [B, 64, 64, 3], about [0, 1] but not clamped
        (the training loss needs the gradient of every pixel)."""
        h = self.from_latent(onehot.flatten(1)).view(-1, self.config.channels[-1], self.bottom, self.bottom)
        return (self.decoder(h) + 0.5).permute(0, 2, 3, 1)

    @contextlib.contextmanager
    def _frozen(self):
        """Encode and decode always use the running BatchNorm statistics, never the batch's own."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Deterministic tokens uint8 [B, groups] (each variable's most likely class)."""
        with self._frozen():
            return self.logits(pixels).argmax(-1).to(torch.uint8)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, groups] -> pixels uint8 [B, 64, 64, 3]."""
        with self._frozen():
            onehot = F.one_hot(tokens.long(), self.config.classes).float()
            return (self.decode_onehot(onehot).clamp(0, 1) * 255).round().to(torch.uint8)
