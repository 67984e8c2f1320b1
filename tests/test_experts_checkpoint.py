"""The expert checkpoint format: a good one loads; each kind of bad one is rejected in one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from scaleworld.atari.protocol import Protocol
from scaleworld.errors import ScaleworldError
from scaleworld.experts.checkpoint import EXPERT_FORMAT, load_expert, read_expert_meta, save_expert
from scaleworld.experts.networks import ScaleBytes
from scaleworld.experts.view import ViewSpec

PONG_ACTIONS = (0, 1, 3, 4, 11, 12)


def small_expert(view: ViewSpec, num_actions: int) -> nn.Module:
    """A real (tiny) network from views to logits, as a user might export from elsewhere."""
    torch.manual_seed(0)
    return nn.Sequential(ScaleBytes(), nn.AvgPool2d(8), nn.Flatten(),
                         nn.Linear(view.shape[0] * (view.frame_size // 8) ** 2, num_actions))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid Pong expert on the default view (64x64 luma, 4 frames) and one on an 84x84 view."""
    root = tmp_path_factory.mktemp("experts")
    save_expert(root / "good", module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                actions=PONG_ACTIONS, protocol=Protocol(), provenance={"trainer": "elsewhere"})
    view84 = ViewSpec(frame_size=84)
    save_expert(root / "big", module=small_expert(view84, 6), game="Pong", view=view84, actions=PONG_ACTIONS)
    return root


def variant(good, tmp_path, source="good", **changes):
    """A copy of a good checkpoint with expert.json fields replaced (a user's mistake)."""
    path = tmp_path / "variant"
    shutil.copytree(good / source, path)
    meta = json.loads((path / "expert.json").read_text())
    meta.update(changes)
    (path / "expert.json").write_text(json.dumps(meta))
    return path


def test_a_good_checkpoint_loads_with_its_identity(good):
    meta = read_expert_meta(good / "good")
    assert meta["format"] == EXPERT_FORMAT and meta["actions"] == list(PONG_ACTIONS)
    policy = load_expert(good / "good", seed=1, epsilon=0.25)
    identity = policy.identity
    assert identity["sha256"] == meta["model"]["sha256"] and len(identity["sha256"]) == 64
    assert identity["path"] == str((good / "good").resolve())
    assert (identity["sampling"], identity["epsilon"], identity["seed"]) == ("sample", 0.25, 1)
    assert identity["score"] is None and identity["provenance"] == {"trainer": "elsewhere"}


def test_missing_folder_or_expert_json(tmp_path):
    with pytest.raises(ScaleworldError, match=r"no expert checkpoint at .*expected .*expert\.json"):
        load_expert(tmp_path / "nowhere")


def test_corrupt_expert_json(good, tmp_path):
    path = variant(good, tmp_path)
    (path / "expert.json").write_text('{"format": "scaleworld.expert/1", "game": ')
    with pytest.raises(ScaleworldError, match=r"expert\.json is not valid JSON"):
        load_expert(path)


def test_wrong_format_version(good, tmp_path):
    with pytest.raises(ScaleworldError, match=r"has format 'scaleworld\.expert/0' but this scaleworld reads"):
        load_expert(variant(good, tmp_path, format="scaleworld.expert/0"))


def test_missing_policy_file(good, tmp_path):
    path = variant(good, tmp_path)
    (path / "policy.pt2").unlink()
    with pytest.raises(ScaleworldError, match=r"policy\.pt2 is missing"):
        load_expert(path)


def test_corrupt_policy_file(good, tmp_path):
    path = variant(good, tmp_path)
    (path / "policy.pt2").write_bytes(b"not a torch.export archive")
    with pytest.raises(ScaleworldError, match=r"does not match the sha256"):
        load_expert(path)
    meta = json.loads((path / "expert.json").read_text())
    del meta["model"]["sha256"]  # the hash is optional; without it the archive itself is checked
    (path / "expert.json").write_text(json.dumps(meta))
    with pytest.raises(ScaleworldError, match=r"cannot load .*policy\.pt2 .*torch\.export program"):
        load_expert(path)


def test_wrong_observation_shape(good, tmp_path):
    # the program was exported for 84x84 views but expert.json claims 64x64 ones
    path = variant(good, tmp_path, source="big", view=ViewSpec().to_dict())
    with pytest.raises(ScaleworldError, match=r"rejects views uint8 \[2, 4, 64, 64\] .*wrong observation shape"):
        load_expert(path)
    # an expert that really sees 84x84 frames does not fit the protocol's 64x64 observations
    with pytest.raises(ScaleworldError, match=r"sees 84x84 frames but the protocol's are 64x64"):
        load_expert(good / "big", protocol=Protocol())


def test_wrong_action_count(good, tmp_path):
    path = variant(good, tmp_path, actions=list(range(18)))
    with pytest.raises(ScaleworldError, match=r"returns \[2, 6\] for 2 views but the expert lists 18 actions"):
        load_expert(path)
    with pytest.raises(ScaleworldError, match=r"wrong action count"):
        save_expert(tmp_path / "refused", module=small_expert(ViewSpec(), 18), game="Pong", view=ViewSpec(),
                    actions=PONG_ACTIONS)
    assert not (tmp_path / "refused" / "expert.json").exists()


@pytest.mark.parametrize("actions", [[], [0, 0, 1, 3, 4, 11], [0, 1, 3, 4, 11, 18], "all"])
def test_bad_action_lists(good, tmp_path, actions):
    with pytest.raises(ScaleworldError, match=r"actions must be a non-empty list of distinct ids in 0\.\.17"):
        load_expert(variant(good, tmp_path, actions=actions))


def test_unknown_game_and_view(good, tmp_path):
    with pytest.raises(ScaleworldError, match=r"unknown game 'Pongg'"):
        load_expert(variant(good, tmp_path, game="Pongg"))
    shutil.rmtree(tmp_path / "variant")
    with pytest.raises(ScaleworldError, match=r"unknown view spec"):
        load_expert(variant(good, tmp_path, view={"kind": "resize", "size": 84}))
