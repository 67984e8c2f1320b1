"""Offline datasets on disk: layout, manifest, reopening without copies, and verification.

A dataset folder holds

    manifest.json   protocol, game, policy identity, counts, episodes, version, file checksums
    storage/        a TorchRL ``LazyMemmapStorage`` dump (memmap files + storage_metadata.json)

One row per agent step t (TorchRL key conventions):

    pixels               uint8 [N, S, S, 3]  observation the action was taken from
    action               int64 [N]           id in the full 18-action space
    episode              int64 [N]           episode id; each episode's rows are contiguous
    step                 int64 [N]           agent step within the episode (0-based)
    ("next", "reward")      float32 [N]      raw (unclipped) reward of the step
    ("next", "terminated")  bool [N]         game over after the step
    ("next", "truncated")   bool [N]         frame cap reached after the step
    ("next", "done")        bool [N]         terminated | truncated
    ("next", "life_loss")   bool [N]         a life was lost without the game ending

The observation after the last step of an episode is not stored. Episodes still running when the
step budget ran out are kept and marked ``complete: false`` in the manifest.

A token dataset (`scaleworld.models.encode`) has the same layout and rows with ``tokens`` uint8
[N, groups] (the frozen tokenizer's encoding of ``pixels``) in place of ``pixels``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scaleworld.atari.games import NUM_ACTIONS, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.files import sha256_file
from scaleworld.errors import ScaleworldError

FORMAT = "scaleworld.offline-dataset/1"
TOKEN_FORMAT = "scaleworld.token-dataset/1"
MANIFEST = "manifest.json"
STORAGE = "storage"
STEP_FIELDS: dict[Any, torch.dtype] = {
    "action": torch.int64,
    "episode": torch.int64,
    "step": torch.int64,
    ("next", "reward"): torch.float32,
    ("next", "terminated"): torch.bool,
    ("next", "truncated"): torch.bool,
    ("next", "done"): torch.bool,
    ("next", "life_loss"): torch.bool,
}
FIELDS = {"pixels": torch.uint8, **STEP_FIELDS}
TOKEN_FIELDS = {"tokens": torch.uint8, **STEP_FIELDS}
FORMAT_FIELDS = {FORMAT: FIELDS, TOKEN_FORMAT: TOKEN_FIELDS}


class DatasetError(ScaleworldError):
    """A dataset on disk is missing, unfinished, truncated, corrupted or inconsistent."""


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder (create it with `scaleworld data collect`)")
    if not manifest_path.is_file():
        raise DatasetError(
            f"{path}: no {MANIFEST}, so this is not a finished dataset "
            "(an interrupted collection?): collect it again"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{manifest_path}: not valid JSON ({exc}): collect the dataset again") from exc
    if manifest.get("format") not in FORMAT_FIELDS:
        raise DatasetError(
            f"{manifest_path}: format {manifest.get('format')!r} is not one of {sorted(FORMAT_FIELDS)}: "
            "make the dataset again with this version of scaleworld"
        )
    return manifest


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
    def open(cls, path: str | Path) -> OfflineDataset:
        from torchrl.data import LazyMemmapStorage

        path = Path(path)
        manifest = read_manifest(path)
        _check_sizes(path, manifest)  # mapping a short file would silently extend it with zeros
        size = manifest["counts"]["steps"]
        storage = LazyMemmapStorage(size, scratch_dir=path / STORAGE, existsok=True)
        try:
            storage.loads(path / STORAGE)
        except Exception as exc:  # torchrl raises many kinds on damaged files
            raise DatasetError(
                f"{path}: the storage cannot be opened ({type(exc).__name__}: {exc}); "
                "run `scaleworld data verify` for details"
            ) from exc
        return cls(path=path, manifest=manifest, storage=storage)

    @property
    def data(self):
        return self.storage._storage  # TensorDict of MemoryMappedTensors, batch [N]

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def game(self) -> str:
        return self.manifest["game"]["name"]

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


def verify_dataset(path: str | Path) -> dict[str, Any]:
    """Re-check checksums and invariants; raise `DatasetError` with a one-line reason on failure.

    Returns the manifest of a dataset that passed.
    """
    path = Path(path)
    manifest = read_manifest(path)
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
    dataset = OfflineDataset.open(path)
    _check_invariants(dataset)
    return manifest


def _check_invariants(ds: OfflineDataset) -> None:
    where = ds.path
    m = ds.manifest
    data = ds.data
    steps = m["counts"]["steps"]
    if len(ds) != steps:
        raise DatasetError(f"{where}: {len(ds)} rows, the manifest says {steps}: collect again")
    size = m["protocol"]["frame_size"]
    for key, dtype in FORMAT_FIELDS[m["format"]].items():
        if key not in data.keys(include_nested=True):
            raise DatasetError(f"{where}: field {key!r} is missing: collect the dataset again")
        if data[key].dtype != dtype:
            raise DatasetError(f"{where}: field {key!r} is {data[key].dtype}, expected {dtype}")
    if m["format"] == TOKEN_FORMAT:
        groups, classes = m["tokenizer"]["config"]["groups"], m["tokenizer"]["config"]["classes"]
        tokens = torch.as_tensor(data["tokens"])
        if tuple(tokens.shape[1:]) != (groups,) or (tokens.numel() and int(tokens.max()) >= classes):
            raise DatasetError(f"{where}: tokens do not fit the tokenizer ({groups} x {classes}): encode again")
    elif tuple(data["pixels"].shape[1:]) != (size, size, 3):
        raise DatasetError(
            f"{where}: pixels are {tuple(data['pixels'].shape[1:])}, the protocol says "
            f"({size}, {size}, 3): collect the dataset again"
        )
    action = data["action"].as_tensor() if hasattr(data["action"], "as_tensor") else data["action"]
    if action.numel() and (action.min() < 0 or action.max() >= NUM_ACTIONS):
        raise DatasetError(f"{where}: action ids outside [0, {NUM_ACTIONS}): collect again")
    if m["policy"].get("kind") == "random":
        legal = torch.tensor(get_game(m["game"]["name"]).action_mask())
        if not bool(legal[action].all()):
            raise DatasetError(f"{where}: a random-policy row holds an illegal action: collect again")
    episode = torch.as_tensor(data["episode"])
    step = torch.as_tensor(data["step"])
    done = torch.as_tensor(data["next", "done"])
    reward = torch.as_tensor(data["next", "reward"])
    if not bool(torch.isfinite(reward).all()):
        raise DatasetError(f"{where}: a reward is NaN or infinite: collect the dataset again")
    if not bool((done == (data["next", "terminated"] | data["next", "truncated"])).all()):
        raise DatasetError(f"{where}: done != terminated | truncated: collect the dataset again")
    for e, entry in enumerate(m["episodes"]):
        start, length = entry["start"], entry["length"]
        rows = slice(start, start + length)
        if length < 1 or not bool((episode[rows] == e).all()):
            raise DatasetError(f"{where}: episode {e} rows are not contiguous: collect again")
        if not bool((step[rows] == torch.arange(length)).all()):
            raise DatasetError(f"{where}: episode {e} step counter is broken: collect again")
        ends = done[rows].nonzero().flatten().tolist()
        expected_ends = [length - 1] if entry["complete"] else []
        if ends != expected_ends:
            raise DatasetError(f"{where}: episode {e} has done flags at {ends}: collect again")
        got = float(reward[rows].double().sum())
        if abs(got - entry["return"]) > 1e-3 * max(1.0, abs(got)):
            raise DatasetError(
                f"{where}: episode {e} return {got} != manifest {entry['return']}: collect again"
            )
    covered = sum(e["length"] for e in m["episodes"])
    if covered != steps:
        raise DatasetError(f"{where}: episodes cover {covered} rows of {steps}: collect again")
