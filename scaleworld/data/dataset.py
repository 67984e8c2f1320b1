"""Offline datasets on disk, reopened without copies, read-only and verified (the layout of a dataset
folder and its rows: scaleworld.data.layout).

Format 1 (before TorchRL's conventions: flags and reward [N], no root flags or ``is_init``, the
budget's cut unmarked) is still read: `OfflineDataset.open` presents its rows in format 2 (views
of the same files, and the few flag columns that differ computed in memory; `upgrade_rows`).

Read-only, verified: `OfflineDataset.open` hands out a storage that refuses writes (a TorchRL
``ReplayBuffer`` on it needs ``ImmutableDatasetWriter``, as `OfflineDataset.replay_buffer` builds),
and it verifies the dataset first (checksums, then every manifest claim against the rows) unless a
stamp says this very set of files passed: the stamp records each file's size, inode, mtime and
ctime, and the kernel moves ctime on every write (no user call sets it back), so a stamp cannot
outlive a change of the files; a copied dataset is verified once more. Stamps live in this user's
cache (`stamp_path`), never in the dataset: reading or verifying a dataset changes none of its
files (on a cluster datasets are shared, read-only or another user's). Before a memory map is
opened, each file's size is checked against the shape and dtype its storage metadata gives: numpy
would extend a short file with zeros (`_check_memmaps`).

A token dataset (`scaleworld.models.encode`) has the same layout and rows with ``tokens`` uint8
[N, groups] (the frozen tokenizer's encoding of ``pixels``) in place of ``pixels``.
"""


from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scaleworld.atari.protocol import Protocol
from scaleworld.data.dataset_checks import check_rows
from scaleworld.data.files import sha256_file, write_json_atomic
from scaleworld.data.format1 import upgrade_rows
from scaleworld.data.layout import (
    CHECKS,
    MANIFEST,
    STORAGE,
    TOKEN_FORMAT,
    UPGRADES,
    DatasetError,
    read_manifest,
)


@functools.cache
def _read_only_storage_class():
    """`LazyMemmapStorage` whose writes raise: what every reader of a dataset gets. Built once, on
    first use (torchrl is a heavy import), and reachable as this module's ``ReadOnlyMemmapStorage``
    (the module `__getattr__`), so a storage pickles and unpickles as a plain one does."""
    from torchrl.data import LazyMemmapStorage

    class ReadOnlyMemmapStorage(LazyMemmapStorage):
        """A finished dataset's rows, memory-mapped; `set` (what a writer's ``extend`` calls) raises."""

        def set(self, *args: Any, **kwargs: Any) -> None:
            raise DatasetError(
                f"{Path(self.scratch_dir).parent}: a dataset is read-only: build the ReplayBuffer with "
                "writer=ImmutableDatasetWriter() (OfflineDataset.replay_buffer does), and write new data "
                "with `scaleworld data collect`"
            )

        def dumps(self, *args: Any, **kwargs: Any) -> None:
            self.set()

    ReadOnlyMemmapStorage.__module__, ReadOnlyMemmapStorage.__qualname__ = __name__, "ReadOnlyMemmapStorage"
    return ReadOnlyMemmapStorage


def __getattr__(name: str) -> Any:
    if name == "ReadOnlyMemmapStorage":
        return _read_only_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class OfflineDataset:
    """A finished dataset reopened from disk, memory-mapped (no copy, shareable across processes).

    ``storage`` is the TorchRL ``LazyMemmapStorage``; ``data`` its TensorDict of memmap tensors
    with batch size [N]; ``episode_starts`` / ``episode_lengths`` int64 [E] index its episodes.
    """

    path: Path
    manifest: dict[str, Any]
    storage: Any  # torchrl.data.LazyMemmapStorage

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> OfflineDataset:
        """Open a finished dataset read-only; with `verify` (the default) refuse it unless it passes
        `verify_dataset` or its stamp shows these very files passed before."""
        path = Path(path)
        return cls._open(path, ensure_verified(path) if verify else read_manifest(path))

    @classmethod
    def _open(cls, path: Path, manifest: dict[str, Any]) -> OfflineDataset:
        _check_sizes(path, manifest)  # mapping a short file would silently extend it with zeros
        _check_memmaps(path / STORAGE)  # so would a short file whose manifest entry was re-signed
        size = manifest["counts"]["steps"]
        if not isinstance(size, int) or size < 1:
            raise DatasetError(f"{path}: counts.steps={size!r} is not a positive row count: collect again")
        storage = _read_only_storage_class()(size, scratch_dir=path / STORAGE, existsok=True)
        try:
            storage.loads(path / STORAGE)
        except Exception as exc:  # torchrl raises many kinds on damaged files
            raise DatasetError(
                f"{path}: the storage cannot be opened ({type(exc).__name__}: {exc}); "
                "run `scaleworld data verify` for details"
            ) from exc
        if manifest["format"] in UPGRADES:
            storage._storage = upgrade_rows(storage._storage, manifest, where=path)
        return cls(path=path, manifest=manifest, storage=storage)

    @property
    def data(self):
        """TensorDict of MemoryMappedTensors, batch [N] (of a format 1 dataset, the flag columns
        `upgrade_rows` computes are in memory). Read it; writing into it changes the files (their
        ctime): the next `open` verifies them again and refuses them."""
        return self.storage._storage

    def replay_buffer(self, **kwargs: Any) -> Any:
        """A TorchRL ``TensorDictReplayBuffer`` over the rows (no copy) with TorchRL's
        ``ImmutableDatasetWriter``, as TorchRL's own datasets; `kwargs` go to the buffer (sampler,
        batch_size, ...)."""
        from torchrl.data import ImmutableDatasetWriter, TensorDictReplayBuffer

        return TensorDictReplayBuffer(storage=self.storage, writer=ImmutableDatasetWriter(), **kwargs)

    def window_buffer(self, *, slice_len: int, batch_size: int, generator: torch.Generator | None = None) -> Any:
        """A replay buffer sampling windows as `DynamicsLoss` reads them: TorchRL's ``SliceSampler``
        draws `batch_size` windows of `slice_len` steps inside one episode (the ``episode`` column),
        short episodes padded by TorchRL (``pad_output``) and masked (`SlicesAsWindows`); ``sample()``
        is a TensorDict [batch_size, slice_len] with ``mask``. Draws from `generator` when given (else
        torch's global RNG). TorchRL draws an episode, then a window in it, so a short episode's frames
        are drawn more often than a long one's: training samples with `EpisodeWindowSampler`
        (uniform over windows; tools/bench_data.py measures both)."""
        from torchrl.data import ImmutableDatasetWriter, ReplayBuffer
        from torchrl.data.replay_buffers.samplers import SliceSampler

        from scaleworld.data.sampling import SlicesAsWindows

        sampler = SliceSampler(slice_len=slice_len, traj_key="episode", strict_length=False, pad_output=True)
        # a plain ReplayBuffer: TensorDictReplayBuffer writes the [B * L] indices back after the reshape
        return ReplayBuffer(storage=self.storage, writer=ImmutableDatasetWriter(), sampler=sampler,
                            batch_size=batch_size * slice_len, transform=SlicesAsWindows(slice_len),
                            generator=generator)

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def game(self) -> str:
        return self.manifest["game"]["name"]

    @property
    def format(self) -> str:
        """The layout its rows are read in (a format 1 dataset reads as format 2)."""
        return UPGRADES.get(self.manifest["format"], self.manifest["format"])

    @property
    def is_tokens(self) -> bool:
        """A token dataset (``tokens`` rows, `scaleworld.models.encode`) rather than a pixel one."""
        return self.format == TOKEN_FORMAT

    @property
    def content_id(self) -> dict[str, str]:
        """What the dataset is, wherever it lies: its game and its manifest's SHA-256 (the manifest
        holds every file's SHA-256). Training runs record this, not the path, so a moved or
        copied run root resumes."""
        return {"game": self.game, "manifest_sha256": sha256_file(self.path / MANIFEST)}

    @property
    def protocol(self) -> Protocol:
        return Protocol.from_dict(self.manifest["protocol"])

    @property
    def episode_starts(self) -> torch.Tensor:
        return torch.tensor([e["start"] for e in self.manifest["episodes"]], dtype=torch.int64)

    @property
    def episode_lengths(self) -> torch.Tensor:
        return torch.tensor([e["length"] for e in self.manifest["episodes"]], dtype=torch.int64)


def _check_sizes(path: Path, manifest: dict[str, Any]) -> None:
    for rel, entry in manifest["files"].items():
        file = path / rel
        if not file.is_file():
            raise DatasetError(f"{file}: listed in the manifest but missing: collect the dataset again")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(
                f"{file}: {size} bytes, the manifest says {entry['bytes']} (truncated or "
                "overwritten): collect the dataset again"
            )


def _check_memmaps(storage: Path) -> None:
    """Every ``<key>.memmap`` is exactly as long as its folder's meta.json (TensorDict's) says: shape x
    dtype size; else `DatasetError` (a file a memory map would pad with zeros, or one with extra bytes)."""
    for meta_file in sorted(storage.rglob("meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
            fields = {k: v for k, v in meta.items() if isinstance(v, dict) and "shape" in v and "dtype" in v}
            for key, entry in fields.items():
                dtype = getattr(torch, str(entry["dtype"]).removeprefix("torch."))
                if not isinstance(dtype, torch.dtype):
                    raise TypeError(f"{entry['dtype']!r} is not a dtype")
                want = dtype.itemsize * int(torch.Size(entry["shape"]).numel())
                file = meta_file.parent / f"{key}.memmap"
                if file.is_file() and file.stat().st_size != want:
                    raise DatasetError(f"{file}: {file.stat().st_size} bytes where its shape {entry['shape']} of "
                                       f"{entry['dtype']} needs {want} (cut short or padded, its manifest entry "
                                       "re-signed): collect the dataset again")
        except (ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
            raise DatasetError(f"{meta_file}: malformed ({type(exc).__name__}: {exc}): collect the dataset "
                               "again") from None


def stamp_path(path: str | Path) -> Path:
    """Where the verification stamp of the dataset at `path` lives: this user's cache
    ($XDG_CACHE_HOME, else ~/.cache)/scaleworld/verified/<sha256 of the folder's absolute path>.json.
    Outside the dataset, so that reading one changes none of its files; a stamp that does not match
    the files (another dataset at the same path) is ignored and the dataset verified again."""
    import hashlib

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:32]
    return cache / "scaleworld" / "verified" / f"{key}.json"


def verify_dataset(path: str | Path) -> dict[str, Any]:
    """Re-check checksums, then every manifest claim against the rows; raise `DatasetError` with a
    one-line reason on failure. A dataset that passes gets its stamp (see `ensure_verified`).

    Returns the manifest of a dataset that passed.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        listed = manifest["files"]
        on_disk = {
            str(p.relative_to(path)) for p in (path / STORAGE).rglob("*") if p.is_file()
        } if (path / STORAGE).is_dir() else set()
        _check_sizes(path, manifest)
        for rel, entry in listed.items():
            file = path / rel
            if sha256_file(file) != entry["sha256"]:
                raise DatasetError(f"{file}: checksum mismatch (corrupted): collect the dataset again")
        extra = sorted(on_disk - set(listed))
        if extra:
            raise DatasetError(f"{path / extra[0]}: not in the manifest (a foreign file?): remove it")
        dataset = OfflineDataset._open(path, manifest)
        check_rows(dataset)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DatasetError(f"{path / MANIFEST}: malformed ({type(exc).__name__}: {exc}): collect the dataset "
                           "again") from None
    _write_stamp(path, manifest)
    return manifest


def _fingerprint(path: Path, manifest: dict[str, Any]) -> dict[str, list[int]]:
    """Each file's [size, inode, mtime_ns, ctime_ns], the manifest's included."""
    out = {}
    for rel in [MANIFEST, *sorted(manifest["files"])]:
        st = os.stat(path / rel)
        out[rel] = [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    return out


def _write_stamp(path: Path, manifest: dict[str, Any]) -> None:
    try:
        stamp = stamp_path(path)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(stamp, {"dataset": str(path.resolve()), "checks": CHECKS,
                                  "files": _fingerprint(path, manifest)})
    except (OSError, RuntimeError):  # no writable cache (or no home at all): verified again by every reader
        pass


def ensure_verified(path: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at `path`, or `DatasetError` unless it passes `verify_dataset`,
    which runs only when no valid stamp shows that these very files passed (the module docstring
    says why a stamp cannot outlive a change)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        stamp = json.loads(stamp_path(path).read_text())
        if stamp == {"dataset": str(path.resolve()), "checks": CHECKS, "files": _fingerprint(path, manifest)}:
            return manifest
    except (OSError, ValueError, RuntimeError):  # RuntimeError: no home folder to hold a cache
        pass
    return verify_dataset(path)
