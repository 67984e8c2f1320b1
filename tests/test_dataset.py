"""Collection -> manifest -> reopen (also in another process) -> verify, and damage detection."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import MemoryMappedTensor

import scaleworld
from scaleworld.atari.protocol import Protocol
from scaleworld.data.collect import collect_dataset
from scaleworld.data.dataset import OfflineDataset, verify_dataset
from scaleworld.data.layout import FORMAT, DatasetError
from scaleworld.data.random_policy import RandomPolicy
from scaleworld.errors import ScaleworldError

from .conftest import SHORT, collect


def test_manifest_records_protocol_game_policy_counts_and_checksums(breakout_ds):
    m = json.loads((breakout_ds / "manifest.json").read_text())
    assert m["protocol"] == SHORT.to_dict()
    assert m["game"] == {"name": "Breakout", "rom": "breakout", "legal_actions": [0, 1, 3, 4]}
    assert m["policy"]["kind"] == "random"
    assert m["scaleworld_version"] == scaleworld.__version__
    assert m["counts"]["steps"] == 600
    assert m["counts"]["episodes"] == len(m["episodes"]) > m["counts"]["complete_episodes"] >= 4
    assert {"storage/pixels.memmap", "storage/action.memmap", "storage/next/reward.memmap"} <= set(m["files"])
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    verify_dataset(breakout_ds)


def test_rows_are_contiguous_episodes_with_torchrl_keys(breakout_ds):
    ds = OfflineDataset.open(breakout_ds)
    data = ds.data
    assert len(ds) == 600 and data["pixels"].shape == (600, 64, 64, 3)
    assert data["pixels"].dtype == torch.uint8
    for e, (start, length) in enumerate(zip(ds.episode_starts.tolist(), ds.episode_lengths.tolist())):
        rows = slice(start, start + length)
        assert (data["episode"][rows] == e).all()
        assert torch.equal(data["step"][rows], torch.arange(length))
    last = torch.tensor([e["start"] + e["length"] - 1 for e in ds.manifest["episodes"]])
    cut = torch.tensor([not e["complete"] for e in ds.manifest["episodes"]])
    assert cut.any() and data["next", "done"].shape == (600, 1) and data["next", "reward"].shape == (600, 1)
    assert data["next", "done"][:, 0].nonzero().flatten().tolist() == last.tolist()  # every episode's end
    assert torch.equal(data["next", "truncated"][last, 0] & ~data["next", "terminated"][last, 0] | ~cut, ~cut | cut)
    assert data["is_init"][:, 0].nonzero().flatten().tolist() == ds.episode_starts.tolist()
    assert not data["done"].any() and not data["terminated"].any() and not data["truncated"].any()
    assert set(data["action"].unique().tolist()) <= {0, 1, 3, 4}  # legal Breakout actions


def test_torchrl_slices_by_done_flags_never_cross_an_episode(breakout_ds):
    """TorchRL's SliceSampler finding trajectories by its default end key, ("next", "done"): every
    episode's last row carries it (the budget's cut included), so no slice crosses two episodes."""
    from torchrl.data import ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SliceSampler

    ds = OfflineDataset.open(breakout_ds)
    buffer = ds.replay_buffer(sampler=SliceSampler(slice_len=16, end_key=("next", "done")), batch_size=320 * 16)
    torch.manual_seed(0)
    slices = buffer.sample().reshape(320, 16)
    assert (slices["episode"] == slices["episode"][:, :1]).all()
    assert isinstance(buffer, ReplayBuffer)


V1 = Path(__file__).parent / "data" / "pong-v1"  # 40 rows of Pong (16x16 frames) written by format 1


def test_a_format_1_dataset_reads_as_format_2_with_the_same_rows_as_a_new_collection(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(V1, old)
    ds = OfflineDataset.open(old)  # verified in the new layout
    assert ds.manifest["format"] == "scaleworld.offline-dataset/1" and ds.format == FORMAT and not ds.is_tokens
    policy = RandomPolicy(seed=0)
    new = collect_dataset(game="Pong", policy=policy, policy_identity=policy.identity, steps=40, out=tmp_path / "new",
                          protocol=Protocol(**ds.manifest["protocol"]), seed=0, num_envs=2, progress=False)
    assert new["format"] == FORMAT and new["episodes"] == ds.manifest["episodes"]
    fresh = OfflineDataset.open(tmp_path / "new").data
    assert set(ds.data.keys(True, True)) == set(fresh.keys(True, True))
    for key in fresh.keys(True, True):
        assert torch.equal(torch.as_tensor(ds.data[key]), torch.as_tensor(fresh[key])), key
    assert not ds.manifest["episodes"][-1]["complete"] and ds.data["next", "truncated"][-1, 0]  # the cut, marked
    assert isinstance(ds.data["pixels"], MemoryMappedTensor)  # the pixels are not copied
    with pytest.raises(DatasetError, match="read-only"):
        ds.storage.set(range(2), fresh[:2])


def test_a_format_1_dataset_with_a_done_flag_on_an_episode_the_budget_cut_is_refused(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(V1, old)
    m = json.loads((old / "manifest.json").read_text())
    m["episodes"][0]["complete"] = False  # its last row ends the game: the manifest now lies
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="an episode the manifest calls incomplete ends with done"):
        OfflineDataset.open(old)


def test_collection_is_determined_by_its_seed(tmp_path, breakout_ds):
    again = collect(tmp_path / "again")
    first = json.loads((breakout_ds / "manifest.json").read_text())["files"]
    second = json.loads((again / "manifest.json").read_text())["files"]
    assert first == second
    other = collect(tmp_path / "other", seed=1)
    assert json.loads((other / "manifest.json").read_text())["files"] != first


def test_dataset_reopens_in_another_process_without_copying(breakout_ds):
    code = (
        "import sys, torch; from scaleworld.data.dataset import OfflineDataset;"
        "ds = OfflineDataset.open(sys.argv[1]); p = ds.data['pixels'];"
        "print(type(p).__name__, p.filename, int(p.long().sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(breakout_ds)], capture_output=True,
                         text=True, check=True).stdout.split()
    ds = OfflineDataset.open(breakout_ds)
    assert out[0] == "MemoryMappedTensor"
    assert os.path.samefile(out[1], breakout_ds / "storage" / "pixels.memmap")
    assert int(out[2]) == int(ds.data["pixels"].long().sum())


@pytest.fixture
def damaged(tmp_path, breakout_ds):
    copy = tmp_path / "copy"
    shutil.copytree(breakout_ds, copy)
    return copy


def test_verify_detects_a_flipped_byte(damaged):
    pixels = damaged / "storage" / "pixels.memmap"
    raw = bytearray(pixels.read_bytes())
    raw[12345] ^= 0xFF
    pixels.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="pixels.memmap: checksum mismatch"):
        verify_dataset(damaged)


def test_verify_detects_truncation_missing_files_foreign_files_and_no_manifest(damaged):
    reward = damaged / "storage" / "next" / "reward.memmap"
    data = reward.read_bytes()
    reward.write_bytes(data[:-8])
    with pytest.raises(DatasetError, match=r"reward.memmap: \d+ bytes, the manifest says"):
        verify_dataset(damaged)
    with pytest.raises(DatasetError, match=r"reward.memmap: \d+ bytes"):  # opening refuses it too
        OfflineDataset.open(damaged)
    reward.unlink()
    with pytest.raises(DatasetError, match="listed in the manifest but missing"):
        verify_dataset(damaged)
    reward.write_bytes(data)
    (damaged / "storage" / "extra.memmap").write_bytes(b"x")
    with pytest.raises(DatasetError, match="extra.memmap: not in the manifest"):
        verify_dataset(damaged)
    (damaged / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="no manifest.json, so this is not a finished dataset"):
        verify_dataset(damaged)


def test_verify_detects_a_manifest_that_disagrees_with_the_data(damaged):
    path = damaged / "manifest.json"
    m = json.loads(path.read_text())
    m["episodes"][0]["return"] += 5.0
    path.write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="episode 0 return"):
        verify_dataset(damaged)


def test_existing_output_and_bad_budgets_are_refused(breakout_ds, tmp_path):
    with pytest.raises(ScaleworldError, match="already exists"):
        collect(breakout_ds)
    with pytest.raises(ScaleworldError, match="must be at least 1"):
        collect(tmp_path / "zero", steps=0)
    assert not (tmp_path / "zero").exists()


def test_a_failing_policy_leaves_nothing_behind(tmp_path):
    calls = {"n": 0}

    def flaky(td):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("policy crashed")
        td["action"] = torch.zeros(td.batch_size[0], dtype=torch.int64)
        return td

    with pytest.raises(RuntimeError, match="policy crashed"):
        collect_dataset(game="Pong", policy=flaky, policy_identity={"kind": "test"}, steps=500,
                        out=tmp_path / "ds", protocol=SHORT, num_envs=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_collection_leaves_no_complete_looking_dataset(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "scaleworld.cli", "data", "collect", "--game", "Pong",
           "--steps", "200000", "--envs", "2", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".ds.partial-*/storage/*.memmap")):  # wait until it writes
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    (partial,) = tmp_path.glob(".ds.partial-*")
    with pytest.raises(DatasetError, match="no manifest.json"):
        verify_dataset(partial)
    # The next collection names what the killed one left, removes it and writes the dataset.
    rerun = subprocess.run([*cmd[:cmd.index("--steps") + 1], "300", *cmd[cmd.index("--steps") + 2:]],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"removed {partial}: left unfinished by a killed run (pid {proc.pid}); starting over" in rerun.stderr
    assert not partial.exists() and verify_dataset(out)


def test_a_leftover_of_another_host_or_a_live_writer_is_named_and_kept(tmp_path, capsys):
    import os
    import socket

    from scaleworld.data.files import clear_leftovers

    final = tmp_path / "ds"
    elsewhere = tmp_path / ".ds.partial-some-other-node-12345"
    live = tmp_path / f".ds.partial-{socket.gethostname()}-{os.getppid()}"  # pytest's parent: alive
    for folder in (elsewhere, live):
        folder.mkdir()
    clear_leftovers(final)
    err = capsys.readouterr().err
    assert f"note: {elsewhere}: an unfinished ds of another host's run" in err
    assert f"note: {live}: pid {os.getppid()} on this host is writing ds too" in err
    assert elsewhere.exists() and live.exists()


def test_random_policy_uses_only_legal_actions_uniformly():
    from tensordict import TensorDict

    mask = torch.zeros(4000, 18, dtype=torch.bool)
    mask[:, [0, 1, 3, 4]] = True
    td = TensorDict({"action_mask": mask}, batch_size=[4000])
    actions = RandomPolicy(seed=0)(td)["action"]
    counts = np.bincount(actions.numpy(), minlength=18)
    assert set(np.flatnonzero(counts)) == {0, 1, 3, 4}
    assert counts[[0, 1, 3, 4]].min() > 900
