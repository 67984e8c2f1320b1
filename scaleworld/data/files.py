"""Small file-system helpers shared by every writer: atomic writes and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from scaleworld.errors import ScaleworldError

_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "sha256"}} for every file below `root`, sorted by path."""
    return {
        str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write `path` through a temporary file beside it, flushed to disk (fsync) and renamed over
    `path` only when the block finishes: readers, and a machine that loses power, see the old file
    or the whole new one, never a part. The one atomic writer every other writer goes through."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any, *, compact: bool = False) -> None:
    """Write JSON atomically (`atomic_file`): indented with sorted keys, or `compact` (one line, keys
    in their order: a study's 27 MB plan takes a fifth of the time)."""
    with atomic_file(path) as f:
        if compact:
            json.dump(payload, f, separators=(",", ":"))
        else:
            json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clear_leftovers(final: Path) -> None:
    """Name, on stderr, each ``.NAME.partial-HOST-PID`` folder a killed writer of `final` left
    (SIGKILL, a node lost), and remove those whose process is gone from this host: their work is
    lost, the new run starts over. A folder of a live process, or of another host (a writer on
    another node of a shared file system, or one lost with that node), is left and named."""
    import glob

    host, prefix = socket.gethostname(), f".{final.name}.partial-"
    for left in sorted(final.parent.glob(f"{glob.escape(prefix)}*")):
        who, _, pid = left.name.removeprefix(prefix).rpartition("-")  # HOST-PID
        who = who or host  # PID alone: written before hosts were named, by a run on this machine
        if who == host and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
            print(f"removed {left}: left unfinished by a killed run (pid {pid}); starting over", file=sys.stderr)
        elif who == host and pid == str(os.getpid()):
            continue  # this process's own: staging_dir starts it afresh
        elif who == host and pid.isdigit():
            print(f"note: {left}: pid {pid} on this host is writing {final.name} too", file=sys.stderr)
        else:
            print(f"note: {left}: an unfinished {final.name} of another host's run (or of one lost with that "
                  "host); remove it when no run writes there", file=sys.stderr)


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside `final`, renamed to `final` only if the block finishes.

    An exception removes it; a killed process leaves a ``.NAME.partial-HOST-PID`` folder that no
    reader mistakes for a finished one (it has a different name and no manifest at `final`), and
    the next writer of `final` names it and removes it (`clear_leftovers`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(final)
    tmp = final.parent / f".{final.name}.partial-{socket.gethostname()}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, final)


def load_tensors(path: str | Path, *, fix: str, map_location: Any = None) -> Any:
    """``torch.load`` restricted to tensors and plain values (``weights_only``): the one way scaleworld
    reads its model files, checkpoints and sampler states. A file that holds anything else (a pickle
    whose loading would run code, e.g. a crafted model file) is refused before any of it runs, with one
    line naming it and `fix`; so is a file that cannot be read at all."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError:
        raise ScaleworldError(f"{path}: holds objects other than tensors and plain values (reading it could run "
                              f"code; scaleworld never writes such files): refused; {fix}") from None
    except Exception as exc:  # a truncated or foreign file: torch raises many types
        raise ScaleworldError(f"{path}: cannot be read ({type(exc).__name__}); {fix}") from None
