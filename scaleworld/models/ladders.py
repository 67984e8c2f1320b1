"""Named size ladders: the model sizes a study sweeps. Parameter counts are computed, never typed in."""

from __future__ import annotations

from dataclasses import dataclass

from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics_config import DynamicsConfig, parameter_counts


@dataclass(frozen=True, kw_only=True)
class Size:
    name: str
    width: int
    depth: int
    heads: int
    ffn_mult: int = 4

    def config(self, **overrides) -> DynamicsConfig:
        return DynamicsConfig(width=self.width, depth=self.depth, heads=self.heads, ffn_mult=self.ffn_mult,
                              **overrides)


def _depths(prefix: str, width: int, heads: int, depths: tuple[int, ...]) -> tuple[Size, ...]:
    return tuple(Size(name=f"{prefix}-d{d}", width=width, depth=d, heads=heads) for d in depths)


LADDERS: dict[str, tuple[Size, ...]] = {
    # The reference study: width 512, depth {2..96}, 8 heads, FFN 4x (about 6M-300M block parameters).
    "paper": _depths("paper", 512, 8, (2, 4, 8, 12, 24, 48, 96)),
    # CPU-sized ladders for smoke studies and tests.
    "tiny": _depths("tiny", 64, 4, (1, 2)),
    "small": _depths("small", 128, 4, (1, 2, 4, 8)),
}


def get_ladder(name: str) -> tuple[Size, ...]:
    if name not in LADDERS:
        raise ScaleworldError(f"unknown ladder {name!r}: valid ladders are {', '.join(LADDERS)}")
    return LADDERS[name]


def get_size(name: str) -> Size:
    """A size by its full name, e.g. ``paper-d12``."""
    for ladder in LADDERS.values():
        for size in ladder:
            if size.name == name:
                return size
    names = [s.name for ladder in LADDERS.values() for s in ladder]
    raise ScaleworldError(f"unknown model size {name!r}: valid sizes are {', '.join(names)}")


def ladder_table(name: str) -> list[dict]:
    """One row per size: name, depth, width, heads, block and total parameters (single-game model)."""
    rows = []
    for size in get_ladder(name):
        counts = parameter_counts(size.config())
        rows.append({"name": size.name, "depth": size.depth, "width": size.width, "heads": size.heads,
                     "block_params": counts["blocks"], "total_params": counts["total"]})
    return rows
