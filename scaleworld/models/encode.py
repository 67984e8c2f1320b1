"""Encode a pixel dataset with a frozen tokenizer into a token dataset (32 bytes a frame), gated by
the tokenizer's quality for the dataset's game."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.files import file_table, sha256_file, staging_dir, write_json_atomic
from scaleworld.data.layout import MANIFEST, STEP_FIELDS, STORAGE, TOKEN_FORMAT
from scaleworld.errors import ScaleworldError
from scaleworld.models.tokenizer_quality import MAX_RESIDUAL_FRACTION, check_quality, game_quality
from scaleworld.progress import progress_bar
from scaleworld.version import __version__


def encode_dataset(*, tokenizer_dir: str | Path, data_dir: str | Path, out: str | Path,
                   max_residual: float = MAX_RESIDUAL_FRACTION, batch_size: int = 512,
                   progress: bool = True) -> dict[str, Any]:
    """Write `out`: the rows of `data_dir` with ``tokens`` uint8 [N, groups] instead of ``pixels``.

    Gated: a tokenizer whose residual fraction for the dataset's game is above `max_residual` is
    refused (`TokenizerQualityError`) before anything is written. The figure is the tokenizer's
    own held-out record for the game when it was measured on this very dataset, else it is
    measured here on all of the dataset's frames. The manifest records the figures.
    """
    from torchrl.data import LazyMemmapStorage

    from scaleworld.models.model_files import load_tokenizer

    out = Path(out)
    if out.exists():
        raise ScaleworldError(f"{out} already exists: choose another --out or remove it")
    tokenizer, identity = load_tokenizer(tokenizer_dir)
    source = OfflineDataset.open(data_dir)  # verified: damaged pixels are never encoded
    if source.is_tokens:
        raise ScaleworldError(f"{data_dir} is already a token dataset: pass the pixel dataset it came from")
    if source.protocol.frame_size != tokenizer.config.frame_size:
        raise ScaleworldError(
            f"{data_dir} has {source.protocol.frame_size}px frames but the tokenizer expects "
            f"{tokenizer.config.frame_size}px: use a matching tokenizer"
        )
    quality = identity.get("quality", {}).get(source.game)
    if quality is None or quality.get("dataset", {}).get("manifest_sha256") != sha256_file(source.path / MANIFEST):
        # not measured on this dataset (another game, or other data of it): all of its frames are unseen
        quality = game_quality(tokenizer, source, torch.arange(len(source.episode_lengths)), frames_from="unseen")
    check_quality(quality, game=source.game, max_residual=max_residual, tokenizer=str(tokenizer_dir),
                  scope=identity.get("scope", "per_game"))
    n = len(source)
    data = source.data
    with staging_dir(out) as tmp:
        storage = LazyMemmapStorage(n, scratch_dir=tmp / STORAGE)
        with progress_bar(progress, f"encode {source.game}", n) as advance:
            for start in range(0, n, batch_size):
                rows = data[start : start + batch_size]
                tokens = tokenizer.encode(torch.as_tensor(rows["pixels"]))
                chunk = rows.select(*STEP_FIELDS).to_tensordict()
                chunk["tokens"] = tokens
                storage.set(range(start, start + len(tokens)), chunk)
                advance(len(tokens))
        storage.dumps(tmp / STORAGE)
        m = source.manifest
        manifest = {
            "format": TOKEN_FORMAT,
            "scaleworld_version": __version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "game": m["game"],
            "protocol": m["protocol"],
            "policy": m["policy"],
            "collection": m["collection"],
            "counts": m["counts"],
            "returns": m["returns"],
            "episodes": m["episodes"],
            "source": {"path": str(Path(data_dir).resolve()),
                       "relative_path": os.path.relpath(Path(data_dir).resolve(), out.resolve()),
                       "manifest_sha256": sha256_file(Path(data_dir) / MANIFEST)},
            "tokenizer": {**{k: identity[k] for k in ("path", "sha256", "config")}, "quality": quality},
            "files": file_table(tmp),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def open_source(tokens: OfflineDataset) -> OfflineDataset:
    """The pixel dataset a token dataset was encoded from: found beside it by the relative path its
    manifest records (so a moved or copied run root keeps working), else at the absolute one; it
    must be the very dataset (its manifest's SHA-256)."""
    source = tokens.manifest["source"]
    places = ([tokens.path / source["relative_path"]] if "relative_path" in source else []) + [Path(source["path"])]
    for place in places:
        if (place / MANIFEST).is_file() and sha256_file(place / MANIFEST) == source["manifest_sha256"]:
            return OfflineDataset.open(place)
    raise ScaleworldError(f"{tokens.path}: the pixel dataset it was encoded from is not at "
                          f"{' or '.join(str(p) for p in places)} (moved, or replaced by other data): "
                          "put it back or encode again")
