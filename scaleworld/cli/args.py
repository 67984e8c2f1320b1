"""What every command module of the CLI shares: the protocol option, quiet TorchRL, the no-progress
flag. Imports nothing heavy: `scaleworld --help` must stay fast."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from scaleworld.errors import MAX_COUNT, ScaleworldError

OUTPUT_KINDS = ("new_folder", "run_folder", "folder", "file")
"""What a command writes at an output path: a folder it creates (must not exist), a run folder it
resumes, a folder it writes files into, or a file it replaces."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as every other bad input's: ``error: <command>:
    <what is wrong>; see <command> --help``, exit 2 (argparse's usage block would bury the line)."""

    def error(self, message: str) -> Any:  # argparse's hook: must not return
        import sys

        print(f"error: {self.prog}: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def count(minimum: int) -> Any:
    """An option's type: a whole number of at least `minimum` (and at most MAX_COUNT)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not minimum <= value <= MAX_COUNT:
            raise argparse.ArgumentTypeError(f"{value} is impossible: give a whole number from {minimum} to "
                                             f"{MAX_COUNT:,}")
        return value
    return parse


def real(low: float, high: float = float("inf"), *, low_open: bool = False, high_open: bool = True) -> Any:
    """An option's type: a finite number in [low, high] (an end `*_open` excluded)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text} is impossible: give a finite number in {span}")
        return value
    return parse


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


def declare_outputs(p: argparse.ArgumentParser, **kinds: str) -> None:
    """Name the options of `p` that are output paths (dest -> one of OUTPUT_KINDS): `check_outputs`
    refuses them before the command runs."""
    assert set(kinds.values()) <= set(OUTPUT_KINDS), kinds
    p.set_defaults(outputs={**(p.get_default("outputs") or {}), **kinds})


def interrupted_line(args: argparse.Namespace) -> str:
    """What Ctrl-C left and how to go on, from the command's declared outputs (or its own
    ``on_interrupt`` default): one line for stderr."""
    if getattr(args, "on_interrupt", None):
        return f"interrupted: {args.on_interrupt(args)}"
    kept = []
    for dest, kind in (getattr(args, "outputs", None) or {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if kind == "run_folder":
            kept.append(f"{value} keeps its last checkpoint: the same command resumes from it")
        elif kind == "new_folder":
            kept.append(f"{value} was not written (nothing half-written is left as it): the same command starts "
                        "over")
        else:
            kept.append(f"{value} is as it was or complete (files are replaced whole)")
    return "interrupted: " + ("; ".join(kept) if kept else "nothing was written")


def refuse_finished_job(path: Path, option: str) -> None:
    """Refuse to write `path` inside a study's finished job folder (one holding job.json and
    done.json): its files are the study's results, which only that job writes."""
    for folder in (path, *path.parents):
        if (folder / "done.json").is_file() and (folder / "job.json").is_file():
            raise ScaleworldError(f"{option} {path} is inside the finished job {folder} of a study's run root, whose "
                                  "results only that job writes: write elsewhere")


def check_outputs(args: argparse.Namespace) -> None:
    """One `ScaleworldError` line for the first declared output that cannot be written, before
    anything is: a file where a folder belongs (or the reverse), a dataset folder that exists, a
    place inside a study's finished job (`refuse_finished_job`), or a place this process cannot
    create files in (tried with a temporary file the OS removes)."""
    for dest, kind in (getattr(args, "outputs", None) or {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        path = Path(value)
        option = "--" + dest.replace("_", "-")
        refuse_finished_job(path.absolute(), option)
        if kind == "new_folder" and path.exists():
            raise ScaleworldError(f"{path} already exists: choose another {option} or remove it")
        if kind == "file" and path.is_dir():
            raise ScaleworldError(f"{option} {path} is a folder: give a file name")
        if kind in ("run_folder", "folder") and path.exists() and not path.is_dir():
            raise ScaleworldError(f"{option} {path} is a file: give a folder")
        ancestor = path if kind != "file" and path.is_dir() else path.parent
        while not ancestor.exists() and kind != "file":
            ancestor = ancestor.parent
        if not ancestor.exists():
            raise ScaleworldError(f"{option} {path}: the folder {ancestor} does not exist: create it first")
        if not ancestor.is_dir():
            raise ScaleworldError(f"{option} {path}: {ancestor} is not a folder")
        try:
            with tempfile.TemporaryFile(dir=ancestor):
                pass
        except OSError as exc:
            raise ScaleworldError(f"{option} {path}: cannot write in {ancestor} ({exc.strerror or exc}): "
                                  f"choose another {option}") from None
