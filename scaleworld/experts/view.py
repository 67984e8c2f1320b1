"""The expert's view: what an expert network sees, computed from the protocol's observations.

Experts act on the protocol's observation (64x64 RGB uint8, the frames stored in datasets), but
their network sees a *view* of it: the last `stack` frames, optionally converted to grayscale,
channel-first. The view is a deterministic function of the sequence of observations since the
episode's first one, and `next_view` is its one implementation: the PPO training environment
(`scaleworld/experts/train_env.py`, through `FrameStack`) and the deployed expert policy
(`scaleworld/experts/expert_policy.py`, which keeps the view in the tensordict) both call it, so an
expert sees at deployment exactly what it saw while it learned (tests/test_experts_view.py checks this bit for bit).

At the first observation of an episode (``is_init``) the stack is filled with copies of that
frame (there is no earlier frame of the episode to show); afterwards each call shifts the
newest frame in. Observations between episodes (an emulator resetting or taking no-op starts)
are shifted in too, but are overwritten by the fill at the next ``is_init``, so they never
reach an action.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from scaleworld.errors import ScaleworldError

# ITU-R BT.601 luma weights in thousandths (they sum to 1000).
_LUMA_WEIGHTS = torch.tensor([299.0, 587.0, 114.0])


@dataclass(frozen=True, kw_only=True)
class ViewSpec:
    """How the protocol's RGB frames become an expert's network input."""

    frame_size: int = 64
    """Side of the protocol's square frames (the view does not resize: it must match the protocol)."""
    grayscale: bool = True
    """Convert each frame to 8-bit luma (BT.601, rounded half up) instead of keeping RGB."""
    stack: int = 4
    """Number of most recent frames in the view (the newest last)."""

    def __post_init__(self) -> None:
        if not (8 <= self.frame_size <= 256 and 1 <= self.stack <= 16):
            raise ScaleworldError(
                f"view frame_size={self.frame_size}, stack={self.stack} out of range: "
                "use 8 <= frame_size <= 256 and 1 <= stack <= 16"
            )

    @property
    def channels_per_frame(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """The view of one observation: (stack * channels_per_frame, frame_size, frame_size), uint8."""
        return (self.stack * self.channels_per_frame, self.frame_size, self.frame_size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "frame-stack", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViewSpec:
        values = dict(values)
        kind = values.pop("kind", None)
        known = {f.name for f in dataclasses.fields(cls)}
        if kind != "frame-stack" or set(values) != known:
            raise ScaleworldError(
                f"unknown view spec {dict(values, kind=kind)}: expected kind 'frame-stack' with keys {sorted(known)}"
            )
        return cls(**values)


def frame_channels(pixels: torch.Tensor, grayscale: bool) -> torch.Tensor:
    """uint8 [N, S, S, 3] RGB -> uint8 [N, C, S, S] (C = 1 luma channel, or the 3 RGB channels).

    Luma = floor((299 R + 587 G + 114 B + 500) / 1000): BT.601 rounded half up. The weighted sum is
    an integer below 2**24, so the float32 matmul that computes it is exact (checked for all 2**24
    colours when this was written) and twice as fast as int32 arithmetic here.
    """
    if not grayscale:
        return pixels.permute(0, 3, 1, 2).contiguous()
    luma = (pixels.to(torch.float32) @ _LUMA_WEIGHTS).to(torch.int32)  # [N, S, S], exact
    return ((luma + 500) // 1000).to(torch.uint8).unsqueeze(1)


def next_view(spec: ViewSpec, previous: torch.Tensor | None, pixels: torch.Tensor,
              is_init: torch.Tensor) -> torch.Tensor:
    """The view of an observation, the one definition: previous view uint8 [N, stack * C, S, S] (None:
    nothing seen yet, zeros), pixels uint8 [N, S, S, 3], is_init bool [N] or [N, 1] -> a new uint8
    [N, stack * C, S, S] (the oldest frame first): the newest frame shifted in, or on ``is_init``
    the stack filled with it."""
    if pixels.dtype != torch.uint8 or pixels.shape[1:] != (spec.frame_size, spec.frame_size, 3):
        raise ScaleworldError(
            f"the expert's view takes uint8 [N, {spec.frame_size}, {spec.frame_size}, 3] observations, "
            f"got {pixels.dtype} {list(pixels.shape)}: use the protocol's frame_size={spec.frame_size}"
        )
    n, c = pixels.shape[0], spec.channels_per_frame
    frames = frame_channels(pixels, spec.grayscale)  # [N, C, S, S]
    if previous is None:
        previous = torch.zeros((n, *spec.shape), dtype=torch.uint8)
    elif previous.dtype != torch.uint8 or tuple(previous.shape) != (n, *spec.shape):
        raise ScaleworldError(f"the expert's previous view is {previous.dtype} {list(previous.shape)}, not uint8 "
                              f"{[n, *spec.shape]}: give the one it wrote (or none at the first observation)")
    state = torch.cat([previous[:, c:], frames], dim=1)  # shift the newest frame in
    init = is_init.to(torch.bool).reshape(n)
    if init.any():
        state[init] = frames[init].repeat(1, spec.stack, 1, 1)
    return state


class FrameStack:
    """`next_view` with the previous view kept here: call it once per observation of a batch of N
    environments (PPO's training env). ``view = stack(pixels, is_init)``; a call with a different N
    than the last one starts from an empty (zero) stack."""

    def __init__(self, spec: ViewSpec):
        self.spec = spec
        self._state: torch.Tensor | None = None  # uint8 [N, stack * C, S, S]

    def reset(self) -> None:
        self._state = None

    def __call__(self, pixels: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        previous = self._state if self._state is not None and self._state.shape[0] == pixels.shape[0] else None
        self._state = next_view(self.spec, previous, pixels, is_init)  # never modified in place later
        return self._state
