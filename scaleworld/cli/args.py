"""What every command module of the CLI shares: the protocol option, quiet TorchRL, the no-progress
flag. Imports nothing heavy: `scaleworld --help` must stay fast."""

from __future__ import annotations

import argparse
import os
from typing import Any


def parse_protocol(pairs: list[str]) -> Any:
    """The `Protocol` of repeated ``--protocol KEY=VALUE`` options (defaults for the rest)."""
    from scaleworld.atari.protocol import protocol_from_pairs

    return protocol_from_pairs(pairs)


def quiet_torchrl() -> None:
    """TorchRL logs every storage initialisation at INFO; keep the CLI's output to its own. Call
    before torchrl's first import."""
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")


def add_no_progress(p: argparse.ArgumentParser, what: str = "no progress bar") -> None:
    p.add_argument("--no-progress", action="store_true", help=what)
