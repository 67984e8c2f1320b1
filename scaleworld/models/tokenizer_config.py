"""`TokenizerConfig` and the tokenizer quality gate's default (a light module: the study spec and
the CLI read these defaults without importing torch)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from scaleworld.errors import ScaleworldError

TOKENIZER_VERSION = 2
"""The tokenizer's architecture and objective (scaleworld.models.tokenizer); another version is refused."""


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    groups: int = 32
    """Categorical latent variables per frame."""
    classes: int = 32
    """Classes per variable (tokens are uint8, so at most 256)."""
    channels: tuple[int, ...] = (16, 32, 64, 64)
    """Conv widths; each stage halves the resolution (64 -> 4 with four stages). Measured with
    tools/bench_tokenizer.py, (32, 64, 128, 256) was worse at every budget tried, at 4.4x the cost:
    per-game Pong after 600 steps of 32 frames 0.47 against 0.41; shared by Pong, Breakout, Freeway
    and Boxing after 32,000 frames a game 0.39-0.89 (Pong collapsed to one code) against 0.26-0.70."""
    frame_size: int = 64
    unimix: float = 0.01
    """Share of a uniform distribution mixed into each categorical (keeps every class reachable)."""
    version: int = TOKENIZER_VERSION

    def __post_init__(self) -> None:
        if self.version != TOKENIZER_VERSION:
            raise ScaleworldError(
                f"a version {self.version} tokenizer (this scaleworld trains version {TOKENIZER_VERSION}: sampled "
                "codes, BatchNorm; version 1's argmax codes could collapse unnoticed): train the tokenizer again")
        if not self.channels or self.frame_size % 2 ** len(self.channels):
            raise ScaleworldError(f"tokenizer channels {list(self.channels)}: give 1 to "
                                  f"{self.frame_size.bit_length() - 1} widths (each halves the {self.frame_size}px "
                                  "frame)")
        if any(width < 1 for width in self.channels):
            raise ScaleworldError(f"tokenizer channels {list(self.channels)}: every width must be at least 1")
        if not 2 <= self.classes <= 256:
            raise ScaleworldError(f"tokenizer classes={self.classes}: tokens are bytes, use 2..256")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TokenizerConfig:
        # A config saved before versions were recorded is version 1.
        return cls(**{"version": 1, **values, "channels": tuple(values["channels"])})


MAX_RESIDUAL_FRACTION = 0.5
"""The default gate on a tokenizer's residual fraction for a game (scaleworld.models.tokenizer_quality).
With the version 2 objective a per-game tokenizer reaches 0.17-0.41 on Pong, Breakout, Freeway and
Boxing after 1,000 CPU steps of batch 32, the version 1 objective 0.63-0.87 (collapsed codes):
tools/bench_tokenizer.py. At 0.5 half of what differs between a game's frames is lost."""

FRAMES_PER_GAME = 200_000
"""The default tokenizer budget: frames of every game it learns (steps = this x games / batch size).
Measured with tools/bench_tokenizer.py (default widths, random-policy data): per-game tokenizers leave
0.17-0.41 of the frames' variance unexplained after 32,000 frames; one tokenizer shared by Pong,
Breakout, Freeway and Boxing leaves 0.26-0.70 at the same 32,000 frames a game and 0.13-0.36 at
96,000, better than the per-game ones. 200,000 is twice that, for richer (expert) data."""


def default_steps(*, games: int, batch_size: int) -> int:
    """Tokenizer steps that show it `FRAMES_PER_GAME` frames of each of `games` games."""
    return max(1, math.ceil(FRAMES_PER_GAME * games / batch_size))


def tokenizer_parameters(config: TokenizerConfig) -> int:
    """Parameters of `Tokenizer(config)` by formula (a test checks it against the module's count):
    per stage a 4x4 stride-2 conv and a BatchNorm down, the linear maps to and from the latent at
    the bottom, per stage a BatchNorm and a 4x4 transposed conv up, and a 3x3 conv to RGB."""
    widths = list(config.channels)
    down = sum(16 * cin * cout + cout + 2 * cout for cin, cout in zip([3] + widths, widths))
    flat = widths[-1] * (config.frame_size // 2 ** len(widths)) ** 2
    codes = config.groups * config.classes
    latent = (flat * codes + codes) + (codes * flat + flat)
    rev = widths[::-1]
    up = sum(2 * cin + 16 * cin * cout + cout for cin, cout in zip(rev, rev[1:] + [rev[-1]]))
    return down + latent + up + 9 * rev[-1] * 3 + 3


def tokenizer_macs(config: TokenizerConfig) -> dict[str, int]:
    """Multiply-accumulates per frame of `Tokenizer(config)` by formula, {"encode", "decode"}: a 4x4
    stride-2 conv costs 16 x cin x cout per output pixel (frame / 2^(i+1) on a side after stage i), a
    4x4 stride-2 transposed conv 16 x cin x cout per input pixel, the 3x3 conv to RGB 9 x width x 3 per
    pixel, each linear map its weights. BatchNorm and activations are left out (a few per pixel)."""
    widths, size = list(config.channels), config.frame_size
    encode = sum(16 * cin * cout * (size // 2 ** (i + 1)) ** 2
                 for i, (cin, cout) in enumerate(zip([3] + widths, widths)))
    flat = widths[-1] * (size // 2 ** len(widths)) ** 2
    codes = config.groups * config.classes
    rev = widths[::-1]
    up = sum(16 * cin * cout * (size // 2 ** (len(rev) - i)) ** 2
             for i, (cin, cout) in enumerate(zip(rev, rev[1:] + [rev[-1]])))
    return {"encode": encode + flat * codes, "decode": codes * flat + up + 9 * rev[-1] * 3 * size**2}
