"""Trained models on disk: ``tokenizer.pt`` / ``dynamics.pt`` / ``policy.pt`` (config + weights), written atomically.

A model's identity is the SHA-256 of its file: token datasets record the tokenizer's, so NLLs are
only compared between dynamics runs that read the same tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scaleworld.data.files import atomic_file, load_tensors, sha256_file
from scaleworld.errors import ScaleworldError
from scaleworld.models.dynamics import DynamicsModel
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

TOKENIZER_FILE = "tokenizer.pt"
DYNAMICS_FILE = "dynamics.pt"
DYNAMICS_BEST_FILE = "dynamics_best.pt"
"""The dynamics weights at the lowest validation NLL (runs with a validation split); its extra's
``best`` gives their step and NLL."""
POLICY_FILE = "policy.pt"


def save_model(path: Path, *, kind: str, config: dict[str, Any], module: torch.nn.Module, extra: dict) -> str:
    """Write {kind, config, state_dict, extra} atomically; return the file's SHA-256."""
    with atomic_file(path, "wb") as f:
        torch.save({"kind": kind, "config": config, "state_dict": module.state_dict(), "extra": extra}, f)
    return sha256_file(path)


def _load(run_dir: str | Path, filename: str, kind: str) -> tuple[dict, Path]:
    path = Path(run_dir) / filename
    if not path.is_file():
        raise ScaleworldError(f"{path}: no trained {kind} here (train it first, or check the folder)")
    payload = load_tensors(path, fix=f"train the {kind} again", map_location="cpu")
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        what = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise ScaleworldError(f"{path}: holds a {what!r}, not a {kind}")
    return payload, path


def _load_model(run_dir: str | Path, filename: str, kind: str, config_cls, model_cls):
    payload, path = _load(run_dir, filename, kind)
    try:
        config = config_cls.from_dict(payload["config"])
    except ScaleworldError as exc:
        raise ScaleworldError(f"{path}: {exc}") from None
    model = model_cls(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError:  # other layers than this version's: written by another scaleworld
        raise ScaleworldError(f"{path}: its weights do not fit this scaleworld's {kind} (written by another "
                              f"version?): train the {kind} again") from None
    model.eval()
    identity = {"path": str(path.resolve()), "sha256": sha256_file(path), "config": config.to_dict(),
                **payload["extra"]}
    return model, identity


def check_same_tokenizer(identity: dict[str, Any], tokenizer_sha256: str, *, what: str) -> None:
    """Refuse `what` (tokens, or a tokenizer) encoded by another tokenizer than the one whose tokens the
    dynamics model of `identity` learned (recorded in dynamics.pt since scaleworld 0.1: older files
    are not checked): its NLL would be of codes that mean other things (190 nats/frame once)."""
    learned = identity.get("tokenizer_sha256")
    if learned is not None and learned != tokenizer_sha256:
        raise ScaleworldError(f"{what} is of tokenizer {tokenizer_sha256[:12]}, but the model in "
                              f"{Path(identity['path']).parent} learned the tokens of tokenizer {learned[:12]}: "
                              "encode with (or pass) the tokenizer its tokens came from")


def load_tokenizer(run_dir: str | Path) -> tuple[Tokenizer, dict[str, Any]]:
    """The frozen tokenizer (eval mode, no grad) and its identity {path, sha256, config, ...}."""
    model, identity = _load_model(run_dir, TOKENIZER_FILE, "tokenizer", TokenizerConfig, Tokenizer)
    return model.requires_grad_(False), identity


def load_policy(run_dir: str | Path):
    """The actor-critic trained in imagination (eval mode, no grad) and its identity {path, sha256, config, ...}."""
    from scaleworld.models.agent import ActorCritic, AgentConfig

    model, identity = _load_model(run_dir, POLICY_FILE, "policy", AgentConfig, ActorCritic)
    return model.requires_grad_(False), identity


def load_dynamics(run_dir: str | Path, *, best: bool = False) -> tuple[DynamicsModel, dict[str, Any]]:
    """The trained dynamics model (eval mode) and its identity {path, sha256, config, games, ...};
    `best`: its best checkpoint instead of the final one (identity["best"] = {step, validation_nll})."""
    return _load_model(run_dir, DYNAMICS_BEST_FILE if best else DYNAMICS_FILE, "dynamics", DynamicsConfig,
                       DynamicsModel)
