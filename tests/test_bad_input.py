"""Bad input, as tables: each row an input and the one line it must get (exit 2, no traceback,
nothing written). Grows with every input the project accepts. Damaged run roots: test_study.py.

Classes: spec values and shapes (`SPECS`), damaged or false datasets (`DATASETS`), output paths
(`OUTPUTS`), and a bounded fuzz of malformed specs.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scaleworld.cli.main import main
from scaleworld.data.dataset import OfflineDataset, verify_dataset
from scaleworld.data.files import sha256_file
from scaleworld.data.layout import DatasetError
from scaleworld.errors import ScaleworldError

SMOKE = Path(__file__).resolve().parents[1] / "studies" / "smoke.yaml"


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI in this process; it must exit 2 with exactly one stderr line and no traceback."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- specs ------------------------------------------------------------------------------------
SPECS = [  # (overrides on studies/smoke.yaml, the line's expected text)
    (["sources.x.policy=randm"], "sources.x.policy: unknown source 'randm': use expert or random"),
    (["sources.x.epsilon=1.5"], "sources.x.epsilon: 1.5 is impossible: a share of random actions, in [0, 1]"),
    (["sources.x.epsilon=-0.1"], "sources.x.epsilon: -0.1 is impossible"),
    (["sources.x.budget_fraction=0"], "sources.x.budget_fraction: 0.0 is impossible: a share of the expert's budget, "
                                      "in (0, 1]"),
    (["sources.x.budget_fraction=1.5"], "sources.x.budget_fraction: 1.5 is impossible"),
    (["sources.x.epslon=0.1"], "unknown key 'sources.x.epslon': did you mean 'sources.x.epsilon'?"),
    (["sources.base.epsilon=0.1"], "sources.base: 'base' names the spec itself: give the source another name"),
    (["sources.x.checkpoint=/nowhere"], "sources.x.checkpoint: no expert checkpoint /nowhere/Pong/expert.json"),
    (["sources.x.policy=random", "sources.x.epsilon=0.2"], "sources.x: a random source takes no epsilon"),
    (["fidelity.horizon=-4"], "fidelity.horizon: -4 is impossible: it must be at least 1"),
    (["fidelity.context_steps=0"], "fidelity.context_steps: 0 is impossible"),
    (["expert.num_envs=0"], "expert.num_envs: 0 is impossible"),
    (["expert.episodes=0"], "expert.episodes: 0 is impossible"),
    (["expert.frames=4096"], "expert.frames: the expert budget is given both in agent steps (1024) and in frames "
                             "(4096): give one"),
    (["expert.agent_steps=null", "expert.frames=4098"], "expert.frames: the expert budget of 4098 frames is not a "
                                                        "positive whole number of agent steps at frame skip 4"),
    (["analysis.weak_expert=-0.5"], "analysis.weak_expert: -0.5 is impossible"),
    (["policy.starts=val"], "policy.starts: 'val': use one of held_out, train, all"),
    (["seeds=[0,0]"], "seeds: 0 is listed twice"),
    (["seeds=[-1]"], "seeds[0]: -1: seeds are non-negative"),
    (["data.split_seed=-2"], "data.split_seed: -2: seeds are non-negative"),
    (["models.sizes=[tiny-d1,tiny-d1]"], "models.sizes: 'tiny-d1' is listed twice"),
    (["policy.modes=[single,single]"], "policy.modes: 'single' is listed twice"),
    (["launcher.gpus=-1"], "launcher.gpus: -1 is impossible: it must be at least 0"),
    (["launcher.time_min=0"], "launcher.time_min: 0 is impossible"),
    (["launcher.cpus=0"], "launcher.cpus: 0 is impossible"),
    (["launcher.mem_gb=0"], "launcher.mem_gb: 0.0 must be a positive, finite number of GB"),
    (["launcher.mem_gb=.inf"], "launcher.mem_gb: inf is not a number a spec can use: give a finite one"),
    (["launcher.pack_memory_gb=-8"], "launcher.pack_memory_gb: -8.0 must be a positive, finite number of GB"),
    (["train.lr=.inf"], "train.lr: inf is not a number a spec can use: give a finite one"),
    (["data.steps=100000000000000000000"], "data.steps: 100000000000000000000 is beyond any budget or size"),
    (["train.joint_steps=100000000000000000000"], "train.joint_steps: 100000000000000000000 is beyond any budget"),
    (["tokenizer.channels=[0,8]"], "tokenizer.channels: tokenizer channels [0, 8]: every width must be at least 1"),
    (["sweep.grid.run_root=[a,b]"], "sweep.grid.run_root: run_root is the study's folder"),
    (["sweep.zip.name=[a,b]"], "sweep.zip.name: name is the study's name"),
    (["ablations={x: {launcher.pack: 2}}"], "ablations.x.launcher.pack: launcher is where jobs run"),
    (["ablations={base: {train.steps: 3}}"], "ablations.base: 'base' names the spec without ablations"),
    (["ablations={x: {sweep.grid.seeds: [[1]]}}"], "ablations.x.sweep.grid.seeds: sweep is the sweep itself"),
    (["ablations={x: {ablations.y.train.steps: 3}}"], "ablations.x.ablations.y.train.steps: ablations is the"),
    (["launcher.max_array_size=0"], "launcher.max_array_size: 0 is impossible"),
    (["launcher.requeues=-1"], "launcher.requeues: -1 is impossible"),
    (["name=../../etc"], "name: '../../etc': use letters, digits"),
    (["train.joint_steps=-3"], "train.joint_steps: -3 is impossible"),
    (["train.warmup_steps=-1"], "train.warmup_steps: -1 is impossible"),
    (["train.lr=0"], "train.lr: 0.0 must be positive"),
    (["train..steps=1"], "override 'train..steps=1': the key 'train..steps' has an empty part"),
    (["games=Pong"], "games: give a list, e.g. games: [Pong]"),
    (["games=[[Pong]]"], "games[0]: give a single value, not a list"),
    (["games={a: Pong}"], "games: give a list, not a mapping"),
    (["train=5"], "train: give a mapping of keys"),
    (["train.steps=[5]"], "train.steps: give a single value, not a list"),
    (["sweep.grid={train.lr: 5}"], "sweep.grid.train.lr: give a list of values"),
    (["sweep.grid={train.lr: [0.1, 0.1]}"], "sweep.grid.train.lr: 0.1 is listed twice"),
    (["policy.layers=-1"], "policy: policy.layers=-1 must be at least 0"),
    (["policy.entropy_coef=-0.5"], "policy: policy.entropy_coef=-0.5 must be at least 0"),
    (["tokenizer.channels=[]"], "tokenizer.channels: tokenizer channels []"),
    (["train.validation_fraction=1.0"], "train.validation_fraction: 1.0 must be in [0, 1) (0: no validation split"),
    (["modes.matched.rule=more"], "modes.matched.rule: 'more': use tokens_per_game, total_steps, data"),
    (["policy.modes=[joint_long]"], "policy.modes[0]: unknown mode 'joint_long': use single, joint, matched, "
                                    "joint_short"),
    (["tokenizer.scope=per_game", "modes.joint=false", "modes.matched.enabled=false", "modes.joint_short=true"],
     "modes.joint_short: a joint model needs one shared tokenizer: set tokenizer.scope=shared"),
]


@pytest.mark.parametrize("overrides, message", SPECS, ids=[" ".join(o) for o, _ in SPECS])
def test_a_bad_spec_value_gets_one_line_naming_the_key(capsys, tmp_path, overrides, message):
    line = _one_line_error(capsys, ["run", SMOKE, *overrides, f"run_root={tmp_path / 'root'}"])
    assert message in line
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("content, message", [
    (b"\x00\xff\xfe\x80 binary", "cannot be read as a text spec"),
    (b"- a\n- list\n", "a spec is a mapping"),
    (b"name: x\ngames:\n  - [Pong]\n", "games[0]: give a single value, not a list"),
    (b"name: x\ngames: {Pong: 1}\n", "games: give a list, not a mapping"),
    (b"name: x\ngames: [Pong]\nlauncher: local\n", "launcher: give a mapping of keys"),
    (b"name: x\ngames: [Pong]\ntrain: {steps: 5}\ntrain: {lr: 0.1}\n", "'train' is written twice in one mapping"),
    (b"name: x\ngames: [Pong]\ntrain: {steps: 5, steps: 6}\n", "'steps' is written twice in one mapping"),
])
def test_a_bad_spec_file_gets_one_line(capsys, tmp_path, content, message):
    (tmp_path / "spec.yaml").write_bytes(content)
    assert message in _one_line_error(capsys, ["validate", tmp_path / "spec.yaml"])


def test_every_count_and_seed_of_the_spec_refuses_a_negative_value(capsys):
    """Each numeric leaf of a valid spec set to -7 (counts, seeds, rates): validate refuses it, so no
    job meets a value it would refuse later."""
    from omegaconf import OmegaConf

    from scaleworld.study.spec_load import load_spec

    def leaves(node, path=""):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            if isinstance(value, dict):
                yield from leaves(value, sub)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield sub

    numeric = list(leaves(OmegaConf.to_container(load_spec(SMOKE))))
    assert len(numeric) > 50
    accepted = [key for key in numeric if main(["validate", str(SMOKE), f"{key}=-7"]) != 2]
    capsys.readouterr()
    assert accepted == []


def test_malformed_specs_fuzzed_for_a_bounded_time_get_one_line_and_write_nothing(capsys, tmp_path, monkeypatch):
    """Random malformations of the smoke spec (a wrong type, shape or range at a random leaf, or an
    unknown key at a random depth), for 20 s: exit 2, one line, no traceback, nothing written."""
    import yaml

    monkeypatch.chdir(tmp_path)  # a default run_root would land here
    base = yaml.safe_load(SMOKE.read_text())
    base["run_root"] = str(tmp_path / "root")
    from omegaconf import OmegaConf

    from scaleworld.study.spec_load import load_spec

    full = OmegaConf.to_container(load_spec(SMOKE))
    full.pop("run_root")
    paths = []

    def walk(node, path):
        for key, value in node.items():
            paths.append((*path, key))
            if isinstance(value, dict):
                walk(value, (*path, key))

    walk(full, ())
    rng = random.Random(0)
    deadline, tried = time.monotonic() + 20, 0
    while time.monotonic() < deadline:
        spec = json.loads(json.dumps(base))
        path = rng.choice(paths)
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        old = _get(full, path)
        how = rng.choice(["unknown", "type", "shape", "range"])
        if how == "unknown" or (how == "range" and not _is_number(old)):
            target = node if rng.random() < 0.5 or not isinstance(node.get(path[-1]), dict) else node[path[-1]]
            target[f"zz{rng.randrange(1000)}"] = 1
        elif how == "type":
            node[path[-1]] = rng.choice([{"a": 1}, [[1]], "not-a-number" if _is_number(old) else {"x": []}])
        elif how == "shape":
            node[path[-1]] = [old] if not isinstance(old, (list, dict)) else ("a scalar" if old != [] else {"k": 1})
            if isinstance(old, list) and old == [] and path[-1] in ("sizes", "modes", "channels"):
                node[path[-1]] = 3.5  # a number where a list belongs
        else:
            node[path[-1]] = rng.choice([-1, -1000]) if not isinstance(old, float) else -1.5
        file = tmp_path / "fuzz.yaml"
        file.write_text(yaml.safe_dump(spec))
        code = main(["validate", str(file)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (path, how, spec, err)
        tried += 1
    assert tried > 50
    assert _files_under(tmp_path) == {"fuzz.yaml"}


def _get(node, path):
    for key in path:
        node = node[key]
    return node


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- datasets ---------------------------------------------------------------------------------
def _rewrite_checksums(path: Path) -> None:
    """Re-sign every file in the manifest: the damage below then is caught by the invariants alone."""
    manifest = json.loads((path / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        entry.update(bytes=(path / rel).stat().st_size, sha256=sha256_file(path / rel))
    (path / "manifest.json").write_text(json.dumps(manifest))


def _memmap(path: Path, field: str, dtype) -> np.memmap:
    return np.memmap(path / "storage" / f"{field}.memmap", dtype=dtype, mode="r+")


def _edit_manifest(**changes):
    def edit(path: Path) -> None:
        manifest = json.loads((path / "manifest.json").read_text())
        for dotted, value in changes.items():
            node = manifest
            *parents, leaf = dotted.split("__")
            for key in parents:
                node = node[key]
            node[leaf] = value(node[leaf]) if callable(value) else value
        (path / "manifest.json").write_text(json.dumps(manifest))
    return edit


def _flip_pixel(path: Path) -> None:
    pixels = _memmap(path, "pixels", np.uint8)
    pixels[1000] ^= 0xFF
    pixels.flush()


def _break_episode_ids(path: Path) -> None:
    episode = _memmap(path, "episode", np.int64)
    episode[5] = 3
    episode.flush()
    _rewrite_checksums(path)


def _nan_reward(path: Path) -> None:
    reward = _memmap(path, "next/reward", np.float32)
    reward[3] = np.nan
    reward.flush()
    _rewrite_checksums(path)


def _breakout_label(path: Path) -> None:
    from scaleworld.atari.games import get_game

    g = get_game("Breakout")
    _edit_manifest(game={"name": g.name, "rom": g.rom, "legal_actions": list(g.legal_actions)})(path)


def _cut_pixels_and_resign(path: Path) -> None:
    """Half the pixel rows gone, the manifest's size and checksum of the file rewritten to match."""
    pixels = path / "storage" / "pixels.memmap"
    pixels.write_bytes(pixels.read_bytes()[: pixels.stat().st_size // 2])
    _rewrite_checksums(path)


def _foreign_file(path: Path) -> None:
    (path / "storage" / "extra.bin").write_bytes(b"x")


def _terminated_flag(path: Path) -> None:
    _edit_manifest(episodes=lambda eps: [{**eps[0], "terminated": not eps[0]["terminated"]}, *eps[1:]])(path)


DATASETS = [  # (what is wrong, how to do it, the line's expected text)
    ("flipped pixel bytes", _flip_pixel, "pixels.memmap: checksum mismatch"),
    ("broken episode ids", _break_episode_ids, "episode 0 rows are not contiguous"),
    ("a NaN reward", _nan_reward, "a reward is NaN or infinite"),
    ("a manifest step count that disagrees with the rows", _edit_manifest(counts__steps=299),
     "300 rows, the manifest says 299"),
    ("a wrong episode count", _edit_manifest(counts__episodes=lambda n: n + 1), "episodes, its table holds"),
    ("a wrong complete-episode count", _edit_manifest(counts__complete_episodes=lambda n: n + 1),
     "complete episodes, its table holds"),
    ("a faked returns list", _edit_manifest(returns__complete_episode_returns=lambda r: [*r, 5.0]),
     "returns summary disagrees"),
    ("a faked mean return", _edit_manifest(returns__mean=21.0), "mean return 21.0 is not the mean"),
    ("a Pong dataset relabelled Breakout", _breakout_label, "illegal in Breakout"),
    ("a game entry unlike the game table", _edit_manifest(game__rom="breakout"), "does not describe Pong"),
    ("an unknown game", _edit_manifest(game__name="Pongg"), "unknown game 'Pongg'"),
    ("an episode's terminated flag", _terminated_flag, "terminated flag disagrees"),
    ("an expert of another game", _edit_manifest(policy={"kind": "expert", "game": "Boxing"}),
     "collected by an expert of Boxing, labelled Pong"),
    ("a manifest that is a JSON list", lambda p: (p / "manifest.json").write_text("[1, 2]"),
     "a manifest is a JSON object, not a list"),
    ("a manifest without its episode table", _edit_manifest(episodes={}), "entry 'episodes' is missing"),
    ("an episode table of strings", _edit_manifest(episodes=lambda eps: ["x"] * len(eps)), "malformed"),
    ("a protocol that is not one", _edit_manifest(protocol__frame_skip=0), "protocol"),
    ("a foreign file", _foreign_file, "extra.bin: not in the manifest"),
    ("a pixel file cut in half under a re-signed manifest", _cut_pixels_and_resign,
     "pixels.memmap: 1843200 bytes where its shape [300, 64, 64, 3] of torch.uint8 needs 3686400"),
]


@pytest.fixture
def damaged(pong_ds, tmp_path):
    def make(how) -> Path:
        path = tmp_path / "damaged"
        shutil.copytree(pong_ds, path)
        how(path)
        return path
    return make


@pytest.mark.parametrize("what, how, message", DATASETS, ids=[d[0] for d in DATASETS])
def test_data_verify_and_every_reader_refuse_a_damaged_or_false_dataset(capsys, damaged, what, how, message):
    path = damaged(how)
    before = _files(path)
    assert message in _one_line_error(capsys, ["data", "verify", path])
    with pytest.raises(DatasetError, match="collect|remove it"):
        OfflineDataset.open(path)  # what training, encoding, fidelity and imagination read through
    assert _files(path) == before  # refused without a write (no padding, no stamp)


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_a_verified_dataset_is_stamped_outside_it_and_any_later_write_voids_the_stamp(pong_ds, tmp_path,
                                                                                     monkeypatch):
    from scaleworld.data.dataset import stamp_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "copy"
    shutil.copytree(pong_ds, path)
    before = _files(path)
    OfflineDataset.open(path)  # verifies the copy (new inodes), then stamps it in the cache
    assert stamp_path(path).is_relative_to(tmp_path / "cache") and stamp_path(path).is_file()
    stamped = stamp_path(path).stat().st_mtime_ns
    OfflineDataset.open(path)  # the stamp holds: no re-verification (which would write a new stamp)
    ds = OfflineDataset.open(path)
    assert stamp_path(path).stat().st_mtime_ns == stamped
    assert main(["data", "verify", str(path)]) in (0, None)
    assert _files(path) == before  # reading and verifying changed no byte and no mtime of the dataset
    ds.data["next", "reward"][4] = 99.0  # a write through the memory map, as a careless user might
    with pytest.raises(DatasetError, match="reward.memmap: checksum mismatch"):
        OfflineDataset.open(path)


def test_damaged_data_never_reaches_training_or_encoding(capsys, damaged, frozen_tokenizer, tmp_path):
    path = damaged(_nan_reward)
    line = _one_line_error(capsys, ["train", "tokenizer", "--data", path, "--out", tmp_path / "tok", "--steps", "1"])
    assert "a reward is NaN" in line and not (tmp_path / "tok").exists()
    line = _one_line_error(capsys, ["tokens", "encode", "--tokenizer", frozen_tokenizer, "--data", path,
                                    "--out", tmp_path / "tokens", "--max-residual", "1e9"])
    assert "a reward is NaN" in line and not (tmp_path / "tokens").exists()


def test_a_replay_buffer_on_a_dataset_cannot_overwrite_it(pong_ds, tmp_path):
    from torchrl.data import ReplayBuffer

    path = tmp_path / "copy"
    shutil.copytree(pong_ds, path)
    ds = OfflineDataset.open(path)
    rows = ds.data[:4].to_tensordict()
    with pytest.raises(DatasetError, match="a dataset is read-only: build the ReplayBuffer with "
                                           "writer=ImmutableDatasetWriter"):
        ReplayBuffer(storage=ds.storage).extend(rows)
    buffer = ds.replay_buffer(batch_size=8)
    assert buffer.sample()["pixels"].shape == (8, 64, 64, 3)
    with pytest.raises(RuntimeError):
        buffer.extend(rows)  # TorchRL's own ImmutableDatasetWriter
    verify_dataset(path)  # the files are untouched
    import pickle

    restored = pickle.loads(pickle.dumps(ds.storage))  # as a plain storage does (multiprocess users)
    assert len(restored) == len(ds)
    with pytest.raises(DatasetError, match="a dataset is read-only"):
        ReplayBuffer(storage=restored).extend(rows)


def test_collection_refuses_an_expert_of_another_game(capsys, tmp_path):
    from scaleworld.atari.protocol import Protocol
    from scaleworld.experts.checkpoint import save_expert
    from scaleworld.experts.view import ViewSpec
    from tests.test_experts_checkpoint import PONG_ACTIONS, small_expert

    save_expert(tmp_path / "pong-expert", module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                actions=PONG_ACTIONS, protocol=Protocol())
    before = _files_under(tmp_path)
    line = _one_line_error(capsys, ["data", "collect", "--game", "Breakout", "--policy", tmp_path / "pong-expert",
                                    "--steps", "10", "--out", tmp_path / "data"])
    assert "the policy is an expert of Pong, not of Breakout" in line
    assert _files_under(tmp_path) == before


# -- output paths -----------------------------------------------------------------------------
OUTPUTS = [  # (argv with {tmp} for the test's folder, the line's expected text)
    (["data", "collect", "--game", "Pong", "--steps", "10", "--out", "/proc/scaleworld-x"], "cannot write in /proc"),
    (["data", "collect", "--game", "Pong", "--steps", "10", "--out", "{tmp}/afile/x"], "afile is not a folder"),
    (["data", "collect", "--game", "Pong", "--steps", "10", "--out", "{tmp}/afile"], "already exists"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/afile"], "--out {tmp}/afile is a file"),
    (["train", "tokenizer", "--data", "{tmp}", "--out", "/proc/scaleworld-x"], "cannot write in /proc"),
    (["tokens", "encode", "--tokenizer", "{tmp}", "--data", "{tmp}", "--out", "/sys/x"], "cannot write in /sys"),
    (["expert", "train", "--game", "Pong", "--frames", "100", "--out", "/proc/x"], "cannot write in /proc"),
    (["policy", "train", "--dynamics", "{tmp}", "--tokens", "{tmp}", "--out", "{tmp}/afile/run"],
     "afile is not a folder"),
    (["report", "{tmp}", "--json", "{tmp}"], "--json {tmp} is a folder: give a file name"),
    (["report", "{tmp}", "--json", "{tmp}/nowhere/r.json"], "the folder {tmp}/nowhere does not exist"),
    (["report", "{tmp}", "--csv", "/proc/r.csv"], "cannot write in /proc"),
    (["report", "{tmp}", "--figures", "{tmp}/afile"], "--figures {tmp}/afile is a file: give a folder"),
    (["eval", "score", "--game", "Pong", "--out", "{tmp}"], "--out {tmp} is a folder"),
]


@pytest.mark.parametrize("argv, message", OUTPUTS, ids=[" ".join(a[:2]) + " " + a[-1] for a, _ in OUTPUTS])
def test_an_unwritable_output_path_is_refused_before_anything_is_written(capsys, tmp_path, argv, message):
    (tmp_path / "afile").write_text("x")
    before = _files_under(tmp_path)
    line = _one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message.replace("{tmp}", str(tmp_path)) in line
    assert _files_under(tmp_path) == before


# -- command-line numbers ------------------------------------------------------------------------
NUMBERS = [  # (argv with {tmp}, the line's expected text): every number checked where it enters
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--warmup", "-5"],
     "argument --warmup: -5 is impossible: give a whole number from 0"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--seed", "-1"], "argument --seed: -1"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--tokens", "0"], "argument --tokens: 0"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--lr", "nan"],
     "argument --lr: nan is impossible: give a finite number in (0, inf)"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--steps", str(2**64)],
     f"argument --steps: {2**64} is impossible"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--joint-games", "0"],
     "argument --joint-games: 0"),
    (["train", "dynamics", "--tokens-data", "{tmp}", "--out", "{tmp}/r", "--val-fraction", "1"],
     "argument --val-fraction: 1 is impossible: give a finite number in [0, 1)"),
    (["train", "tokenizer", "--data", "{tmp}", "--out", "{tmp}/r", "--channels", "16", "-16"],
     "argument --channels: -16"),
    (["data", "collect", "--game", "Pong", "--steps", "10", "--out", "{tmp}/d", "--envs", "0"], "argument --envs: 0"),
    (["data", "collect", "--game", "Pong", "--steps", "ten", "--out", "{tmp}/d"], "'ten' is not a whole number"),
    (["eval", "fidelity", "--dynamics", "{tmp}", "--tokens", "{tmp}", "--rollouts", "0"], "argument --rollouts: 0"),
    (["eval", "fidelity", "--dynamics", "{tmp}", "--tokens", "{tmp}", "--context-steps", "-1"],
     "argument --context-steps: -1"),
    (["expert", "train", "--game", "Pong", "--frames", "100", "--out", "{tmp}/e", "--stop-after", "0"],
     "argument --stop-after: 0"),
    (["expert", "train", "--game", "Pong", "--frames", "100", "--out", "{tmp}/e", "--stop-after", "-1"],
     "argument --stop-after: -1"),
    (["policy", "train", "--dynamics", "{tmp}", "--tokens", "{tmp}", "--out", "{tmp}/p", "--gamma", "1.5"],
     "argument --gamma: 1.5 is impossible: give a finite number in (0, 1]"),
    (["report", "{tmp}", "--width", "-5"], "argument --width: -5 is impossible"),
    (["report", "{tmp}", "--figures", "{tmp}/f", "--dpi", "0"], "argument --dpi: 0"),
    (["plan", str(SMOKE), "--calibrate", "--seconds", "nan"], "argument --seconds: nan is impossible"),
]


@pytest.mark.parametrize("argv, message", NUMBERS, ids=[" ".join(a[:2] + a[-2:]) for a, _ in NUMBERS])
def test_a_number_out_of_range_on_the_command_line_is_one_line_naming_the_option(capsys, tmp_path, argv, message):
    before = _files_under(tmp_path)
    line = _one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in line and line.endswith("--help`"), line
    assert _files_under(tmp_path) == before


def test_run_on_slurm_without_a_cluster_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sinfo to answer
    line = _one_line_error(capsys, ["run", SMOKE, "launcher.kind=slurm", f"run_root={tmp_path / 'root'}"])
    assert "no SLURM cluster answers `sinfo`" in line and not (tmp_path / "root").exists()


def test_a_world_model_loss_takes_a_tensordict_module_and_reads_its_keys():
    import torch
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule

    from scaleworld.errors import ScaleworldError
    from scaleworld.models.dynamics import DynamicsModel
    from scaleworld.models.dynamics_config import DynamicsConfig
    from scaleworld.objectives.world_model import DynamicsLoss

    torch.manual_seed(0)
    net = DynamicsModel(DynamicsConfig(width=32, depth=1, heads=2, context=8, groups=4, classes=8))
    td = TensorDict({"obs_tokens": torch.randint(0, 8, (2, 8, 4), dtype=torch.uint8),
                     "action": torch.zeros(2, 8, dtype=torch.long), "mask": torch.ones(2, 8, dtype=torch.bool),
                     "next": {"reward": torch.zeros(2, 8), "terminated": torch.zeros(2, 8, dtype=torch.bool)}},
                    batch_size=[2, 8])
    wrapped = DynamicsLoss(TensorDictModule(net, in_keys=["obs_tokens", "action"], out_keys=["out"]))
    plain = DynamicsLoss(net)
    td["tokens"] = td["obs_tokens"]
    assert torch.equal(wrapped(td)["loss_latent"], plain(td)["loss_latent"])
    with pytest.raises(ScaleworldError, match="give 2 keys, in the order tokens, action"):
        DynamicsLoss(TensorDictModule(net, in_keys=["tokens"], out_keys=["out"]))
    with pytest.raises(ScaleworldError, match="needs a DynamicsModel"):
        DynamicsLoss(TensorDictModule(torch.nn.Linear(2, 2), in_keys=["x"], out_keys=["y"]))


def test_run_root_stays_where_the_user_put_it():
    from scaleworld.study.spec_load import load_spec

    assert load_spec(SMOKE, ["run_root=~/somewhere"]).run_root == str(Path.home() / "somewhere")
    assert load_spec(SMOKE, ["run_root=rel/dir"]).run_root == "rel/dir"  # relative to where `run` is started
    assert load_spec(SMOKE).run_root == "runs/smoke"


def test_a_source_whose_checkpoint_folder_holds_another_games_expert_is_refused(capsys, tmp_path):
    from scaleworld.atari.protocol import Protocol
    from scaleworld.experts.checkpoint import save_expert
    from scaleworld.experts.view import ViewSpec
    from tests.test_experts_checkpoint import PONG_ACTIONS, small_expert

    for folder in ("Pong", "Breakout"):  # both folders hold Pong's expert
        save_expert(tmp_path / "experts" / folder, module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                    actions=PONG_ACTIONS, protocol=Protocol())
    before = _files_under(tmp_path)
    line = _one_line_error(capsys, ["validate", SMOKE, f"sources.x.checkpoint={tmp_path / 'experts'}",
                                    f"run_root={tmp_path / 'root'}"])
    assert f"sources.x.checkpoint: {tmp_path / 'experts' / 'Breakout' / 'expert.json'} is an expert of Pong, not " \
           "of Breakout" in line
    assert _files_under(tmp_path) == before


def test_an_expert_refuses_a_protocol_other_than_the_one_it_learned_with(capsys, tmp_path):
    from scaleworld.atari.protocol import Protocol
    from scaleworld.experts.checkpoint import save_expert
    from scaleworld.experts.view import ViewSpec
    from tests.test_experts_checkpoint import PONG_ACTIONS, small_expert

    save_expert(tmp_path / "pong-expert", module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                actions=PONG_ACTIONS, protocol=Protocol())
    before = _files_under(tmp_path)
    for command in (["data", "collect", "--game", "Pong", "--steps", "10", "--out", tmp_path / "data"],
                    ["eval", "score", "--game", "Pong", "--episodes", "1"]):
        line = _one_line_error(capsys, [*command, "--policy", tmp_path / "pong-expert", "--protocol", "frame_skip=2"])
        assert "learned under frame_skip=4, not 2 (the protocol given)" in line
    assert _files_under(tmp_path) == before


def test_a_world_model_refuses_tokens_or_a_tokenizer_other_than_its_own(capsys, tmp_path, frozen_tokenizer,
                                                                        breakout_ds, breakout_tokens):
    """Codes of another tokenizer mean other things: fidelity once scored them at 190 nats/frame."""
    from scaleworld.imagination.env import ImaginationEnv
    from scaleworld.imagination.train import train_policy
    from scaleworld.models.dynamics_config import DynamicsConfig
    from scaleworld.models.encode import encode_dataset
    from scaleworld.models.model_files import TOKENIZER_FILE, save_model
    from scaleworld.models.policy_config import PolicyConfig
    from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig
    from scaleworld.training.config import TrainConfig
    from scaleworld.training.runs import train_dynamics

    torch.manual_seed(1)  # another tokenizer of the same shape
    config = TokenizerConfig(channels=(8, 16, 32, 32))
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    save_model(other / TOKENIZER_FILE, kind="tokenizer", config=config.to_dict(), module=Tokenizer(config),
               extra={"scope": "test", "games": []})
    other_tokens = tmp_path / "other-tokens"
    encode_dataset(tokenizer_dir=other, data_dir=breakout_ds, out=other_tokens, max_residual=float("inf"),
                   progress=False)
    model = tmp_path / "dynamics"
    train_dynamics(token_dirs=[breakout_tokens], out=model, model=DynamicsConfig(width=32, depth=1, heads=2, context=8),
                   train=TrainConfig(steps=2, batch_size=2, warmup_steps=1, eval_every=2, checkpoint_every=2),
                   progress=False)
    learned = "learned the tokens of tokenizer"
    line = _one_line_error(capsys, ["eval", "fidelity", "--dynamics", model, "--tokenizer", other, "--tokens",
                                    other_tokens])
    assert f"the tokenizer in {other} is of tokenizer" in line and learned in line
    with pytest.raises(ScaleworldError, match=learned):
        train_policy(dynamics_dir=model, token_dir=other_tokens, out=tmp_path / "policy", config=PolicyConfig(),
                     train=TrainConfig(steps=1), progress=False)
    with pytest.raises(ScaleworldError, match=learned):
        ImaginationEnv.from_run(model, other_tokens, batch=2)
    assert not (tmp_path / "policy").exists()
    ImaginationEnv.from_run(model, breakout_tokens, batch=2)  # its own tokens are fine


def test_no_command_writes_into_a_studys_finished_job_folder(capsys, tmp_path):
    """A finished job's folder (job.json and done.json) holds the study's results: `expert eval`
    once rewrote a finished expert job's score.json under another protocol."""
    from scaleworld.atari.protocol import Protocol
    from scaleworld.experts.checkpoint import save_expert
    from scaleworld.experts.view import ViewSpec
    from tests.test_experts_checkpoint import PONG_ACTIONS, small_expert

    job = tmp_path / "root" / "expert" / "0123456789abcdef"
    save_expert(job / "expert", module=small_expert(ViewSpec(), 6), game="Pong", view=ViewSpec(),
                actions=PONG_ACTIONS, protocol=Protocol())
    (job / "job.json").write_text('{"kind": "expert"}')
    (job / "done.json").write_text('{"outputs": {}}')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for argv in (["expert", "eval", job / "expert", "--episodes", "1"],
                 ["report", tmp_path / "root", "--json", job / "r.json"],
                 ["data", "collect", "--game", "Pong", "--steps", "10", "--out", job / "data"]):
        line = _one_line_error(capsys, argv)
        assert f"is inside the finished job {job} of a study's run root" in line, line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
