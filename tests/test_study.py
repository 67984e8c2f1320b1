"""Study specs, the job graph, the run store and the local executor, on a micro study of real jobs."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from scaleworld.data.files import write_json_atomic
from scaleworld.study.expand import build_graph
from scaleworld.study.graph import Graph
from scaleworld.study.jobs import EXIT_LOCKED, run_job
from scaleworld.study.local import run_local
from scaleworld.study.spec import SpecError
from scaleworld.study.spec_load import load_spec
from scaleworld.study.store import JobLock, RunStore
from scaleworld.study.variants import expand_variants

from .conftest import MICRO


def _spec_file(tmp_path, text=MICRO, name="micro.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _sw(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scaleworld.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown key 'train.stepz': did you mean 'train.steps'?"),
    ("modes.matched.rulle=x", "unknown key 'modes.matched.rulle': did you mean 'modes.matched.rule'?"),
    ("train.steps=abc", "wrong type for 'train.steps'"),
    ("games=[Pongg]", "games[0]: unknown game 'Pongg': did you mean 'Pong'?"),
    ("models.ladder=huge", "models.ladder: unknown ladder 'huge'"),
    ("models.sizes=[tiny-d9]", "models.sizes[0]: unknown model size 'tiny-d9'"),
    ("data.steps=0", "data.steps: 0 is impossible"),
    ("fidelity.horizon=9", "fidelity.horizon: context_steps + horizon (2 + 9) must fit in models.context (8)"),
    ("modes.joint=true", "modes.joint: a joint model needs one shared tokenizer") ,
    ("tokenizer.scope=sometimes", "tokenizer.scope: use shared or per_game"),
    ("tokenizer.max_residual=0", "tokenizer.max_residual: 0.0 must be positive"),
    ("launcher.workers=0", "launcher.workers: 0: run at least 1 job at once"),
    ("tokenizer.channels=[]", "tokenizer.channels: tokenizer channels []: give 1 to 6 widths"),
    ("analysis.min_sizes=2", "analysis: regime rule min_sizes=2"),
    ('sweep.zip={"train.lr": [1, 2], "seeds": [[0]]}', "sweep.zip: all lists must have the same length"),
    ("train.steps", "override 'train.steps': write overrides as key=value"),
    ("control.upper_anchor=expert", "control.upper_anchor: expert.source=random has no expert score"),
    ("control.upper_anchor=best", "control.upper_anchor: use expert or human"),
    ("policy.sizes=[tiny-d2]", "policy.sizes[0]: tiny-d2 is not one of the study's sizes (tiny-d1)"),
    ("policy.modes=[both]", "policy.modes[0]: unknown mode 'both'"),
    ("policy.gamma=1.5", "policy: policy.gamma=1.5 must be in (0, 1]"),
    ("control.episodes=0", "control.episodes: 0 is impossible"),
])
def test_spec_errors_are_one_line_with_the_key_path_exit_2_and_write_nothing(tmp_path, override, message):
    spec = _spec_file(tmp_path, MICRO.replace("tokenizer: {", "tokenizer: {scope: per_game, ")
                      if "joint" in override else MICRO)
    proc = _sw("run", spec, override, f"run_root={tmp_path / 'root'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "root").exists()


def test_missing_values_and_bad_files_are_named(tmp_path):
    with pytest.raises(SpecError, match="missing value for 'name'"):
        load_spec(_spec_file(tmp_path, MICRO.replace("name: micro", "")))
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_spec_file(tmp_path, "name: [unclosed"))
    with pytest.raises(SpecError, match="a spec is a mapping"):
        load_spec(_spec_file(tmp_path, "- just\n- a list\n"))
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_run_root_defaults_to_runs_name_and_is_overridable(tmp_path):
    assert load_spec(_spec_file(tmp_path)).run_root == "runs/micro"
    assert load_spec(_spec_file(tmp_path), [f"run_root={tmp_path}/x"]).run_root == f"{tmp_path}/x"


def test_grid_zip_and_ablations_expand_into_variants(tmp_path):
    text = MICRO + """
sweep:
  grid: {train.lr: [0.001, 0.0003], seeds: [[0], [1]]}
  zip: {train.batch_size: [4, 8], train.warmup_steps: [1, 2]}
ablations:
  longer: {train.steps: 12}
"""
    spec = load_spec(_spec_file(tmp_path, text))
    variants = expand_variants(spec)
    assert len(variants) == 2 * 2 * 2 + 1
    combos = {(v.spec.train.lr, tuple(v.spec.seeds), v.spec.train.batch_size, v.spec.train.warmup_steps)
              for v in variants[:-1]}
    assert len(combos) == 8
    assert all((bs, w) in {(4, 1), (8, 2)} for *_, bs, w in combos)  # zipped, not crossed
    assert variants[-1].name == "longer" and variants[-1].spec.train.steps == 12
    graph = build_graph(spec)
    assert graph.counts()["collect"] == 1  # every variant shares the data...
    assert graph.counts()["dynamics"] == 9  # ...but trains its own model
    with pytest.raises(SpecError, match="ablations.bad: unknown key 'train.stepz'"):
        load_spec(_spec_file(tmp_path, MICRO + "ablations:\n  bad: {train.stepz: 1}\n"))


def test_identities_are_stable_and_change_exactly_downstream_of_a_setting(tmp_path):
    path = _spec_file(tmp_path)
    base = build_graph(load_spec(path))
    again = build_graph(load_spec(path, ["name=other", f"run_root={tmp_path}/elsewhere"]))
    assert list(base.jobs) == list(again.jobs)  # names and folders are not part of identities

    def ids(graph):
        return {kind: {j.id for j in graph.by_kind(kind)} for kind in graph.counts()}

    lr = ids(build_graph(load_spec(path, ["train.lr=0.001"])))
    b = ids(base)
    assert lr["collect"] == b["collect"] and lr["tokenizer"] == b["tokenizer"] and lr["tokens"] == b["tokens"]
    assert lr["dynamics"].isdisjoint(b["dynamics"]) and lr["fidelity"].isdisjoint(b["fidelity"])
    steps = ids(build_graph(load_spec(path, ["data.steps=300"])))
    assert all(steps[k].isdisjoint(b[k]) for k in b if k != "anchor")  # new data: everything downstream changes
    assert steps["anchor"] == b["anchor"]  # the random and upper anchors do not depend on the data
    horizon = ids(build_graph(load_spec(path, ["fidelity.horizon=1"])))
    assert horizon["dynamics"] == b["dynamics"] and horizon["fidelity"].isdisjoint(b["fidelity"])


def test_the_tokenizer_budget_defaults_to_frames_of_every_game_it_learns(tmp_path):
    from scaleworld.models.tokenizer_config import FRAMES_PER_GAME

    path = _spec_file(tmp_path)
    two = ["tokenizer.steps=null", "games=[Pong, Breakout]"]  # MICRO's tokenizer batch: 8 frames
    (shared,) = build_graph(load_spec(path, two)).by_kind("tokenizer")
    assert shared.config["train"]["steps"] == -(-FRAMES_PER_GAME * 2 // 8)
    per_game = build_graph(load_spec(path, [*two, "tokenizer.scope=per_game"])).by_kind("tokenizer")
    assert [t.config["train"]["steps"] for t in per_game] == [FRAMES_PER_GAME // 8] * 2


def _outputs(root: Path) -> dict:
    """Everything a study produced that must not depend on interruptions."""
    out = {}
    for done in sorted(root.glob("*/*/done.json")):
        kind, job = done.parent.parent.name, done.parent.name
        d = done.parent
        if kind == "collect":
            out[job] = json.loads((d / "dataset" / "manifest.json").read_text())["files"]
        elif kind == "tokens":
            out[job] = json.loads((d / "tokens" / "manifest.json").read_text())["files"]
        elif kind in ("tokenizer", "dynamics"):
            for name in (f"{kind}.pt", "dynamics_best.pt"):  # the best checkpoint of runs that kept one
                if (d / name).is_file():
                    state = torch.load(d / name, weights_only=False)["state_dict"]
                    out[job, name] = {k: v.tolist() for k, v in state.items()}
        elif kind == "fidelity":
            record = json.loads((d / "fidelity.json").read_text())
            out[job] = {"games": record["games"], "best": record.get("best", {}).get("games")}
        elif kind == "analysis":
            record = json.loads((d / "analysis.json").read_text())
            out[job] = {"modes": record["modes"], "modes_best": record.get("modes_best")}
        elif kind == "policy":
            state = torch.load(d / "policy.pt", weights_only=False)["state_dict"]
            out[job] = {k: v.tolist() for k, v in state.items()}
        elif kind == "control":
            out[job] = json.loads((d / "control.json").read_text())["normalised"]
        elif kind == "anchor":
            out[job] = json.loads((d / "anchor.json").read_text())["random"]
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The micro study run once, uninterrupted, through the CLI; finished jobs keep their checkpoints
    (the tests below redo jobs from them)."""
    tmp = tmp_path_factory.mktemp("study")
    spec = _spec_file(tmp, MICRO + "launcher: {keep_checkpoints: true}\n")
    proc = _sw("run", spec, f"run_root={tmp / 'root'}", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp, spec, tmp / "root"


def test_a_study_runs_end_to_end_and_status_reports_it(finished):
    tmp, spec, root = finished
    outputs = _outputs(root)
    assert len(outputs) == 9  # collect, tokenizer, tokens, dynamics, fidelity, anchor, policy, control, analysis
    status = _sw("status", root)
    assert status.returncode == 0 and "dynamics" in status.stdout and "failed" in status.stdout
    analysis = next(iter(v for k, v in outputs.items() if isinstance(v, dict) and "modes" in v))
    assert analysis["modes"]["single"]["Pong"]["regime"] == "inconclusive"  # one size, one seed
    assert analysis["modes_best"] is None  # no validation split: final checkpoints only


def test_rerunning_skips_finished_jobs(finished):
    tmp, spec, root = finished
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/*/done.json")}
    store = RunStore(root)
    graph = store.read_plan()
    ran = []
    counts = run_local(store, graph, progress=False, on_job=lambda job, state: ran.append(job.id))
    assert ran == [] and counts == {"done": 9, "failed": 0, "blocked": 0}
    assert stamps == {p: p.stat().st_mtime_ns for p in root.glob("*/*/done.json")}


def test_jobs_forked_from_the_job_server_give_what_a_new_interpreter_per_job_gives(tmp_path, finished):
    """The CLI's run forks every job from one process that imported torch and the rest once; the same
    study with a new interpreter per job ends with identical outputs."""
    _, spec, reference = finished
    store, graph = _planned(spec, tmp_path / "root")
    assert run_local(store, graph, progress=False, start="fresh") == {"done": 9, "failed": 0, "blocked": 0}
    assert _outputs(tmp_path / "root") == _outputs(reference)
    with pytest.raises(ValueError, match="start='spawned' is not one of"):
        run_local(store, graph, progress=False, start="spawned")


def test_spec_prints_every_key_under_the_schemas_comment_and_reads_back_as_the_same_study(tmp_path):
    from omegaconf import OmegaConf

    smoke = Path(__file__).resolve().parent.parent / "studies" / "smoke.yaml"
    proc = _sw("spec", smoke, "train.steps=7")
    assert proc.returncode == 0, proc.stderr
    assert "  # Gradient steps of each single-game run.\n  steps: 7\n" in proc.stdout
    assert "  # Actions are ids in ALE's full 18-action space" in proc.stdout  # the protocol's own words
    (tmp_path / "resolved.yaml").write_text(proc.stdout)
    again, original = load_spec(tmp_path / "resolved.yaml"), load_spec(smoke, ["train.steps=7"])
    assert OmegaConf.to_container(again) == OmegaConf.to_container(original)
    defaults = _sw("spec")
    assert defaults.returncode == 0 and 'name: "???"' in defaults.stdout and "  steps: 2000\n" in defaults.stdout


def test_status_lists_the_folder_of_a_models_settings_and_imagination_loads_the_model_from_it(finished):
    from scaleworld.imagination.env import ImaginationEnv

    _, _, root = finished
    proc = _sw("status", root, "--list", "dynamics", "game=Pong", "size=tiny-d1", "seed=0", "mode=single")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    folder, state, what = line.split("\t")
    assert state == "done" and what == "dynamics size=tiny-d1 seed=0 games=Pong mode=single"
    (tokens,) = _sw("status", root, "--list", "tokens", "game=Pong").stdout.splitlines()
    env = ImaginationEnv.from_run(folder, Path(tokens.split("\t")[0]) / "tokens", batch=2, context_steps=2)
    assert env.rollout(3, break_when_any_done=False).batch_size == torch.Size([2, 3])  # that model, imagining
    none = _sw("status", root, "--list", "dynamics", "game=Breakout")
    assert none.returncode == 1 and none.stdout == "" and "no dynamics job matches game=Breakout" in none.stderr
    for args, message in ((["dynamics", "colour=red"], "jobs are selected by game, size, seed, mode"),
                          (["dynamo"], "--list dynamo: no such job kind"),
                          (["dynamics", "Pong"], "write each selection as key=value")):
        bad = _sw("status", root, "--list", *args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_ctrl_c_stops_the_driver_and_leaves_its_forked_job_resumable_not_failed(tmp_path):
    overrides = [f"run_root={tmp_path / 'root'}", "train.steps=100000", "train.checkpoint_every=20",
                 "train.eval_every=100000"]
    spec = _spec_file(tmp_path)
    store, graph = RunStore(tmp_path / "root"), build_graph(load_spec(spec, overrides))
    (dynamics,) = graph.by_kind("dynamics")
    # As from a terminal: SIGINT handled (a shell's background job, CI's among them, would ignore it)
    err = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "scaleworld.cli", "run", str(spec), *overrides, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (store.job_dir(dynamics) / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
    assert proc.wait(timeout=120) == 130
    err.close()
    assert ("interrupted: finished jobs are kept (each job's done.json); the same `scaleworld run` resumes the rest, "
            "training from its last checkpoint") in (tmp_path / "stderr.txt").read_text()
    assert store.state(dynamics) == "pending" and store.failure(dynamics) is None
    assert (store.job_dir(dynamics) / "checkpoint.pt").is_file()  # the next run resumes from it


def test_the_job_server_outlives_a_failed_job_and_logs_each_job_apart(tmp_path, finished):
    from scaleworld.study.forked import JobServer

    _, _, reference = finished
    store = RunStore(reference)
    (collect,) = store.read_plan().by_kind("collect")
    env = {**os.environ, "RL_LOGGING_LEVEL": "WARNING"}
    with JobServer(env=env, log=tmp_path / "server.log") as server:
        bad = server.start(root=reference, ids=["no-such-job"], env=env, log=tmp_path / "bad.txt")
        assert bad.wait() == 1 and "KeyError: 'no-such-job'" in (tmp_path / "bad.txt").read_text()
        done = server.start(root=reference, ids=[collect.id], env=env, log=tmp_path / "done.txt")
        assert done.wait() == 0 and bad.pid != done.pid  # finished already: nothing to do, status 0
        assert "Traceback" not in (tmp_path / "done.txt").read_text()


def test_a_job_after_a_source_edit_runs_in_a_new_interpreter_not_on_mixed_code(tmp_path, finished):
    """The server imported scaleworld at its start; a fork after an edit would run the server's
    modules beside edited ones the job imports itself (a mid-study edit once failed every later
    dynamics job with a TypeError): after an edit the job runs in a new interpreter instead."""
    import scaleworld.study.records as edited
    from scaleworld.study.forked import JobServer

    _, _, reference = finished
    (collect,) = RunStore(reference).read_plan().by_kind("collect")
    env = {**os.environ, "RL_LOGGING_LEVEL": "WARNING"}
    path = Path(edited.__file__)
    stamp = path.stat()
    with JobServer(env=env, log=tmp_path / "server.log") as server:
        before = server.start(root=reference, ids=[collect.id], env=env, log=tmp_path / "before.txt")
        assert before.wait() == 0 and (tmp_path / "before.txt").read_text() == ""
        try:
            os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))  # as an editor's save
            after = server.start(root=reference, ids=[collect.id], env=env, log=tmp_path / "after.txt")
            assert after.wait() == 0
        finally:
            os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert "this job runs in a new interpreter" in (tmp_path / "after.txt").read_text()


@pytest.mark.parametrize("kill_after_done, workers", [(1, 1), (3, 1), (3, 2)])
def test_killing_the_driver_loses_nothing_and_the_rerun_ends_identical(tmp_path, finished, kill_after_done, workers):
    _, spec, reference = finished
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "scaleworld.cli", "run", str(spec), f"run_root={root}", f"launcher.workers={workers}",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(root.glob("*/*/done.json"))) < kill_after_done:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the job it was running
    proc.wait()
    finished_before = {p.parent.name for p in root.glob("*/*/done.json")}
    assert len(finished_before) >= kill_after_done
    again = _sw("run", spec, f"run_root={root}", "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _outputs(root) == _outputs(reference)


def _ran(root: Path) -> dict[str, dict]:
    """kind -> {start, end (seconds since the epoch), cuda_visible_devices} of each finished job."""
    import datetime

    out = {}
    for done in root.glob("*/*/done.json"):
        record = json.loads(done.read_text())
        end = datetime.datetime.fromisoformat(record["finished_utc"]).timestamp()
        out[record["kind"]] = {"start": end - record["seconds"], "end": end,
                               "cuda_visible_devices": record["cuda_visible_devices"]}
    return out


def test_two_workers_run_independent_jobs_at_once_pin_gpu_jobs_and_end_identical(tmp_path, finished):
    _, spec, reference = finished
    root = tmp_path / "root"
    # One "GPU" id: on this CPU machine a pinned job finds no CUDA device and runs on the CPU, but
    # what it was given is recorded, so the pinning itself is what this checks.
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "run", str(spec), f"run_root={root}",
                           "launcher.workers=2"], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "7"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _outputs(root) == _outputs(reference)
    ran = _ran(root)
    # collect and anchor have no inputs: both started before either ended
    assert max(ran["collect"]["start"], ran["anchor"]["start"]) < min(ran["collect"]["end"], ran["anchor"]["end"])
    assert {k: r["cuda_visible_devices"] for k, r in ran.items()} == {
        "collect": "", "anchor": "", "analysis": "", "tokenizer": "7", "tokens": "7", "dynamics": "7",
        "fidelity": "7", "policy": "7", "control": "7"}
    # stdout is a pipe, as a log file would be: a plain line per finished job, numbered
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split("/")[0] for line in lines] == [f"[{i}" for i in range(1, 10)]
    assert any(line.startswith("[9/9] analysis") for line in lines), lines


def _planned(spec: Path, root: Path) -> tuple[RunStore, Graph]:
    """The spec's graph, its plan written to `root` as `run` writes it (no job run yet)."""
    from omegaconf import OmegaConf

    s = load_spec(spec, [f"run_root={root}"])
    graph = build_graph(s)
    store = RunStore(root)
    store.write_plan(graph, OmegaConf.to_yaml(s), keep_checkpoints=s.launcher.keep_checkpoints)
    return store, graph


def test_a_locked_job_is_not_run_twice(finished, tmp_path):
    tmp, spec, _ = finished
    root = tmp_path / "root"
    store, graph = _planned(spec, root)
    collect = graph.by_kind("collect")[0]
    lock = JobLock(store.prepare(collect) / "lock")
    assert lock.acquire()
    try:
        assert store.state(collect) == "running"
        assert run_job(root, collect.id) == EXIT_LOCKED
        assert not store.is_done(collect)
    finally:
        lock.release()
    assert store.state(collect) == "pending"


def test_the_executor_waits_for_a_job_another_driver_holds_and_finishes_it_if_that_driver_did_not(
        finished, tmp_path):
    _, spec, reference = finished
    root = tmp_path / "root"
    store, graph = _planned(spec, root)
    collect = graph.by_kind("collect")[0]
    lock = JobLock(store.prepare(collect) / "lock")  # the other driver, which dies without finishing
    assert lock.acquire()
    result = {}
    driver = threading.Thread(target=lambda: result.update(run_local(store, graph, workers=2, progress=False)))
    driver.start()
    try:
        deadline = time.monotonic() + 120
        while not store.is_done(graph.by_kind("anchor")[0]):  # independent work goes on meanwhile
            assert driver.is_alive() and time.monotonic() < deadline
            time.sleep(0.2)
        assert not store.is_done(collect) and driver.is_alive()
    finally:
        lock.release()
    driver.join(timeout=300)
    assert result == {"done": 9, "failed": 0, "blocked": 0}
    assert _outputs(root) == _outputs(reference)


def test_the_store_reads_all_states_at_once_as_it_reads_each(tmp_path):
    from omegaconf import OmegaConf

    root = tmp_path / "root"
    s = load_spec(_spec_file(tmp_path), [f"run_root={root}"])
    graph = build_graph(s)
    store = RunStore(root)
    jobs = list(graph.jobs.values())
    assert set(store.states(jobs).values()) == {"pending"}  # no run root yet
    store.write_plan(graph, OmegaConf.to_yaml(s), keep_checkpoints=s.launcher.keep_checkpoints)
    done, failed, running, stale_lock, stale_failure = jobs[:5]
    for job in jobs[:5]:
        store.prepare(job)
    from scaleworld.study.kinds import STAGES

    for job in (done, stale_failure):  # a finished job's artifact, then its done.json
        (store.job_dir(job) / STAGES[job.kind].ARTIFACT).write_text("")
    write_json_atomic(store.job_dir(done) / "done.json", {"outputs": {}})
    write_json_atomic(store.job_dir(failed) / "failed.json", {"reason": "a reason"})
    lock = JobLock(store.job_dir(running) / "lock")
    assert lock.acquire()
    (store.job_dir(stale_lock) / "lock").write_text("123\n")  # its holder died
    write_json_atomic(store.job_dir(stale_failure) / "failed.json", {"reason": "an old one"})
    write_json_atomic(store.job_dir(stale_failure) / "done.json", {"outputs": {}})  # then it succeeded
    try:
        states = store.states(jobs)
        assert states == {job.id: store.state(job) for job in jobs}
        assert [states[j.id] for j in jobs[:5]] == ["done", "failed", "running", "pending", "done"]
    finally:
        lock.release()


def test_a_failed_job_does_not_stop_independent_jobs(tmp_path):
    text = MICRO.replace("games: [Pong]", "games: [Pong, Breakout]").replace(
        "tokenizer: {", "tokenizer: {scope: per_game, ")
    spec = load_spec(_spec_file(tmp_path, text), [f"run_root={tmp_path / 'root'}"])
    store = RunStore(Path(spec.run_root))
    graph = build_graph(spec)
    from omegaconf import OmegaConf

    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    for job in graph.by_kind("collect"):
        assert run_job(store.root, job.id) == 0
    pong = next(j for j in graph.by_kind("collect") if j.labels["game"] == "Pong")
    (store.job_dir(pong) / "dataset" / "storage" / "pixels.memmap").write_bytes(b"")  # damage Pong's data
    counts = run_local(store, graph, progress=False)
    assert counts["failed"] == 1  # Pong's tokenizer
    assert counts["blocked"] == 5  # Pong's tokens, dynamics, fidelity, policy, control
    # the analysis runs on what finished, and names what it went without and why
    (analysis,) = graph.by_kind("analysis")
    assert store.is_done(analysis)
    missing = json.loads((store.job_dir(analysis) / "analysis.json").read_text())["missing"]
    assert missing["games"] == ["Pong"] and missing["by_kind"] == {"fidelity": {"failed": 0, "not_run": 1},
                                                                   "control": {"failed": 0, "not_run": 1}}
    assert len(missing["reasons"]) == 1 and missing["reasons"][0].startswith("tokenizer games=Pong: DatasetError")
    # what Pong could change: each regime count, and the aggregates of one game of two (unbounded)
    assert [(r["mode"], r["missing"]) for r in missing["could_change"]["regimes"]] == [("single", ["Pong"])]
    assert {(r["low"], r["high"]) for r in missing["could_change"]["scores"]} == {(None, None)}
    report = _sw("report", store.root, "--width", "300")
    assert "analysis of what finished (base): 2 of its 6 inputs missing" in report.stdout, report.stdout
    assert "regimes of single: inconclusive 1 of 1 games; each count could gain up to 1 (Pong)" in report.stdout
    assert "with Pong at any value: -unbounded to +unbounded" in report.stdout
    breakout = [j for j in graph.jobs.values() if j.labels.get("game") == "Breakout"
                or j.labels.get("games") == ["Breakout"]]
    assert breakout and all(store.is_done(j) for j in breakout)
    # launcher.keep_checkpoints is false by default: a finished training job keeps its model file only
    for job in breakout:
        if job.kind in ("tokenizer", "dynamics", "policy"):
            folder = store.job_dir(job)
            assert (folder / store.artifact(job)).is_file() and not (folder / "checkpoint.pt").exists(), job.kind
    status = _sw("status", store.root)
    assert status.returncode == 1  # a job failed
    assert "failed tokenizer games=Pong" in " ".join(status.stdout.split()) and "DatasetError" in status.stdout
    tokenizer = next(j for j in graph.by_kind("tokenizer") if j.labels["games"] == ["Pong"])
    assert f"(log: {store.job_dir(tokenizer) / 'log.txt'})" in " ".join(status.stdout.split())
    # Pong's data collected again: the rest of Pong runs, and the analysis, stale now, runs again on everything
    import shutil

    shutil.rmtree(store.job_dir(pong))
    assert store.is_done(analysis)  # nothing it went without has finished yet
    counts = run_local(store, graph, progress=False)
    assert counts == {"done": len(graph.jobs), "failed": 0, "blocked": 0}
    assert json.loads((store.job_dir(analysis) / "analysis.json").read_text())["missing"]["inputs"] == 0


def _signalled_job(store, job, *, as_slurm_task: bool, ready) -> int:
    """Run `job` in a subprocess whose SIGUSR2 handler exits as submitit's requeue does (after the
    requeue, not made here), send SIGUSR2 once `ready()`, and return the exit status.
    as_slurm_task: run it as the SLURM executor's task (`JobCall`), else plain `run_job`."""
    call = ("from scaleworld.study.slurm import JobCall; JobCall(sys.argv[1], sys.argv[2])()" if as_slurm_task
            else "from scaleworld.study.jobs import run_job; sys.exit(run_job(sys.argv[1], sys.argv[2]))")
    code = f"import signal, sys; signal.signal(signal.SIGUSR2, lambda *_: sys.exit(-1)); {call}"
    proc = subprocess.Popen([sys.executable, "-c", code, str(store.root), job.id], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "RL_LOGGING_LEVEL": "WARNING"})
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR2)
    return proc.wait(timeout=60)


def test_a_requeued_job_is_not_failed_any_other_exit_is_and_so_is_a_killed_one(tmp_path):
    spec = load_spec(_spec_file(tmp_path), [f"run_root={tmp_path / 'root'}", "train.steps=100000",
                                            "train.checkpoint_every=20", "train.eval_every=100000"])
    store = RunStore(Path(spec.run_root))
    graph = build_graph(spec)
    from omegaconf import OmegaConf

    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    for kind in ("collect", "tokenizer", "tokens"):
        assert run_job(store.root, graph.by_kind(kind)[0].id) == 0
    (dynamics,) = graph.by_kind("dynamics")
    folder = store.job_dir(dynamics)
    # As a SLURM task, SystemExit on the time-limit signal is submitit's requeue: resumable, not failed.
    assert _signalled_job(store, dynamics, as_slurm_task=True, ready=(folder / "checkpoint.pt").exists) == 255
    assert store.state(dynamics) == "pending" and store.failure(dynamics) is None
    # Outside one, the same SystemExit is not a requeue: the job failed, and says so.
    holders = lambda: len((folder / "lock").read_text().split())  # noqa: E731 - pids that took the lock
    assert _signalled_job(store, dynamics, as_slurm_task=False, ready=lambda: holders() == 2) == 1
    assert store.failure(dynamics) == "SystemExit: -1"

    # The local executor's job process killed outright (as the OOM killer would): recorded as failed.
    result = {}
    driver = threading.Thread(target=lambda: result.update(run_local(store, graph, progress=False)))
    driver.start()
    deadline = time.monotonic() + 180
    while holders() < 3:  # the third holder's pid
        assert driver.is_alive() and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(int((folder / "lock").read_text().split()[-1]), signal.SIGKILL)
    driver.join(timeout=120)
    # fidelity, policy and control wait on it; the analysis runs on what finished (the anchor)
    assert result == {"done": 5, "failed": 1, "blocked": 3}
    assert store.failure(dynamics).startswith("its process exited with status -9 unfinished; see ")
    assert store.is_done(graph.by_kind("anchor")[0])  # independent work still ran


def test_a_ppo_expert_stage_trains_scores_and_feeds_collection(tmp_path):
    ppo = "expert: {source: ppo, frames: 1024, num_envs: 2, episodes: 1}"
    spec = load_spec(_spec_file(tmp_path, MICRO.replace("expert: {source: random}", ppo)),
                     [f"run_root={tmp_path / 'root'}"])
    graph = build_graph(spec)
    (expert,) = graph.by_kind("expert")
    (collect,) = graph.by_kind("collect")
    assert collect.inputs == [expert.id] and collect.config["policy"] == {
        "source": "ppo", "sampling": "sample", "epsilon": 0.0}
    store = RunStore(Path(spec.run_root))
    from omegaconf import OmegaConf

    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    assert run_job(store.root, expert.id) == 0, (store.job_dir(expert) / "failed.json").read_text()
    assert run_job(store.root, collect.id) == 0, (store.job_dir(collect) / "failed.json").read_text()
    score = json.loads((store.job_dir(expert) / "expert" / "score.json").read_text())
    assert len(score["returns"]) == 1
    manifest = json.loads((store.job_dir(collect) / "dataset" / "manifest.json").read_text())
    assert manifest["policy"]["sha256"] and manifest["policy"]["score"]["mean"] == score["mean"]
    assert manifest["policy"]["sampling"] == "sample"
    other = build_graph(load_spec(_spec_file(tmp_path, MICRO.replace(
        "expert: {source: random}", "expert: {source: ppo, frames: 1024, num_envs: 2, episodes: 1, epsilon: 0.1}"))))
    assert other.by_kind("expert")[0].id == expert.id and other.by_kind("collect")[0].id != collect.id


def test_report_reads_the_run_root_and_prints_plain_ascii_off_a_terminal(finished, tmp_path):
    _, _, root = finished
    proc = _sw("report", root, "--width", "110", "--json", tmp_path / "report.json", "--csv", tmp_path / "nll.csv",
               "--figures", tmp_path / "figures")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "figures" / "scaling_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "nll.csv").read_text().splitlines()
    assert rows[0].startswith("variant,mode,game,size") and rows[1].startswith("base,single,Pong,tiny-d1,")
    assert len(rows) == 2
    assert proc.stdout.isascii()
    text = " ".join(proc.stdout.split())
    assert "scaling regimes" in text and "| single | Pong | inconclusive |" in text
    assert "partial results" not in text
    assert "normalised control scores (base): aggregates over games" in text and "upper anchor: human (Pong)" in text
    data = json.loads((tmp_path / "report.json").read_text())
    (nll,) = data["curves"]["single"]["Pong"]["tiny-d1"]["nll"]
    fidelity = next(root.glob("fidelity/*/fidelity.json"))
    assert nll == json.loads(fidelity.read_text())["games"]["Pong"]["nll_nats_per_frame"]
    control = json.loads(next(root.glob("control/*/control.json")).read_text())["normalised"]["mean"]
    assert data["control"]["games"]["base"]["single"]["tiny-d1"]["Pong"]["normalised"] == control
    assert data["regimes"]["base"]["scores"]["aggregates"]["single"]["tiny-d1"]["games"] == {"Pong": control}
    (row,) = (tmp_path / "nll_control.csv").read_text().splitlines()[1:]
    assert row.startswith("base,single,Pong,tiny-d1,0,0,")
    # the two exports join on the keys they share, and name the folders their numbers came from
    import csv

    key = lambda r: (r["variant"], r["mode"], r["game"], r["size"], r["seed"])  # noqa: E731
    nll_rows = list(csv.DictReader((tmp_path / "nll.csv").open()))
    joined = [(n, c) for n in nll_rows for c in csv.DictReader((tmp_path / "nll_control.csv").open())
              if key(n) == key(c)]
    assert len(joined) == 1 and joined[0][0]["reading"] == "final"
    assert (root / "dynamics" / joined[0][0]["dynamics_job"] / "dynamics.pt").is_file()
    assert (root / "fidelity" / joined[0][0]["job"] / "fidelity.json").is_file()
    # The tokens every number rests on: the tokenizer's figures for Pong against the gate, and pictures.
    (tok,) = data["tokenizers"]
    assert tok["game"] == "Pong" and tok["max_residual"] == 1e6 and tok["passed"] is True
    assert tok["quality"]["frames_from"] == "held_out" and f"{tok['quality']['residual_fraction']:.3f}" in text
    assert "open-loop PSNR (dB)" in text and set(data["open_loop"]["single"]["Pong"]["sizes"]) == {"tiny-d1"}
    assert (tmp_path / "figures" / "frames_Pong.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_frame_grid_shows_reconstructions_and_open_loop_rollouts_of_the_study(finished):
    from scaleworld.models.model_files import load_tokenizer
    from scaleworld.report.frames import frame_panels

    _, _, root = finished
    store = RunStore(root)
    graph = store.read_plan()
    (tokens,) = graph.by_kind("tokens")
    panels = frame_panels(store, graph, tokens, frames=8)
    labels = [label for label, _ in panels]
    assert labels[:2] == ["held-out frames", "decode(encode(x))"]
    assert labels[2:] == ["rollout 1: real", "imagined: single tiny-d1 seed 0", "tokenizer alone"] + [
        "rollout 2: real", "imagined: single tiny-d1 seed 0", "tokenizer alone"]
    tokenizer, _ = load_tokenizer(store.job_dir(graph.by_kind("tokenizer")[0]))
    real, recon = panels[0][1], panels[1][1]
    assert real.shape[1:] == (64, 64, 3) and torch.equal(recon, tokenizer.decode(tokenizer.encode(real)))
    assert all(images.shape == (2, 64, 64, 3) for _, images in panels[2:])  # fidelity.horizon = 2 steps
    assert torch.equal(panels[4][1], tokenizer.decode(tokenizer.encode(panels[2][1])))  # the floor: real, re-coded


def test_a_tokenizer_below_the_gate_fails_its_tokens_job_and_nothing_reads_its_tokens(tmp_path):
    spec = _spec_file(tmp_path)
    root = tmp_path / "root"
    proc = _sw("run", spec, f"run_root={root}", "tokenizer.max_residual=0.5", "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status = " ".join(_sw("status", root).stdout.split())
    assert "failed tokens game=Pong" in status and "TokenizerQualityError" in status
    assert "of Pong's frame variance unexplained" in status and "allowed 0.5" in status and "train it longer" in status
    store = RunStore(root)
    graph = store.read_plan()
    assert not list(root.glob("tokens/*/tokens")) and not list(root.glob("dynamics/*/done.json"))
    assert store.is_done(graph.by_kind("tokenizer")[0])  # the tokenizer is kept: a higher gate needs no retraining
    text = " ".join(_sw("report", root, "--width", "200").stdout.split())
    assert "| shared | Pong |" in text and "| <= 0.5 | FAIL |" in text
    # the analysis ran on what finished (nothing but the anchor) and says what it went without
    assert store.is_done(graph.by_kind("analysis")[0])
    assert "analysis of what finished (base): 2 of its 3 inputs missing" in text, text


def test_report_on_a_partial_run_root_says_what_is_missing(tmp_path):
    from io import StringIO

    from omegaconf import OmegaConf
    from rich.console import Console

    from scaleworld.report.terminal import collect_results, render

    spec = load_spec(_spec_file(tmp_path), [f"run_root={tmp_path / 'root'}"])
    store = RunStore(Path(spec.run_root))
    graph = build_graph(spec)
    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    out = StringIO()
    render(collect_results(store.root), Console(file=out, width=100, force_terminal=True, color_system=None))
    text = " ".join(out.getvalue().split())
    assert f"partial results: {len(graph.jobs)} jobs not finished" in text
    assert "scaling regimes: missing" in text
    assert "normalised control scores: missing (the analysis job has not finished; 0 of 1 control jobs done" in text


def test_policies_and_controls_hang_off_each_world_model_and_game(tmp_path):
    text = MICRO.replace("games: [Pong]", "games: [Pong, Breakout]").replace(
        "modes: {single: true, joint: false, matched: {enabled: false}}",
        "modes: {single: true, joint: true, matched: {enabled: false}}").replace(
        "sizes: [tiny-d1]", "sizes: [tiny-d1, tiny-d2]")
    path = _spec_file(tmp_path, text)
    graph = build_graph(load_spec(path, ["policy.trials=2", "policy.sizes=[tiny-d2]"]))
    # per size tiny-d2: 2 single models x 1 game + 1 joint model x 2 games = 4 (model, game) pairs, x 2 trials
    assert graph.counts()["policy"] == 8 and graph.counts()["control"] == 8 and graph.counts()["anchor"] == 2
    kinds = {j.id: j.kind for j in graph.jobs.values()}
    for control in graph.by_kind("control"):
        assert [kinds[i] for i in control.inputs] == ["policy", "dynamics", "tokenizer", "anchor"]
        policy, dynamics, _, anchor = (graph.jobs[i] for i in control.inputs)
        assert policy.inputs[0] == dynamics.id and dynamics.labels["size"] == "tiny-d2"
        assert graph.jobs[anchor.id].config["game"] == control.labels["game"] == policy.labels["game"]
        assert graph.jobs[anchor.id].config["upper"] == "human"
    joint = [p for p in graph.by_kind("policy") if p.labels["modes"] == ["joint"]]
    assert sorted((p.labels["game"], p.labels["trial"]) for p in joint) == [
        ("Breakout", 0), ("Breakout", 1), ("Pong", 0), ("Pong", 1)]
    assert len({p.config["train"]["seed"] for p in joint}) == 2  # the trial seeds the policy
    (analysis,) = graph.by_kind("analysis")
    assert {c.id for c in graph.by_kind("control")} <= set(analysis.inputs)
    off = build_graph(load_spec(path, ["policy.enabled=false"]))
    assert not {"anchor", "policy", "control"} & set(off.counts())


def _copy_of(finished, tmp_path, name="root") -> Path:
    import shutil

    root = tmp_path / name
    shutil.copytree(finished[2], root)
    return root


def _job_folder(root: Path, kind: str) -> Path:
    (folder,) = root.glob(f"{kind}/*/done.json")
    return folder.parent


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_same_size(path: Path) -> None:
    text = path.read_text()
    digit = next(i for i, c in enumerate(text) if c.isdigit())
    path.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])


def _edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def _unstamp(folder: Path) -> None:
    done = json.loads((folder / "done.json").read_text())
    del done["artifact"]
    (folder / "done.json").write_text(json.dumps(done))


# A run root damaged in each way a disk, a crash or a person can: (what, how, the line `report`
# prints about it, and `status` too where it can know without reading every artifact). Both must go
# on with the rest and exit 0.
RUN_ROOT_DAMAGE = [
    ("a deleted done.json", lambda r: (_job_folder(r, "fidelity") / "done.json").unlink(), None, False),
    ("a corrupt done.json", lambda r: (_job_folder(r, "dynamics") / "done.json").write_text('{"kind": "dyn'),
     "done.json: damaged, not readable JSON (JSONDecodeError) (the next run redoes the job)", True),
    ("a done.json that is not a record", lambda r: (_job_folder(r, "control") / "done.json").write_text("[]"),
     "done.json: damaged, a list where a JSON object belongs", True),
    ("a deleted analysis.json", lambda r: (_job_folder(r, "analysis") / "analysis.json").unlink(),
     "analysis.json: missing (the next run redoes the job)", True),
    # An artifact that differs from done.json's stamp of it (size; sha256 of a record) is damaged.
    ("a corrupt analysis.json", lambda r: (_job_folder(r, "analysis") / "analysis.json").write_bytes(b"\xff\x00"),
     "analysis.json: damaged (2 bytes where the job wrote", True),
    ("a corrupt fidelity.json", lambda r: (_job_folder(r, "fidelity") / "fidelity.json").write_text("{"),
     "fidelity.json: damaged (1 bytes where the job wrote", True),
    ("a model file cut in half", lambda r: _cut_in_half(_job_folder(r, "dynamics") / "dynamics.pt"),
     "dynamics.pt: damaged (", True),
    ("a record edited in place", lambda r: _edit_same_size(_job_folder(r, "control") / "control.json"),
     "control.json: damaged (changed since the job wrote it: its sha256 differs)", True),
    # A record of a done.json from before stamps: the report names it when it cannot read it, or when
    # it does not fit its schema (scaleworld/study/records.py), and leaves that job out.
    ("an unstamped corrupt fidelity.json", lambda r: [_unstamp(_job_folder(r, "fidelity")),
                                                      (_job_folder(r, "fidelity") / "fidelity.json").write_text("{")],
     "fidelity.json: damaged, not readable JSON", False),
    ("an unstamped empty fidelity.json", lambda r: [_unstamp(_job_folder(r, "fidelity")),
                                                    (_job_folder(r, "fidelity") / "fidelity.json").write_text("{}")],
     "fidelity.json: damaged, games is missing", False),
    ("an unstamped fidelity.json with a string NLL", lambda r: [
        _unstamp(_job_folder(r, "fidelity")), _edit_json(_job_folder(r, "fidelity") / "fidelity.json",
                                                         lambda d: d["games"]["Pong"].update(nll_nats_per_frame="x"))],
     "fidelity.json: damaged, games.Pong.nll_nats_per_frame is a string, not a number", False),
    ("an unstamped analysis.json of the wrong shape", lambda r: [
        _unstamp(_job_folder(r, "analysis")), (_job_folder(r, "analysis") / "analysis.json").write_text(
            '{"modes": "x", "rule": 3}')], "analysis.json: damaged, modes is a string, not an object", False),
    ("a garbage failed.json", lambda r: [(_job_folder(r, "policy") / "failed.json").write_text("garbage"),
                                         (_job_folder(r, "policy") / "done.json").unlink()],
     "failed.json: damaged, the failure's reason is lost", True),
]


@pytest.mark.parametrize("what, how, line, in_status", RUN_ROOT_DAMAGE, ids=[d[0] for d in RUN_ROOT_DAMAGE])
def test_status_and_report_name_what_is_damaged_and_go_on(finished, tmp_path, what, how, line, in_status):
    root = _copy_of(finished, tmp_path)
    how(root)
    store = RunStore(root)
    damaged_to_failed = "failed" in store.states(store.read_plan().jobs.values()).values()
    for command in (["status", root], ["report", root, "--width", "200", "--json", tmp_path / "r.json"]):
        proc = _sw(*command)
        failed = command[0] == "status" and damaged_to_failed  # status exits 1 when a job failed
        assert proc.returncode == (1 if failed else 0) and "Traceback" not in proc.stderr, proc.stderr
        text = " ".join(proc.stdout.split())
        assert line is None or (line in text) == (in_status or command[0] == "report"), text
    assert "| tokenizer |" in text and "| shared | Pong |" in text  # the rest is shown


@pytest.mark.parametrize("damage, line", [
    (lambda text: text[:100], "plan.json: damaged"),
    (lambda text: text.replace('"kind":"fidelity"', '"kind":"fidelty"', 1), "plan.json: not a study plan"),
])
def test_a_damaged_plan_is_one_line_naming_the_fix(finished, tmp_path, damage, line):
    root = _copy_of(finished, tmp_path)
    (root / "plan.json").write_text(damage((root / "plan.json").read_text()))
    for command in ("status", "report"):
        proc = _sw(command, root)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert line in lines[0] and f"scaleworld run {root}/spec.yaml run_root={root}" in lines[0]


@pytest.mark.parametrize("damage", ["done.json", "dynamics.pt"])
def test_a_damaged_done_json_or_model_file_is_redone_and_the_study_ends_identical(finished, tmp_path, damage):
    _, spec, reference = finished
    root = _copy_of(finished, tmp_path)
    if damage == "done.json":
        (_job_folder(root, "dynamics") / "done.json").write_text("{")
    else:
        _cut_in_half(_job_folder(root, "dynamics") / "dynamics.pt")
    store = RunStore(root)
    graph = store.read_plan()
    (dynamics,) = graph.by_kind("dynamics")
    assert store.states(graph.jobs.values())[dynamics.id] == "failed" and not store.is_done(dynamics)
    proc = _sw("run", spec, f"run_root={root}", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert store.is_done(dynamics) and _outputs(root) == _outputs(reference)


def test_a_moved_run_root_resumes_and_ends_identical(finished, tmp_path):
    """Checkpoints and token datasets name their inputs by content and by paths relative to the
    run root: a study moved elsewhere (its old place gone) resumes unfinished training and reads
    its datasets from the new place."""
    import shutil

    _, spec, reference = finished
    moved = tmp_path / "elsewhere" / "root"
    shutil.move(str(_copy_of(finished, tmp_path, "before")), str(moved))
    assert not (tmp_path / "before").exists()
    for kind in ("dynamics", "fidelity", "policy"):  # as if killed before these wrote done.json
        (_job_folder(moved, kind) / "done.json").unlink()
    proc = _sw("run", spec, f"run_root={moved}", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _outputs(moved) == _outputs(reference)


def test_a_checkpoint_of_other_settings_names_the_setting(finished, tmp_path):
    root = _copy_of(finished, tmp_path)
    store = RunStore(root)
    graph = store.read_plan()
    (dynamics,) = graph.by_kind("dynamics")
    (store.job_dir(dynamics) / "done.json").unlink()
    state = torch.load(store.job_dir(dynamics) / "checkpoint.pt", weights_only=False)
    state["config"]["lr"] = 0.5
    torch.save(state, store.job_dir(dynamics) / "checkpoint.pt")
    assert run_job(root, dynamics.id) == 1
    reason = json.loads((store.job_dir(dynamics) / "failed.json").read_text())["reason"]
    assert "written by a run of other settings (train.lr: 0.5 in the checkpoint, 0.0003 now)" in reason


def test_plan_prints_the_passes_each_run_makes_over_each_games_data(tmp_path):
    from scaleworld.study.planning import data_passes

    text = MICRO.replace("games: [Pong]", "games: [Pong, Breakout]").replace(
        "modes: {single: true, joint: false, matched: {enabled: false}}",
        "modes: {single: true, joint: true, matched: {enabled: true, rule: total_steps}}")
    spec = _spec_file(tmp_path, text)
    rows = {(r["kind"], r["mode"]): r for r in data_passes(build_graph(load_spec(spec)))}
    train = 240 * (1 - 0.25)  # data.steps x (1 - val_fraction)
    assert rows["tokenizer", "-"]["passes"] == (4 * 8 / 2 / train,) * 2  # 4 steps of 8 frames over 2 games
    single = 6 * 4 * 8 / train  # steps x batch x window
    assert rows["dynamics", "single"]["passes"] == (single, single)
    assert rows["dynamics", "joint"]["passes"] == (single, single)  # 12 steps shared by 2 games
    assert rows["dynamics", "matched"]["passes"] == (2 * single, 2 * single)  # total_steps: the joint run's 12
    proc = _sw("plan", spec)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "passes over each game's training data" in out
    assert f"| dynamics matched | 1 | 12 | 384 | {2 * single:.1f} |" in out.replace("│", "|")


def test_plan_says_how_the_dynamics_jobs_pack_and_which_shapes_the_memory_cap_packs_fewer_of():
    """launcher.pack is a ceiling the packer lowers per model shape by the estimate of its training
    memory: plan names the shapes and their K (joint26's paper ladder with pack 8 in 80 GB)."""
    from scaleworld.study.planning import pack_line

    studies = Path(__file__).resolve().parent.parent / "studies"
    spec = load_spec(studies / "joint26.yaml", ["launcher.pack=8"])
    graph = build_graph(spec)
    line = pack_line(graph, spec.launcher)
    assert "processes of up to 8 (launcher.pack)" in line
    assert "depth 96 width 512 batch 64: 6" in line and "depth 12 width 512" not in line
    assert pack_line(graph, load_spec(studies / "joint26.yaml", ["launcher.pack=1"]).launcher) is None
    proc = _sw("plan", studies / "smoke.yaml", "launcher.pack=4", "launcher.pack_memory_gb=0.0001")
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "packs:" in out and "(launcher.pack_memory_gb) cannot hold them" in out, out


@pytest.mark.parametrize("tokenizer_seed, split_seed", [(1, 0), (0, 3), (5, 7)])
def test_the_tokenizer_job_splits_episodes_by_the_data_split_seed(tmp_path, tokenizer_seed, split_seed):
    """Whatever the training seeds, the tokenizer job and the dynamics jobs split by data.split_seed
    (train_tokenizer's use of it: test_world_model_training.py)."""
    from scaleworld.study.kinds import stage_of

    spec = load_spec(_spec_file(tmp_path), [f"tokenizer.seed={tokenizer_seed}", f"data.split_seed={split_seed}",
                                            "seeds=[2]"])
    graph = build_graph(spec)
    (tokenizer,) = graph.by_kind("tokenizer")
    (dynamics,) = graph.by_kind("dynamics")
    assert stage_of(tokenizer).split_seed == stage_of(dynamics).split_seed == split_seed
    assert stage_of(tokenizer).train_config().seed == tokenizer_seed


def test_a_done_json_rewritten_in_place_is_read_again(finished, tmp_path):
    root = _copy_of(finished, tmp_path)
    store = RunStore(root)
    (fidelity,) = store.read_plan().by_kind("fidelity")
    assert store.is_done(fidelity)  # read and remembered
    (store.job_dir(fidelity) / "done.json").write_text("{")  # damaged after it was read
    assert not store.is_done(fidelity) and "not readable JSON" in store.failure(fidelity)


def test_the_plans_disk_estimate_holds_for_every_finished_job(finished):
    """`plan`'s disk per kind (each stage's disk_bytes) against the job folders of a finished study
    (its checkpoints kept): no job takes more than its estimate, and where files dominate (datasets,
    model files) the estimate is within 25% of what the job wrote."""
    from scaleworld.study.kinds import stage_of
    from scaleworld.study.kinds.base import RECORD_BYTES

    _, _, root = finished
    store = RunStore(root)
    graph = store.read_plan()
    for job in graph.jobs.values():
        folder = store.job_dir(job)
        actual = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        estimate = stage_of(job).disk_bytes([graph.jobs[i] for i in job.inputs], keep=True)
        assert actual <= estimate * 1.05, (job.kind, actual, estimate)
        if job.kind in ("collect", "tokenizer", "dynamics", "policy"):
            files = estimate - RECORD_BYTES
            assert abs(actual - files) <= 0.25 * files + RECORD_BYTES, (job.kind, actual, estimate)


def test_read_only_commands_change_no_file_of_a_run_root(finished, tmp_path):
    """status, report, plan, validate, data info and data verify read: every file's bytes and mtime,
    and the set of files, are the same after them (a dataset's stamp lives in the user's cache)."""
    _, spec, root = finished
    dataset = _job_folder(root, "collect") / "dataset"

    def files() -> dict[Path, tuple[bytes, int]]:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}

    before = files()
    for argv in (["status", root], ["status", root, "--list", "dynamics"], ["report", root, "--full"],
                 ["plan", spec, f"run_root={root}"], ["validate", spec, f"run_root={root}"],
                 ["data", "info", dataset], ["data", "verify", dataset]):
        proc = _sw(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert "damaged" not in proc.stdout  # every record the study wrote fits its schema (study/records.py)
    assert files() == before


def test_an_error_raised_over_a_ctrl_c_is_an_interruption_not_a_failure():
    """Ctrl-C landing inside torch.save makes its zip writer raise on close, over the KeyboardInterrupt:
    the job was interrupted (resumable, pending), not failed (a flaky CI run recorded it failed)."""
    from scaleworld.study.jobs import _masks_interrupt

    def save_interrupted():
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    with pytest.raises(RuntimeError) as caught:
        save_interrupted()
    assert _masks_interrupt(caught.value)
    with pytest.raises(RuntimeError) as plain:
        raise RuntimeError("a real failure")
    assert not _masks_interrupt(plain.value)
