"""No file scaleworld reads can run code: a crafted pickle given as each kind of file (tokenizer,
dynamics and policy model files, a training checkpoint, a sampler state, an exported expert's
example inputs or weights) is refused in one line before any of it runs. Each payload, if unpickled
the unguarded way, makes a folder: its absence shows it never ran."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from scaleworld.errors import ScaleworldError
from scaleworld.experts.checkpoint import load_expert, save_expert
from scaleworld.experts.view import ViewSpec
from scaleworld.models.model_files import load_dynamics, load_policy, load_tokenizer
from scaleworld.training.config import TrainConfig
from scaleworld.training.trainer import read_checkpoint

from .test_experts_checkpoint import PONG_ACTIONS, small_expert

REFUSED = "holds objects other than tensors and plain values"


class Payload:
    """Unpickled without torch's weights-only guard, it makes the folder `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _crafted(path: Path, marker: Path, **fields) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**fields, "config": Payload(marker)}, path)


@pytest.mark.parametrize("filename,kind,load", [
    ("tokenizer.pt", "tokenizer", load_tokenizer),
    ("dynamics.pt", "dynamics", load_dynamics),
    ("policy.pt", "policy", load_policy),
])
def test_a_crafted_model_file_is_refused_unrun(tmp_path, filename, kind, load):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "run" / filename, marker, kind=kind, state_dict={}, extra={})
    with pytest.raises(ScaleworldError, match=REFUSED) as refused:
        load(tmp_path / "run")
    assert not marker.exists()
    assert "\n" not in str(refused.value) and f"train the {kind} again" in str(refused.value)


def test_a_crafted_checkpoint_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "checkpoint.pt", marker, step=3)
    with pytest.raises(ScaleworldError, match=REFUSED + r".*delete it to start over"):
        read_checkpoint(tmp_path / "checkpoint.pt", config=TrainConfig(), identity=None)
    assert not marker.exists()


def test_a_crafted_sampler_state_is_refused_unrun(tmp_path):
    from scaleworld.data.sampling import EpisodeWindowSampler

    marker = tmp_path / "ran"
    torch.save({"generator": Payload(marker)}, tmp_path / "sampler.pt")
    sampler = EpisodeWindowSampler.__new__(EpisodeWindowSampler)  # loads() reads before it touches the sampler
    with pytest.raises(ScaleworldError, match=REFUSED):
        sampler.loads(tmp_path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    root = tmp_path_factory.mktemp("expert")
    save_expert(root / "good", module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                actions=PONG_ACTIONS)
    return root / "good"


def _rewritten(expert: Path, tmp_path: Path, change) -> Path:
    """A copy of `expert` whose policy.pt2 has its entries passed through `change(name, bytes)`
    (which may add entries: it returns a list of (name, bytes)); the sha256 in expert.json dropped."""
    path = tmp_path / "crafted"
    shutil.copytree(expert, path)
    program = path / "policy.pt2"
    with zipfile.ZipFile(program) as z:
        entries = [(info.filename, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(program, "w") as z:
        for name, data in entries:
            for new_name, new_data in change(name, data):
                z.writestr(new_name, new_data)
    meta = json.loads((path / "expert.json").read_text())
    del meta["model"]["sha256"]
    (path / "expert.json").write_text(json.dumps(meta))
    return path


def _pickled(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_a_crafted_exported_expert_is_refused_unrun(expert, tmp_path):
    """torch.export.load falls back to an unguarded unpickle for example inputs the guarded load
    refuses, and unpickles weights marked use_pickle unguarded: both refused before torch reads them."""
    assert load_expert(expert) is not None  # the untouched archive loads
    marker = tmp_path / "ran"

    def inputs(name, data):
        return [(name, _pickled(Payload(marker)) if "sample_inputs" in name else data)]

    with pytest.raises(ScaleworldError, match=r"example inputs .* could run code when loaded: refused"):
        load_expert(_rewritten(expert, tmp_path / "a", inputs))
    assert not marker.exists()

    def weights(name, data):
        if not name.endswith("model_weights_config.json"):
            return [(name, data)]
        config = json.loads(data)
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        folder = name.rpartition("/")[0]
        return [(name, json.dumps(config).encode()), (f"{folder}/{first['path_name']}_", _pickled(Payload(marker)))]

    with pytest.raises(ScaleworldError, match=r"lists a pickled object .* could run code when loaded: refused"):
        load_expert(_rewritten(expert, tmp_path / "b", weights))
    assert not marker.exists()
