"""Offline datasets on disk: layout, manifest, reopening without copies, and verification.

A dataset folder holds

    manifest.json   protocol, game, policy identity, counts, episodes, version, file checksums
    storage/        a TorchRL ``LazyMemmapStorage`` dump (memmap files + storage_metadata.json)

One row per agent step t, in TorchRL's key and shape conventions (what an env's rollout holds):

    pixels                  uint8 [N, S, S, 3]  observation the action was taken from
    action                  int64 [N]           id in the full 18-action space
    episode                 int64 [N]           episode id (SliceSampler's default traj_key); each
                                                episode's rows are contiguous
    step                    int64 [N]           agent step within the episode (0-based)
    is_init                 bool [N, 1]         the episode's first observation (TorchRL's InitTracker)
    done, terminated, truncated  bool [N, 1]    of the observation acted from: always False
    ("next", "reward")      float32 [N, 1]      raw (unclipped) reward of the step
    ("next", "terminated")  bool [N, 1]         game over after the step
    ("next", "truncated")   bool [N, 1]         the episode was cut after the step: the frame cap, or
                                                the step budget ran out (manifest ``complete: false``)
    ("next", "done")        bool [N, 1]         terminated | truncated: True on every episode's last
                                                row, so ``SliceSampler(end_key=("next", "done"))`` and
                                                ``traj_key="episode"`` agree
    ("next", "life_loss")   bool [N, 1]         a life was lost without the game ending

The observation after the last step of an episode is not stored. Episodes still running when the
step budget ran out are kept, truncated, and marked ``complete: false`` in the manifest.

Format 1 (before TorchRL's conventions: flags and reward [N], no root flags or ``is_init``, the
budget's cut unmarked) is still read: `OfflineDataset.open` presents its rows in format 2 (views
of the same files, and the few flag columns that differ computed in memory; `upgrade_rows`).

Read-only, verified: `OfflineDataset.open` hands out a storage that refuses writes (a TorchRL
``ReplayBuffer`` on it needs ``ImmutableDatasetWriter``, as `OfflineDataset.replay_buffer` builds),
and it verifies the dataset first (checksums, then every manifest claim against the rows) unless a
stamp says this very set of files passed: ``.verified.json`` records each file's size, inode,
mtime and ctime, and the kernel moves ctime on every write (no user call sets it back), so a stamp
cannot outlive a change of the files; a copied dataset is verified once more.

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

from scaleworld.atari.games import NUM_ACTIONS, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.files import sha256_file, write_json_atomic
from scaleworld.errors import ScaleworldError

FORMAT = "scaleworld.offline-dataset/2"
TOKEN_FORMAT = "scaleworld.token-dataset/2"
UPGRADES = {"scaleworld.offline-dataset/1": FORMAT, "scaleworld.token-dataset/1": TOKEN_FORMAT}
"""Older formats `OfflineDataset.open` still reads (in the newer layout: `upgrade_rows`)."""
MANIFEST = "manifest.json"
STORAGE = "storage"
STAMP = ".verified.json"
CHECKS = "scaleworld.dataset-checks/3"
"""The version of what `verify_dataset` checks: a stamp of an older version is not trusted."""
FLAG = (1,)
"""The trailing shape of TorchRL's flags and rewards: [N, 1]."""
STEP_FIELDS: dict[Any, tuple[torch.dtype, tuple[int, ...]]] = {  # key -> (dtype, shape after N)
    "action": (torch.int64, ()),
    "episode": (torch.int64, ()),
    "step": (torch.int64, ()),
    "is_init": (torch.bool, FLAG),
    "done": (torch.bool, FLAG),
    "terminated": (torch.bool, FLAG),
    "truncated": (torch.bool, FLAG),
    ("next", "reward"): (torch.float32, FLAG),
    ("next", "terminated"): (torch.bool, FLAG),
    ("next", "truncated"): (torch.bool, FLAG),
    ("next", "done"): (torch.bool, FLAG),
    ("next", "life_loss"): (torch.bool, FLAG),
}
OBSERVATION = {FORMAT: "pixels", TOKEN_FORMAT: "tokens"}
"""Each format's observation key (pixels uint8 [N, S, S, 3]; tokens uint8 [N, groups])."""


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
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{manifest_path}: cannot be read ({exc}): collect the dataset again") from exc
    if not isinstance(manifest, dict):
        raise DatasetError(f"{manifest_path}: a manifest is a JSON object, not a {type(manifest).__name__}: "
                           "collect the dataset again")
    if manifest.get("format") not in OBSERVATION and manifest.get("format") not in UPGRADES:
        raise DatasetError(
            f"{manifest_path}: format {manifest.get('format')!r} is not one of {sorted([*OBSERVATION, *UPGRADES])}: "
            "make the dataset again with this version of scaleworld"
        )
    missing = [k for k in ("game", "protocol", "policy", "counts", "returns", "episodes", "files")
               if not isinstance(manifest.get(k), list if k == "episodes" else dict)]
    if missing:
        raise DatasetError(f"{manifest_path}: entry {missing[0]!r} is missing or of the wrong type: "
                           "collect the dataset again")
    return manifest


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
        _check_invariants(dataset)
        _check_claims(dataset)
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
        write_json_atomic(path / STAMP, {"checks": CHECKS, "files": _fingerprint(path, manifest)})
    except OSError:  # a read-only dataset (a shared copy): verified again by every reader
        pass


def ensure_verified(path: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at `path`, or `DatasetError` unless it passes `verify_dataset`,
    which runs only when no valid stamp shows that these very files passed (the module docstring
    says why a stamp cannot outlive a change)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        stamp = json.loads((path / STAMP).read_text())
        if stamp == {"checks": CHECKS, "files": _fingerprint(path, manifest)}:
            return manifest
    except (OSError, ValueError):
        pass
    return verify_dataset(path)


def upgrade_rows(rows: Any, manifest: dict[str, Any], *, where: Path) -> Any:
    """Format 1 rows (TensorDict [N] of memmaps) in the format 2 layout: reward and flags as [N, 1]
    views of the same files, ``("next", "truncated")`` and ``("next", "done")`` also set on the last
    row of each episode the step budget cut (format 1 left it unmarked), and the root ``is_init``,
    ``done``, ``terminated``, ``truncated``. Only those columns are computed (N bytes each)."""
    from tensordict import TensorDict

    n = rows.batch_size[0]
    nxt = rows["next"]
    cut = torch.zeros(n, dtype=torch.bool)
    for e in manifest["episodes"]:
        if not e["complete"]:
            cut[e["start"] + e["length"] - 1] = True
    if bool(torch.as_tensor(nxt["done"])[cut].any()):
        raise DatasetError(f"{where}: an episode the manifest calls incomplete ends with done: collect again")
    step = torch.as_tensor(rows["step"])
    no = torch.zeros(n, *FLAG, dtype=torch.bool)
    flags = {k: nxt[k].unsqueeze(-1) for k in ("reward", "terminated", "life_loss")}
    flags["truncated"] = (torch.as_tensor(nxt["truncated"]) | cut).unsqueeze(-1)
    flags["done"] = (torch.as_tensor(nxt["done"]) | cut).unsqueeze(-1)
    obs = "tokens" if "tokens" in rows.keys() else "pixels"
    return TensorDict({obs: rows[obs], "action": rows["action"], "episode": rows["episode"], "step": rows["step"],
                       "is_init": (step == 0).unsqueeze(-1), "done": no, "terminated": no.clone(),
                       "truncated": no.clone(), "next": TensorDict(flags, batch_size=[n])}, batch_size=[n])


def _check_invariants(ds: OfflineDataset) -> None:
    where = ds.path
    m = ds.manifest
    data = ds.data
    steps = m["counts"]["steps"]
    if len(ds) != steps:
        raise DatasetError(f"{where}: {len(ds)} rows, the manifest says {steps}: collect again")
    size = m["protocol"]["frame_size"]
    fields = {OBSERVATION[ds.format]: (torch.uint8, None), **STEP_FIELDS}
    for key, (dtype, shape) in fields.items():
        if key not in data.keys(include_nested=True):
            raise DatasetError(f"{where}: field {key!r} is missing: collect the dataset again")
        if data[key].dtype != dtype:
            raise DatasetError(f"{where}: field {key!r} is {data[key].dtype}, expected {dtype}")
        if shape is not None and tuple(data[key].shape[1:]) != shape:
            want = ", ".join(["N", *map(str, shape)])
            raise DatasetError(f"{where}: field {key!r} is {list(data[key].shape)}, expected [{want}]: "
                               "collect the dataset again")
    if ds.is_tokens:
        groups, classes = m["tokenizer"]["config"]["groups"], m["tokenizer"]["config"]["classes"]
        tokens = torch.as_tensor(data["tokens"])
        if tuple(tokens.shape[1:]) != (groups,) or (tokens.numel() and int(tokens.max()) >= classes):
            raise DatasetError(f"{where}: tokens do not fit the tokenizer ({groups} x {classes}): encode again")
    elif tuple(data["pixels"].shape[1:]) != (size, size, 3):
        raise DatasetError(
            f"{where}: pixels are {tuple(data['pixels'].shape[1:])}, the protocol says "
            f"({size}, {size}, 3): collect the dataset again"
        )
    action = torch.as_tensor(data["action"])
    if action.numel() and (action.min() < 0 or action.max() >= NUM_ACTIONS):
        raise DatasetError(f"{where}: action ids outside [0, {NUM_ACTIONS}): collect again")
    legal = torch.tensor(_game_of(ds).action_mask())
    if not bool(legal[action].all()):
        bad = int(action[~legal[action]][0])
        raise DatasetError(f"{where}: a row holds action {bad}, illegal in {m['game']['name']} (a dataset of "
                           "another game?): collect again")
    episode = torch.as_tensor(data["episode"])
    step = torch.as_tensor(data["step"])

    def flag(key: Any) -> torch.Tensor:
        return torch.as_tensor(data[key]).reshape(-1)

    done, terminated, truncated, reward = (flag(("next", k)) for k in ("done", "terminated", "truncated", "reward"))
    if not bool(torch.isfinite(reward).all()):
        raise DatasetError(f"{where}: a reward is NaN or infinite: collect the dataset again")
    if not bool((done == (terminated | truncated)).all()):
        raise DatasetError(f"{where}: done != terminated | truncated: collect the dataset again")
    if not bool((flag("is_init") == (step == 0)).all()):
        raise DatasetError(f"{where}: is_init is not the first step of each episode: collect again")
    if any(bool(flag(k).any()) for k in ("done", "terminated", "truncated")):
        raise DatasetError(f"{where}: a row was acted from a done observation: collect again")
    for e, entry in enumerate(m["episodes"]):
        start, length = entry["start"], entry["length"]
        rows = slice(start, start + length)
        last = start + length - 1
        if length < 1 or not bool((episode[rows] == e).all()):
            raise DatasetError(f"{where}: episode {e} rows are not contiguous: collect again")
        if not bool((step[rows] == torch.arange(length)).all()):
            raise DatasetError(f"{where}: episode {e} step counter is broken: collect again")
        ends = done[rows].nonzero().flatten().tolist()
        if ends != [length - 1]:
            raise DatasetError(f"{where}: episode {e} has done flags at {ends}: collect again")
        if not entry["complete"] and (bool(terminated[last]) or not bool(truncated[last])):
            raise DatasetError(f"{where}: episode {e} is incomplete but its last row is not truncated only: "
                               "collect again")
        if entry.get("terminated", False) != bool(terminated[last]):
            raise DatasetError(f"{where}: episode {e}'s terminated flag disagrees with its last row: collect again")
        got = float(reward[rows].double().sum())
        if abs(got - entry["return"]) > 1e-3 * max(1.0, abs(got)):
            raise DatasetError(
                f"{where}: episode {e} return {got} != manifest {entry['return']}: collect again"
            )
    covered = sum(e["length"] for e in m["episodes"])
    if covered != steps:
        raise DatasetError(f"{where}: episodes cover {covered} rows of {steps}: collect again")


def _game_of(ds: OfflineDataset) -> Any:
    """The manifest's game, which must be one of the 26 and described as the game table does."""
    g = ds.manifest["game"]
    try:
        game = get_game(str(g.get("name")))
    except ScaleworldError as exc:
        raise DatasetError(f"{ds.path}: {exc}: collect the dataset again") from None
    if g.get("name") != game.name or g.get("rom") != game.rom or list(g.get("legal_actions", [])) != list(
            game.legal_actions):
        raise DatasetError(f"{ds.path}: the manifest's game entry does not describe {game.name} as the game table "
                           "does (edited?): collect the dataset again")
    return game


def _check_claims(ds: OfflineDataset) -> None:
    """The manifest's summaries against its episode table (which `_check_invariants` checked
    against the rows): counts, returns, the policy's own game, the protocol."""
    from scaleworld.atari.protocol import Protocol

    where, m = ds.path, ds.manifest
    episodes = m["episodes"]
    complete = [e for e in episodes if e["complete"]]
    if m["counts"].get("episodes") != len(episodes):
        raise DatasetError(f"{where}: the manifest counts {m['counts'].get('episodes')} episodes, its table holds "
                           f"{len(episodes)}: collect again")
    if m["counts"].get("complete_episodes") != len(complete):
        raise DatasetError(f"{where}: the manifest counts {m['counts'].get('complete_episodes')} complete episodes, "
                           f"its table holds {len(complete)}: collect again")
    returns = m["returns"].get("complete_episode_returns")
    if returns != [e["return"] for e in complete]:
        raise DatasetError(f"{where}: the manifest's returns summary disagrees with its episodes: collect again")
    mean = m["returns"].get("mean")
    expected = sum(returns) / len(returns) if returns else None
    if (mean is None) != (expected is None) or (mean is not None and abs(mean - expected) > 1e-6 * max(1, abs(mean))):
        raise DatasetError(f"{where}: the manifest's mean return {mean} is not the mean of its episodes' "
                           f"({expected}): collect again")
    policy_game = m["policy"].get("game")
    if policy_game is not None and policy_game != m["game"]["name"]:
        raise DatasetError(f"{where}: collected by an expert of {policy_game}, labelled {m['game']['name']}: "
                           "collect again with that game's expert")
    try:
        Protocol.from_dict(m["protocol"])
    except (ScaleworldError, TypeError) as exc:
        raise DatasetError(f"{where}: the manifest's protocol is invalid ({exc}): collect again") from None
