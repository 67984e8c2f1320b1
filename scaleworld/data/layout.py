"""Offline datasets on disk: the layout of a dataset folder and its rows, and its manifest.

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
budget's cut unmarked) is still read (scaleworld.data.format1). Reading a dataset, read-only and
verified: scaleworld.data.dataset; what its rows must satisfy: scaleworld.data.dataset_checks.

A token dataset (`scaleworld.models.encode`) has the same layout and rows with ``tokens`` uint8
[N, groups] (the frozen tokenizer's encoding of ``pixels``) in place of ``pixels``.
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from scaleworld.errors import ScaleworldError

FORMAT = "scaleworld.offline-dataset/2"
TOKEN_FORMAT = "scaleworld.token-dataset/2"
UPGRADES = {"scaleworld.offline-dataset/1": FORMAT, "scaleworld.token-dataset/1": TOKEN_FORMAT}
"""Older formats `OfflineDataset.open` still reads (in the newer layout: `upgrade_rows`)."""
MANIFEST = "manifest.json"
STORAGE = "storage"
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
