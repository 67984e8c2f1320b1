"""The Atari 100k protocol: every environment default stated once, and the one frame preprocessing.

ALE's entry points disagree on defaults (``ALE/*-v5`` has sticky actions 0.25;
``ale_py.AtariVectorEnv`` clips rewards, stacks 4 grayscale frames, does up to 30 no-ops and presses
FIRE on reset). scaleworld never relies on them: every environment it builds sets each option from
`Protocol`, and the protocol is written into every manifest so data can be traced to its settings.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaleworld.errors import ScaleworldError

RAW_HEIGHT, RAW_WIDTH = 210, 160  # ALE's native RGB frame


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """How a game is turned into an environment. Defaults follow IRIS / DIAMOND / DreamerV3."""

    frame_size: int = 64
    """Observations are RGB frames of frame_size x frame_size pixels (uint8)."""
    frame_skip: int = 4
    """Each agent action is repeated for this many emulator frames (action repeat)."""
    max_pool: bool = True
    """Observation = pixel-wise max of the last two emulator frames of an action repeat."""
    sticky_action_prob: float = 0.0
    """Probability that the emulator repeats the previous action on each frame (ALE v5 uses 0.25)."""
    max_episode_frames: int = 108_000
    """Episodes are truncated after this many emulator frames (30 minutes of play)."""
    noop_max: int = 30
    """At each reset a number of NOOP agent steps drawn uniformly from [0, noop_max] is taken
    (and not recorded). 0 disables no-op starts."""
    full_action_space: bool = True
    """Actions are ids in ALE's full 18-action space; each game's legal set is kept as a mask."""

    def __post_init__(self) -> None:
        checks = {
            "frame_size": 8 <= self.frame_size <= RAW_WIDTH,
            "frame_skip": self.frame_skip >= 1,
            "sticky_action_prob": 0.0 <= self.sticky_action_prob < 1.0,
            "max_episode_frames": self.max_episode_frames >= self.frame_skip,
            "noop_max": self.noop_max >= 0,
            "full_action_space": self.full_action_space,
        }
        for name, ok in checks.items():
            if not ok:
                raise ScaleworldError(
                    f"protocol.{name}={getattr(self, name)!r} is out of range: "
                    "see scaleworld/atari/protocol.py for the valid values"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Protocol:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ScaleworldError(
                f"unknown protocol key(s) {unknown}: valid keys are {sorted(known)}"
            )
        return cls(**values)


def protocol_from_pairs(pairs: list[str]) -> Protocol:
    """A Protocol from CLI ``KEY=VALUE`` pairs (``--protocol``), each coerced to its field's type."""
    types = {f.name: type(f.default) for f in dataclasses.fields(Protocol)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in types:
            raise ScaleworldError(f"--protocol {pair!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        kind = types[key]
        try:
            values[key] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        except ValueError:
            raise ScaleworldError(f"--protocol {pair!r}: {raw!r} is not a {kind.__name__}") from None
    return Protocol(**values)


@functools.lru_cache(maxsize=8)
def _area_weights(size_in: int, size_out: int) -> Any:
    """Integer area-resampling weights [size_out, size_in] (float32 holding integers).

    Output pixel i covers input interval [i*size_in, (i+1)*size_in) in units of 1/size_out of an
    input pixel; input pixel h covers [h*size_out, (h+1)*size_out). The weight is the overlap, an
    integer, and each row sums to size_in.
    """
    import torch  # here: the spec reads Protocol, and must not wait for torch

    out = torch.arange(size_out)[:, None]
    inp = torch.arange(size_in)[None, :]
    lo = torch.maximum(out * size_in, inp * size_out)
    hi = torch.minimum((out + 1) * size_in, (inp + 1) * size_out)
    return (hi - lo).clamp(min=0).float()


def preprocess_frames(raw: np.ndarray, frame_size: int) -> np.ndarray:
    """Area-resample raw ALE frames [..., 210, 160, 3] uint8 to [..., S, S, 3] uint8.

    The weighted sums use integer weights, so every intermediate value is an integer below 2**24
    and float32 arithmetic is exact whatever the batch size or summation order: a frame resized
    alone or inside a batch of thousands gives the same bytes. That is what lets the gymnasium,
    TorchRL and vectorised environments agree bit for bit.
    """
    import torch

    wh = _area_weights(RAW_HEIGHT, frame_size)  # [S, 210]
    ww = _area_weights(RAW_WIDTH, frame_size)  # [S, 160]
    lead = raw.shape[:-3]
    x = torch.from_numpy(np.ascontiguousarray(raw)).reshape(-1, RAW_HEIGHT, RAW_WIDTH * 3)
    rows = torch.matmul(wh, x.float())  # [N, S, 160*3]
    rows = rows.reshape(-1, frame_size, RAW_WIDTH, 3)
    sums = torch.einsum("nswc,tw->nstc", rows, ww)  # [N, S, S, 3]
    denom = RAW_HEIGHT * RAW_WIDTH  # total weight of one output pixel
    # round half up, floor(sum / denom + 1/2), in exact integer arithmetic
    out = (2 * sums.to(torch.int64) + denom) // (2 * denom)
    return out.to(torch.uint8).numpy().reshape(*lead, frame_size, frame_size, 3)
