"""The referee's confound controls through a real micro study (conftest.CONFOUND, local executor):
the data-matched control (G x the data, the joint run's exposure per game, scored on the usual
held-out episodes), the joint run at 1/G exposure, and early stopping's second reading."""

from __future__ import annotations

import hashlib
import json
import math

import torch

from scaleworld.data.dataset import OfflineDataset
from scaleworld.data.sampling import split_episodes
from scaleworld.study.expand import build_graph, more_data_seed
from scaleworld.study.spec_load import load_spec
from scaleworld.study.store import RunStore
from scaleworld.training.config import JOINT_SHORT, MATCH_RULES


def _episode_hashes(ds: OfflineDataset, episodes) -> set[str]:
    pixels = ds.data["pixels"]
    return {hashlib.sha256(torch.as_tensor(pixels[int(ds.episode_starts[e]):int(ds.episode_starts[e] +
                                                                                  ds.episode_lengths[e])])
                           .numpy().tobytes()).hexdigest() for e in episodes}


def _jobs(root, kind):
    graph = RunStore(root).read_plan()
    return [(j, root / kind / j.id) for j in graph.by_kind(kind)]


def test_the_data_matched_control_trains_on_g_times_distinct_data_of_its_own_game(confound_study):
    spec, root = confound_study
    collects = _jobs(root, "collect")
    usual = {j.labels["game"]: d for j, d in collects if not j.labels.get("more_data")}
    more = {j.labels["game"]: (j, d) for j, d in collects if j.labels.get("more_data")}
    assert sorted(usual) == sorted(more) == ["Breakout", "Pong"]
    for game, (job, folder) in more.items():
        assert job.config["steps"] == 2 * 240 and job.config["seed"] == more_data_seed(0) != 0
        big = OfflineDataset.open(folder / "dataset")
        small = OfflineDataset.open(usual[game] / "dataset")
        assert len(big.data) == 2 * len(small.data) and big.game == small.game == game
        same = {k: v for k, v in small.manifest["policy"].items() if k != "seed"}
        assert {k: big.manifest["policy"][k] for k in same} == same  # the same policy collected both
        _, held_out = split_episodes(len(small.episode_lengths), val_fraction=0.25, seed=0)
        # not one held-out episode (nor any other) of the usual dataset appears in the larger one
        assert _episode_hashes(big, range(len(big.episode_lengths))).isdisjoint(
            _episode_hashes(small, range(len(small.episode_lengths))))
        assert len(held_out) >= 1

    graph = RunStore(root).read_plan()
    tokens_of = {j.id: j for j in graph.by_kind("tokens")}
    for job, folder in _jobs(root, "dynamics"):
        (mode,) = job.labels["modes"]
        run = json.loads((folder / "run.json").read_text())
        sources = [graph.jobs[next(i for i in tokens_of[t].inputs if graph.jobs[i].kind == "collect")]
                   for t in job.inputs]
        assert all(bool(c.labels.get("more_data")) == (mode == "matched") for c in sources), mode
        steps = {"single": 6, "matched": 6, "joint": 12, "joint_short": 6}[mode]  # joint_short: ceil(12 / 2)
        assert run["train"]["steps"] == steps, mode
    # Every mode is scored on the same tokens and held-out episodes, whatever it trained on.
    fidelity = {}
    for job, folder in _jobs(root, "fidelity"):
        record = json.loads((folder / "fidelity.json").read_text())
        given = [graph.jobs[i] for i in job.inputs if graph.jobs[i].kind == "tokens"]
        more = [any(graph.jobs[i].labels.get("more_data") for i in t.inputs) for t in given]
        # the usual tokens of every game (held out), and a matched run's own (its training-split NLL)
        assert more.count(False) == len(job.labels["games"]) and any(more) == (job.labels["modes"] == ["matched"])
        for g in record["games"].values():
            assert g["train_nll_nats_per_frame"] is not None and g["train_episodes"] >= 1
        for game, g in record["games"].items():
            fidelity.setdefault(game, set()).add((g["held_out_episodes"], g["transitions"]))
    assert all(len(v) == 1 for v in fidelity.values()), fidelity

    for policy, _ in _jobs(root, "policy"):  # matched-mode policies start from the usual tokens
        assert policy.labels["modes"] == ["matched"]
        assert not any(graph.jobs[i].labels.get("more_data") for t in policy.inputs
                       if graph.jobs[t].kind == "tokens" for i in graph.jobs[t].inputs)


def test_every_run_keeps_its_best_checkpoint_and_the_analysis_reads_both(confound_study):
    spec, root = confound_study
    for _, folder in _jobs(root, "dynamics"):
        run = json.loads((folder / "run.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        evaluated = {h["step"]: h["val_loss_latent"] for h in metrics["history"]}
        assert run["best"]["step"] in evaluated
        assert run["best"]["validation_nll"] == min(evaluated.values())
        assert (folder / "dynamics_best.pt").is_file()
    for job, folder in _jobs(root, "fidelity"):
        record = json.loads((folder / "fidelity.json").read_text())
        assert set(record["best"]["games"]) == set(record["games"])
        run = json.loads((root / "dynamics" / job.inputs[0] / "run.json").read_text())
        assert record["best"]["step"] == run["best"]["step"]
        if run["best"]["step"] == run["train"]["steps"]:  # the best is the final: the same figures
            assert record["best"]["games"] == record["games"]
    ((_, folder),) = _jobs(root, "analysis")
    analysis = json.loads((folder / "analysis.json").read_text())
    assert set(analysis["modes"]) == set(analysis["modes_best"]) == {"single", "joint", "matched", "joint_short"}
    assert analysis["comparison_modes"] == {"matched": MATCH_RULES["data"], "joint_short": JOINT_SHORT}
    assert set(analysis["best_steps"]["joint"]["Pong"]) == {"tiny-d1"}
    assert "joint_vs_joint_short" in analysis["fidelity"]["improvement"]


def test_the_report_and_plan_say_what_each_control_holds_equal(confound_study):
    import os
    import subprocess
    import sys

    from .test_study import _sw

    spec, root = confound_study
    report = subprocess.run([sys.executable, "-m", "scaleworld.cli", "report", str(root)], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "250"}).stdout
    (header,) = [line for line in report.splitlines() if "best ckpt" in line]
    assert "regime (best ckpt)" in header and "best step" in header
    (joint,) = [line for line in report.splitlines() if line.startswith("| joint ") and "Pong" in line
                and "inconclusive" in line]
    flat = " ".join(report.split())
    assert "holds equal: the joint run's exposure per game and its count of distinct transitions" in flat
    assert "breaks the Atari 100k budget on purpose" in flat
    assert "joint vs joint_short" in flat
    plan = _sw("plan", spec, f"run_root={root}").stdout
    rows = {line.split("|")[1].strip(): line for line in plan.splitlines() if line.count("|") > 4}
    # the matched control trains as long as a single run on twice the frames: half the passes
    single = float(rows["dynamics single"].split("|")[-2])
    matched = float(rows["dynamics matched"].split("|")[-2])
    assert math.isclose(matched, single / 2, abs_tol=0.11), (single, matched)


def test_the_new_options_leave_every_other_identity_alone(tmp_path):
    from pathlib import Path

    smoke = Path(__file__).resolve().parents[1] / "studies" / "smoke.yaml"
    base = build_graph(load_spec(smoke))
    assert base.jobs == build_graph(load_spec(smoke, ["train.validation_fraction=0.0", "modes.joint_short=false"])).jobs
    ids = {j.id for j in base.jobs.values()}
    data = build_graph(load_spec(smoke, ["modes.matched.rule=data"]))
    added = {j.kind for j in data.jobs.values() if j.id not in ids}
    # the data rule adds the larger datasets and their tokens, the matched runs on them and what reads them
    assert added == {"collect", "tokens", "dynamics", "fidelity", "policy", "control", "analysis"}
    kept = {j.id for j in data.by_kind("dynamics") if j.labels["modes"] != ["matched"]}
    assert kept <= ids
    short = build_graph(load_spec(smoke, ["modes.joint_short=true"]))
    (joint_short,) = [j for j in short.by_kind("dynamics") if "joint_short" in j.labels["modes"]
                      and j.labels["size"] == "tiny-d1" and j.labels["seed"] == 0]
    assert joint_short.config["train"]["steps"] == 40 and joint_short.config["model"]["games"] == ["Pong", "Breakout"]
    validated = build_graph(load_spec(smoke, ["train.validation_fraction=0.2"]))
    changed = {j.kind for j in validated.jobs.values() if j.id not in ids}
    assert "collect" not in changed and "tokenizer" not in changed and "dynamics" in changed


def test_the_episode_bootstrap_option_enters_the_identity_only_when_chosen():
    from pathlib import Path

    smoke = Path(__file__).resolve().parents[1] / "studies" / "smoke.yaml"
    (off,) = build_graph(load_spec(smoke)).by_kind("analysis")
    (on,) = build_graph(load_spec(smoke, ["analysis.episode_bootstrap=true"])).by_kind("analysis")
    (explicit_off,) = build_graph(load_spec(smoke, ["analysis.episode_bootstrap=false"])).by_kind("analysis")
    assert off.id == explicit_off.id != on.id and on.config["rule"]["episode_bootstrap"] is True
