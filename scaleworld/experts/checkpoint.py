"""The expert checkpoint format: how experts trained here or anywhere else are handed to scaleworld.

An expert checkpoint is a folder holding two files::

    expert.json   what the network expects and returns (format "scaleworld.expert/1"):
      {
        "format":   "scaleworld.expert/1",
        "game":     "Pong",                       # an Atari 100k game name (see `scaleworld games`)
        "view":     {"kind": "frame-stack", "frame_size": 64, "grayscale": true, "stack": 4},
        "actions":  [0, 1, 3, 4, 11, 12],         # logit i scores this id of ALE's full 18-action space
        "model":    {"file": "policy.pt2",        # relative to the folder
                     "sha256": "..."},            # optional; verified when present
        "protocol": {...},                        # optional: the Protocol it was trained under
        "provenance": {...}                       # optional, free-form: trainer, frames, seed, ...
      }
    policy.pt2    a ``torch.export`` program (``torch.export.save``) mapping a batch of views,
                  uint8 [B, C, S, S], to action logits float [B, len(actions)]; its batch dimension
                  must be dynamic (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``).

The view (see `scaleworld/experts/view.py`) is built from the protocol's 64x64 RGB observations:
the last ``stack`` frames, converted to BT.601 luma if ``grayscale`` (C = stack) or kept as RGB
(C = 3 * stack), oldest first, the stack filled with the first frame at each episode start. An
expert trained elsewhere on other inputs (84x84, say) needs a wrapper module that resizes inside
the exported program. Pixel scaling (e.g. / 255) is the module's job.

`save_expert` writes this format; `load_expert` checks it (one-line `ScaleworldError`s for a missing
or corrupt file, a wrong format version, a wrong observation shape, a wrong action count) and
returns an `ExpertPolicy` that follows scaleworld's policy interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from scaleworld.atari.games import NUM_ACTIONS, get_game
from scaleworld.atari.protocol import Protocol
from scaleworld.data.files import atomic_file, sha256_file, write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.experts.view import ViewSpec

EXPERT_FORMAT = "scaleworld.expert/1"
EXPERT_JSON = "expert.json"
PROGRAM_FILE = "policy.pt2"  # the exported program (torch.export); an imagination policy: model_files.POLICY_FILE
SCORE_JSON = "score.json"
_REQUIRED = ("format", "game", "view", "actions", "model")


def save_expert(
    out: str | Path,
    *,
    module: torch.nn.Module,
    game: str,
    view: ViewSpec,
    actions: tuple[int, ...] | list[int],
    protocol: Protocol | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Export `module` (view uint8 [B, *view.shape] -> logits [B, len(actions)]) as an expert in `out`.

    The exported program is checked like `load_expert` checks it, written to a temporary file and
    renamed into place; ``expert.json`` is written last, so a folder with an ``expert.json`` always
    holds a complete checkpoint.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((2, *view.shape), dtype=torch.uint8)
    was_training = module.training
    module.eval()
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    finally:
        module.train(was_training)
    _probe(program.module(), out / PROGRAM_FILE, view, len(actions))  # refuse to write a mismatched expert
    with atomic_file(out / PROGRAM_FILE, "wb") as f:
        torch.export.save(program, f)
    meta = {
        "format": EXPERT_FORMAT,
        "game": get_game(game).name,
        "view": view.to_dict(),
        "actions": [int(a) for a in actions],
        "model": {"file": PROGRAM_FILE, "sha256": sha256_file(out / PROGRAM_FILE),
                  "input": f"uint8 [B, {', '.join(map(str, view.shape))}]",
                  "output": f"float32 logits [B, {len(actions)}]"},
        "protocol": None if protocol is None else protocol.to_dict(),
        "provenance": provenance or {},
    }
    write_json_atomic(out / EXPERT_JSON, meta)
    return out


def read_expert_meta(path: str | Path) -> dict[str, Any]:
    """Read and check ``expert.json`` of the checkpoint folder `path` (not the program itself)."""
    path = Path(path)
    meta_path = path / EXPERT_JSON
    if not meta_path.is_file():
        raise ScaleworldError(
            f"no expert checkpoint at {path}: expected {meta_path} (format: scaleworld/experts/checkpoint.py; "
            "an unfinished `expert train` run has none yet)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScaleworldError(f"{meta_path} is not valid JSON ({exc}): restore or re-export the checkpoint") from None
    if not isinstance(meta, dict):
        raise ScaleworldError(f"{meta_path} must hold a JSON object: see scaleworld/experts/checkpoint.py")
    if meta.get("format") != EXPERT_FORMAT:
        raise ScaleworldError(
            f"{meta_path} has format {meta.get('format')!r} but this scaleworld reads {EXPERT_FORMAT!r}: "
            "re-export the expert in that format (scaleworld/experts/checkpoint.py)"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ScaleworldError(f"{meta_path} lacks {', '.join(missing)}: see scaleworld/experts/checkpoint.py")
    get_game(meta["game"])
    ViewSpec.from_dict(meta["view"])
    actions = meta["actions"]
    if (not isinstance(actions, list) or not actions or len(set(actions)) != len(actions)
            or not all(isinstance(a, int) and 0 <= a < NUM_ACTIONS for a in actions)):
        raise ScaleworldError(
            f"{meta_path}: actions must be a non-empty list of distinct ids in 0..{NUM_ACTIONS - 1}, got {actions!r}"
        )
    model = meta["model"]
    if not isinstance(model, dict) or not isinstance(model.get("file"), str):
        raise ScaleworldError(f'{meta_path}: "model" must be an object with a "file" name')
    return meta


PERCEPTION_KEYS = ("frame_skip", "max_pool", "full_action_space")
"""Protocol settings an expert must be run under as it learned (frame_size: its view's, checked too);
the others (episode cap, no-op starts, sticky actions) are the evaluation's to choose."""


def load_expert(
    path: str | Path,
    *,
    seed: int = 0,
    sampling: str = "sample",
    epsilon: float = 0.0,
    protocol: Protocol | None = None,
):
    """Load and check the expert checkpoint in folder `path`; return an `ExpertPolicy`.

    `sampling`: "sample" (from the expert's action distribution, the default) or "greedy"
    (its most likely legal action); with probability `epsilon` an action is instead drawn
    uniformly from the legal ones. `protocol`: if given, the expert's view must fit its frames.
    The policy's identity carries the program's SHA-256, the folder, the collection settings and,
    if ``score.json`` beside it was measured for this very program, the expert's score.
    """
    from scaleworld.experts.expert_policy import ExpertPolicy

    path = Path(path)
    meta = read_expert_meta(path)
    view = ViewSpec.from_dict(meta["view"])
    actions = tuple(meta["actions"])
    if protocol is not None and protocol.frame_size != view.frame_size:
        raise ScaleworldError(
            f"expert {path} sees {view.frame_size}x{view.frame_size} frames but the protocol's are "
            f"{protocol.frame_size}x{protocol.frame_size}: wrong observation shape for this protocol"
        )
    learned = meta.get("protocol") if isinstance(meta.get("protocol"), dict) else None
    if protocol is not None and learned is not None:
        # What the expert's actions mean and what its frames show: another value is another task.
        changed = [f"{k}={learned[k]!r}, not {getattr(protocol, k)!r}" for k in PERCEPTION_KEYS
                   if k in learned and learned[k] != getattr(protocol, k)]
        if changed:
            raise ScaleworldError(f"expert {path} learned under {'; '.join(changed)} (the protocol given): run it "
                                  "under the protocol it learned with (drop those --protocol settings)")
    program_path = path / meta["model"]["file"]
    if not program_path.is_file():
        raise ScaleworldError(f"{program_path} is missing: the expert checkpoint {path} is incomplete")
    digest = sha256_file(program_path)
    if meta["model"].get("sha256") not in (None, digest):
        raise ScaleworldError(
            f"{program_path} does not match the sha256 in {path / EXPERT_JSON} (corrupt or replaced): "
            "restore the file or re-export the expert"
        )
    refuse_code_in_program(program_path)
    try:
        program = torch.export.load(program_path).module()
    except Exception as exc:  # torch raises many types for a bad archive; report one line
        raise ScaleworldError(
            f"cannot load {program_path} ({type(exc).__name__}): it must be a torch.export program "
            "saved with torch.export.save"
        ) from None
    _probe(program, program_path, view, len(actions))
    return ExpertPolicy(
        logits_fn=program, view=view, actions=actions, game=meta["game"], seed=seed, sampling=sampling,
        epsilon=epsilon,
        identity={"kind": "expert", "format": EXPERT_FORMAT, "path": str(path.resolve()), "sha256": digest,
                  "game": meta["game"], "view": view.to_dict(), "actions": list(actions),
                  "provenance": meta.get("provenance") or {}, "score": _score_summary(path, digest)},
    )


def _probe(program, program_path: Path, view: ViewSpec, num_actions: int) -> None:
    """Run the program on zero views of two batch sizes; name the mismatch if it fails."""
    for batch in (2, 3):
        shape = [batch, *view.shape]
        try:
            with torch.no_grad():
                logits = program(torch.zeros(shape, dtype=torch.uint8))
        except Exception as exc:
            raise ScaleworldError(
                f"{program_path} rejects views uint8 {shape} (the view in expert.json; "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}): wrong observation "
                "shape; export it for that view with a dynamic batch dimension"
            ) from None
        if not isinstance(logits, torch.Tensor) or list(logits.shape) != [batch, num_actions]:
            got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ScaleworldError(
                f"{program_path} returns {got} for {batch} views but the expert lists {num_actions} actions: "
                "wrong action count; make the logits [B, len(actions)]"
            )
        if not logits.dtype.is_floating_point:
            raise ScaleworldError(f"{program_path} returns {logits.dtype} logits: they must be floating point")


def _score_summary(path: Path, digest: str) -> dict[str, Any] | None:
    """The expert's measured score from ``score.json``, if it was measured for this program."""
    score_path = path / SCORE_JSON
    if not score_path.is_file():
        return None
    try:
        record = json.loads(score_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScaleworldError(
            f"{score_path} is not valid JSON: remove it and re-run `scaleworld expert eval`"
        ) from None
    policy = record.get("policy", {})
    if policy.get("sha256") != digest:
        return None  # measured for another program: stale
    return {
        "file": str(score_path.resolve()),
        "mean": record["mean"], "std": record["std"], "sem": record["sem"], "episodes": record["episodes"],
        "seed": record["seed"], "protocol": record["protocol"],
        "sampling": policy.get("sampling"), "epsilon": policy.get("epsilon"),
    }


def refuse_code_in_program(path: Path) -> None:
    """Refuse a ``torch.export`` archive whose loading could run code, before torch reads it.

    `torch.export.load` unpickles, without torch's weights-only guard, weights or constants marked
    ``use_pickle``, custom and opaque objects, legacy pickled weight or constant files, and example
    inputs that the guarded load refuses. An archive holding none of these (what `torch.export.save`
    writes for a plain network: raw tensor bytes, a JSON graph, weights-only example inputs) is let
    through: loading it then unpickles nothing that can run code, and running the program calls only
    the operators its JSON graph names (torch's, or custom ones already registered in this process).
    """
    import io
    import zipfile

    import torch

    def refuse(why: str) -> ScaleworldError:
        return ScaleworldError(f"{path}: {why}, which could run code when loaded: refused (export the expert as a "
                               "plain network: tensors only)")

    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ScaleworldError(f"cannot load {path} ({type(exc).__name__}): it must be a torch.export program "
                              "saved with torch.export.save") from None
    with archive:
        for name in archive.namelist():
            folder, _, leaf = name.rpartition("/")
            if folder.endswith(("data/weights", "data/constants")) and leaf.endswith(".pt"):
                raise refuse(f"it holds a pickled {leaf}")
            if leaf in ("model_weights_config.json", "model_constants_config.json") or (
                    folder.endswith(("data/weights", "data/constants")) and leaf.endswith("_config.json")):
                try:
                    entries = json.loads(archive.read(name))["config"].values()
                except (ValueError, KeyError, AttributeError):
                    raise refuse(f"its {leaf} cannot be read") from None
                for entry in entries:
                    if not isinstance(entry, dict) or entry.get("use_pickle") or not str(
                            entry.get("path_name", "")).startswith(("weight_", "tensor_")):
                        raise refuse(f"{leaf} lists a pickled object ({str(entry)[:60]})")
            if folder.endswith("data/sample_inputs"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:
                    raise refuse(f"its example inputs {leaf} are not plain tensors") from None
