"""PPO checkpoints: one file, `training/state.pt`, replaced atomically.

The file is written to a temporary name beside it, flushed to disk, then renamed over the old one
(``os.replace``), so a kill at any moment leaves either the previous checkpoint or the new one.

What a resume restores exactly: the update count, the network weights, Adam's moments and step
counts, the action-sampling generator and the minibatch-order generator; the learning-rate
schedule is a function of the update count. What it cannot restore: the emulators.
``ale_py.AtariVectorEnv`` offers no way to save and reload the state of its emulators, so a resumed
run restarts them at fresh episodes, seeded from (seed, update count), and the episodes that were
in progress when the checkpoint was written are dropped. A resumed run is therefore *not*
bit-identical to an uninterrupted one, but on the CPU it is deterministic: resuming the same
checkpoint twice on the same machine gives the same weights (tests/test_experts_ppo_atari.py);
on a GPU, see `ppo.py` on determinism.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scaleworld.data.files import atomic_file
from scaleworld.errors import ScaleworldError
from scaleworld.version import __version__

STATE_FORMAT = "scaleworld.ppo-state/1"
STATE_FILE = "state.pt"


def save_state(
    training: Path,
    *,
    task: dict[str, Any],
    config: dict[str, Any],
    updates_done: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sample_rng: torch.Generator,
    minibatch_rng: torch.Generator,
    acting_device: str = "cpu",
) -> None:
    payload = {
        "format": STATE_FORMAT,
        "scaleworld_version": __version__,
        "task": task,
        "config": config,
        "updates_done": updates_done,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sample_rng": sample_rng.get_state(),
        "minibatch_rng": minibatch_rng.get_state(),
        "acting_device": acting_device,  # the kind of device sample_rng draws on (its state's format)
    }
    with atomic_file(training / STATE_FILE, "wb") as f:
        torch.save(payload, f)


def load_state(training: Path) -> dict[str, Any] | None:
    """The latest checkpoint in `training`, or None if there is none yet."""
    path = training / STATE_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say which, and how to recover
        raise ScaleworldError(f"cannot read PPO checkpoint {path} ({type(exc).__name__}): "
                              "remove it to start the run over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ScaleworldError(f"{path} is not a {STATE_FORMAT} checkpoint: remove it or choose another --out")
    return state
