"""`scaleworld plan --calibrate`: every job kind's throughput measured on this machine, and the
study's cost in device-hours from it.

Each kind's work is counted in one unit and its rate measured by running the kind's own code for a
few seconds on inputs of the job's shapes (random weights, and random rows drawn by the job's own
window sampler from synthetic in-memory datasets: speed does not depend on their values; real
emulators where a kind steps a game; imagination with terminations switched off, as a trained
model rarely ends a rollout):

  kind       unit of work                                   measured by
  expert     agent steps (ppo.agent_steps)                  train_ppo for 3 updates on the study's first game
  collect    agent steps (data.steps)                       VectorAtari + the random policy, the job's num_envs
  tokenizer  gradient steps (+ held-out batches)            the Trainer on TokenizerLoss, the job's model and batch
  tokens     frames encoded (the collect job's steps)       Tokenizer.encode, batches of 256
  dynamics   tokens trained (steps x batch x context)       the Trainer on DynamicsLoss, the job's model and batch
             (+ held-out batches at the forward rate)
  fidelity   tokens scored (the game's collected steps)     the model's forward pass (no gradient)
  anchor     agent steps (episodes x episode length)        VectorAtari + the random policy
  policy     updates (train.steps)                          train_in_imagination, the job's model, policy and batch
  control    agent steps (episodes x episode length)        VectorAtari + WorldModelAgent of the job's model sizes
  analysis   -                                              not measured (numpy; seconds)

An episode's length is not known before the data exists: the mean length of the game's collected
episodes when its collect job is done, else the protocol's cap (max_episode_frames / frame_skip),
shown as an upper bound. Job time = work / rate; a kind's hours are the sum over its jobs, on the
device it runs on (GPU kinds on CUDA when the calibrating machine has one). Not counted: process
start-up, compilation, checkpoints, dataset checks, the tokenizer's quality measurement; packing
(launcher.pack) is not assumed. Measured against the same jobs run again on this machine
(tools/bench_calibration.py, pilot_cpu, 2 s per shape): dynamics 0.89-1.25 of the measured time over
its 4 shapes, tokenizer 0.92, policy 0.79 (one job run twice differed by 30% on the 2 shared cores).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.graph import KINDS, Graph, Job
from scaleworld.study.kinds import GPU_KINDS
from scaleworld.study.store import RunStore

CALIBRATION_FORMAT = "calibration/1"


class NotCalibrated(Exception):
    """A rate the saved calibration does not have (a shape it never measured)."""


def _rate(step: Callable[[], float], *, seconds: float, sync: Callable[[], None]) -> float:
    """Units of work per second of `step` (which returns the units it did), after one warm-up call;
    at least `seconds`, and until some work was done (emulator steps that reset or take no-op starts
    do none: a loaded machine once spent a whole short window on those, and the rate was 0)."""
    step()
    sync()
    done, start = 0.0, time.perf_counter()
    while True:
        done += step()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done > 0:
            return done / elapsed


def peak_matmul_flops(device: Any, *, n: int, reps: int) -> float:
    """FLOP/s of a large square matmul: bf16 on CUDA, fp32 on CPU (the peak MFU is measured against)."""
    import torch

    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class _Meter:
    """Each distinct (kind, shape)'s rate: from `rates` (a saved calibration), else measured once
    (`measuring`), else NotCalibrated."""

    def __init__(self, *, seconds: float, device: str, rates: dict[str, float], measuring: bool):
        import torch

        self.seconds = seconds
        self.device = torch.device(device)
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.rates = dict(rates)
        self.measuring = measuring
        self.tmp = tempfile.TemporaryDirectory()

    def rate(self, key: str, measure: Callable[[], float]) -> float:
        if key not in self.rates:
            if not self.measuring:
                raise NotCalibrated(key)
            self.rates[key] = measure()
        return self.rates[key]

    # -- the measurements ----------------------------------------------------------------------
    def training(self, loss: Any, windows: Any, train: dict[str, Any], units: float, *,
                 compile_on_cuda: bool = False) -> float:
        from scaleworld.training.config import TrainConfig
        from scaleworld.training.trainer import Trainer

        config = TrainConfig(**{**train, "steps": 10**9})
        trainer = Trainer(loss=loss.to(self.device), sample_train=windows.sample, sample_val=None, config=config,
                          run_dir=Path(self.tmp.name) / "t", generators={}, device=self.device, progress=False,
                          compile_on_cuda=compile_on_cuda)

        def step() -> float:
            trainer.train_step()
            return units

        return _rate(step, seconds=self.seconds, sync=self.sync)

    def forward(self, loss: Any, windows: Any, batch: int, units: float) -> float:
        import torch

        def step() -> float:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss(windows.sample(batch))
            return units

        return _rate(step, seconds=self.seconds, sync=self.sync)

    def env_steps(self, game: str, protocol: dict[str, Any], num_envs: int, policy: Callable[[], Any]) -> float:
        from scaleworld.atari.envs import VectorAtari
        from scaleworld.atari.games import get_game
        from scaleworld.atari.protocol import Protocol
        from scaleworld.data.collect import Acting

        g = get_game(game)
        acting = Acting(policy(), g)
        with VectorAtari(g, num_envs, protocol=Protocol(**protocol)) as env:
            state = env.reset(seed=0)

            def step() -> float:
                nonlocal state
                state = env.step(acting(state))
                return float(state.acted.sum())

            return _rate(step, seconds=self.seconds, sync=lambda: None)


def _windows(columns: dict[str, tuple[tuple[int, ...], Any, int]], *, games: int, seq_len: int,
             frame_size: int, device: Any) -> Any:
    """The job's own window sampler (`MultiGameWindows`) over `games` synthetic in-memory datasets of
    10,000 rows in episodes of 500, so the rate counts sampling as a run pays it. `columns`: name ->
    (row shape, dtype, high) of random integer rows."""
    from types import SimpleNamespace

    import torch
    from tensordict import TensorDict

    from scaleworld.data.sampling import MultiGameWindows

    rows, length = 10_000, 500
    gen = torch.Generator().manual_seed(0)
    datasets = []
    for g in range(games):
        data = {name: torch.randint(0, high, (rows, *shape), generator=gen).to(dtype)
                for name, (shape, dtype, high) in columns.items()}
        data["next"] = {"reward": torch.zeros(rows, 1), "terminated": torch.zeros(rows, 1, dtype=torch.bool)}
        datasets.append(SimpleNamespace(game=f"game{g}", protocol=SimpleNamespace(frame_size=frame_size),
                                        episode_starts=torch.arange(0, rows, length),
                                        episode_lengths=torch.full((rows // length,), length),
                                        data=TensorDict(data, batch_size=[rows])))
    return MultiGameWindows(datasets, seq_len=seq_len, generator=torch.Generator().manual_seed(1),
                            resident_on=device)


def synthetic_token_windows(model: dict[str, Any], device: Any) -> Any:
    """A dynamics run's window sampler over synthetic token datasets of `model`'s shape (a config dict)."""
    import torch

    return _windows({"tokens": ((model["groups"],), torch.uint8, model["classes"]),
                     "action": ((), torch.int64, model["num_actions"])},
                    games=max(1, len(model.get("games") or [])), seq_len=model["context"], frame_size=64,
                    device=device)


def _dynamics_model(job_model: dict[str, Any], graph: Graph, job: Job) -> dict[str, Any]:
    """The model a dynamics job trains, with the tokenizer's code shape (known from the tokenizer job)."""
    tokenizer = next((graph.jobs[i] for i in _upstream(graph, job) if graph.jobs[i].kind == "tokenizer"), None)
    code = tokenizer.config["model"] if tokenizer is not None else {}
    return {**job_model, "groups": code.get("groups", job_model["groups"]),
            "classes": code.get("classes", job_model["classes"])}


def _upstream(graph: Graph, job: Job) -> list[str]:
    seen, todo = [], list(job.inputs)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.append(i)
            todo += graph.jobs[i].inputs
    return seen


def _of_kind(graph: Graph, job: Job, kind: str) -> list[Job]:
    return [graph.jobs[i] for i in _upstream(graph, job) if graph.jobs[i].kind == kind]


def _episode_steps(store: RunStore | None, graph: Graph, job: Job) -> tuple[float, bool]:
    """(agent steps per episode, is it measured): the game's collected episodes' mean length when the
    collect job is done, else the protocol's cap (an upper bound)."""
    game = job.config.get("game") or job.labels.get("game")
    collects = [j for j in graph.by_kind("collect") if j.config["game"] == game]
    if store is not None and collects and store.is_done(collects[0]):
        manifest = store.job_dir(collects[0]) / "dataset" / "manifest.json"
        try:  # whole episodes: those the step budget cut are shorter than the game's
            lengths = [e["length"] for e in json.loads(manifest.read_text())["episodes"] if e["complete"]]
            if lengths:
                return sum(lengths) / len(lengths), True
        except (OSError, KeyError, TypeError, ValueError):
            pass
    protocol = job.config.get("protocol") or (collects[0].config["protocol"] if collects else {})
    return protocol.get("max_episode_frames", 108000) / protocol.get("frame_skip", 4), False


def _work(store: RunStore | None, graph: Graph, job: Job, meter: _Meter) -> tuple[float, str, bool]:
    """(seconds of this job on the calibrating machine, what the rate was, is the figure an upper bound)."""
    c, kind = job.config, job.kind
    if kind == "expert":
        from scaleworld.experts.ppo import train_ppo
        from scaleworld.experts.tasks import AtariTask
        from scaleworld.study.kinds import stage_of

        stage = stage_of(job)
        ppo = stage.ppo_config()
        per_update = ppo.num_envs * ppo.rollout_steps

        def measure() -> float:
            start = time.perf_counter()
            train_ppo(AtariTask(game=graph.by_kind("expert")[0].config["game"], protocol=stage.protocol_config()),
                      ppo, Path(meter.tmp.name) / f"ppo{time.time_ns()}", device=meter.device, progress=False,
                      stop_after=3)
            return 3 * per_update / (time.perf_counter() - start)

        rate = meter.rate(_key(kind, c.get("ppo")), measure)
        return c["agent_steps"] / rate, f"{rate:,.0f} agent steps/s", False
    if kind in ("collect", "anchor"):
        from scaleworld.data.random_policy import RandomPolicy

        game = c["game"]
        protocol = c["protocol"]
        rate = meter.rate(_key("env", game, c["num_envs"]),
                          lambda: meter.env_steps(game, protocol, c["num_envs"], lambda: RandomPolicy(seed=0)))
        if kind == "collect":
            return c["steps"] / rate, f"{rate:,.0f} agent steps/s", False
        length, measured = _episode_steps(store, graph, job)
        return c["episodes"] * length / rate, f"{rate:,.0f} agent steps/s", not measured
    if kind == "tokenizer":
        import torch

        from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

        model, train = c["model"], c["train"]

        def measure() -> float:
            net = Tokenizer(TokenizerConfig.from_dict(model)).to(meter.device)
            size = model["frame_size"]
            games = len(job.labels.get("games") or [None])
            windows = _windows({"pixels": ((size, size, 3), torch.uint8, 256)}, games=games, seq_len=1,
                               frame_size=size, device=None)  # frames stay on the host, as a run's do
            loss = _tokenizer_loss(net, meter.device, games)
            return meter.training(loss, windows, train, 1.0)

        rate = meter.rate(_key(kind, model, train["batch_size"]), measure)
        steps = train["steps"] + (train["steps"] // train["eval_every"] + 1) * train["eval_batches"] / 3
        return steps / rate, f"{rate:,.1f} steps/s", False
    if kind == "tokens":
        import torch

        from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

        (tokenizer,) = _of_kind(graph, job, "tokenizer")[:1] or [None]
        collects = [graph.jobs[i] for i in job.inputs if graph.jobs[i].kind == "collect"]
        model = tokenizer.config["model"]

        def measure() -> float:
            net = Tokenizer(TokenizerConfig.from_dict(model)).to(meter.device).eval()
            frames = torch.randint(0, 256, (256, model["frame_size"], model["frame_size"], 3), dtype=torch.uint8,
                                   device=meter.device)

            def step() -> float:
                with torch.no_grad():
                    net.encode(frames)
                return 256.0

            return _rate(step, seconds=meter.seconds, sync=meter.sync)

        rate = meter.rate(_key(kind, model), measure)
        return sum(j.config["steps"] for j in collects) / rate, f"{rate:,.0f} frames/s", False
    if kind in ("dynamics", "fidelity", "policy", "control"):
        import torch

        from scaleworld.models.dynamics import DynamicsModel
        from scaleworld.models.dynamics_config import DynamicsConfig
        from scaleworld.objectives.world_model import DynamicsLoss

        dynamics = job if kind == "dynamics" else _of_kind(graph, job, "dynamics")[0]
        model = _dynamics_model(dynamics.config["model"], graph, dynamics)
        train = dynamics.config["train"]
        tokens = train["batch_size"] * model["context"]

        def net() -> Any:
            torch.manual_seed(0)
            return DynamicsModel(DynamicsConfig.from_dict(model)).to(meter.device)

        forward = meter.rate(_key("forward", model, train["batch_size"]), lambda: meter.forward(
            DynamicsLoss(net()), synthetic_token_windows(model, meter.device), train["batch_size"], tokens))
        if kind == "dynamics":
            rate = meter.rate(_key(kind, model, train["batch_size"]), lambda: meter.training(
                DynamicsLoss(net()), synthetic_token_windows(model, meter.device), train, tokens,
                compile_on_cuda=True))  # as dynamics runs are
            evaluation = (train["steps"] // train["eval_every"] + 1) * train["eval_batches"] * tokens
            return train["steps"] * tokens / rate + evaluation / forward, f"{rate:,.0f} tokens/s", False
        if kind == "fidelity":
            games = dynamics.labels["games"]
            frames = sum(j.config["steps"] for j in graph.by_kind("collect") if j.config["game"] in games)
            return frames / forward, f"{forward:,.0f} tokens/s forward", False
        if kind == "policy":
            rate = meter.rate(_key(kind, model, c), lambda: _policy_rate(meter, net(), c))
            return c["train"]["steps"] / rate, f"{rate:,.2f} updates/s", False
        tokenizer = _of_kind(graph, job, "tokenizer")[0].config["model"]
        game = job.labels["game"]
        rate = meter.rate(_key(kind, model, tokenizer, game, c["num_envs"]), lambda: meter.env_steps(
            game, c["protocol"], c["num_envs"], lambda: _world_model_agent(net(), tokenizer, game, c)))
        length, measured = _episode_steps(store, graph, job)
        return c["episodes"] * length / rate, f"{rate:,.0f} agent steps/s", not measured
    return 0.0, "not measured (seconds)", False


def _tokenizer_loss(net: Any, device: Any, games: int) -> Any:
    import torch

    from scaleworld.objectives.world_model import TokenizerLoss

    generator = torch.Generator(device).manual_seed(0)
    return TokenizerLoss(net, game_variance=torch.ones(games), generator=generator).to(device)


def _policy_rate(meter: _Meter, model: Any, c: dict[str, Any]) -> float:
    """Policy updates per second: train_in_imagination's own loop from random start contexts."""
    import torch

    from scaleworld.atari.games import GAMES
    from scaleworld.imagination.config import PolicyConfig
    from scaleworld.imagination.core import StartContexts
    from scaleworld.imagination.train import train_in_imagination
    from scaleworld.training.config import TrainConfig

    cfg = model.config
    rows = 256
    starts = StartContexts(tokens=torch.randint(0, cfg.classes, (rows, cfg.groups), dtype=torch.uint8),
                           actions=torch.zeros(rows, dtype=torch.int64),
                           starts=torch.arange(rows - c["policy"]["context_steps"]),
                           steps=c["policy"]["context_steps"], game=0 if cfg.games else None,
                           action_mask=torch.tensor(next(iter(GAMES.values())).action_mask()))
    with torch.no_grad():  # random weights would end half the rollouts every step; real models rarely do
        model.termination_head.bias.fill_(-10.0)

    def run(n: int) -> float:
        start = time.perf_counter()
        train_in_imagination(model, starts, config=PolicyConfig(**c["policy"]),
                             train=TrainConfig(**{**c["train"], "steps": n}), out=Path(meter.tmp.name) / f"p{n}",
                             device=meter.device, progress=False)
        meter.sync()
        return time.perf_counter() - start

    first = run(2)  # set-up and 2 updates; then enough more updates to fill `seconds`: their difference
    more = max(2, round(meter.seconds / max(first / 2, 1e-3)))
    return more / max(run(2 + more) - first, 1e-6)


def _world_model_agent(model: Any, tokenizer: dict[str, Any], game: str, c: dict[str, Any]) -> Any:
    import torch

    from scaleworld.evaluation.control import WorldModelAgent
    from scaleworld.models.agent import ActorCritic, AgentConfig
    from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

    cfg = model.config
    agent = ActorCritic(AgentConfig(groups=cfg.groups, classes=cfg.classes, hidden_size=cfg.width,
                                    num_actions=cfg.num_actions))
    return WorldModelAgent(tokenizer=Tokenizer(TokenizerConfig.from_dict(tokenizer)), model=model.cpu(), agent=agent,
                           game=cfg.games[0] if cfg.games else game, generator=torch.Generator().manual_seed(0),
                           greedy=c.get("greedy", False))


def machine_name() -> str:
    """This machine as a calibration names it: its GPU, or its CPU and core count."""
    import torch

    from scaleworld.training.trainer import resolve_device

    if resolve_device() == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine() or 'CPU'} x{os.cpu_count()}"


def calibrate(*, seconds: float = 2.0) -> dict[str, Any]:
    """An empty calibration of this machine (`estimate(..., measure=True)` fills its rates)."""
    import torch

    from scaleworld.training.trainer import resolve_device

    device = resolve_device()
    name = machine_name()
    peak = peak_matmul_flops(device, n=8192, reps=50) if device == "cuda" else peak_matmul_flops(device, n=2048,
                                                                                                  reps=10)
    return {"format": CALIBRATION_FORMAT, "device": device, "machine": name, "threads": torch.get_num_threads(),
            "seconds_per_item": seconds, "peak_flops": peak, "rates": {}}


def save_calibration(record: dict[str, Any], path: Path) -> None:
    write_json_atomic(path, record)


def load_calibration(path: Path) -> dict[str, Any]:
    """A saved calibration; a missing or damaged file is one line naming it and the fix."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScaleworldError(f"{path}: no such calibration: make one with `scaleworld plan SPEC --calibrate "
                              f"--calibration {path}`") from None
    except (OSError, ValueError) as exc:
        raise ScaleworldError(f"{path}: not a calibration ({type(exc).__name__}): delete it and calibrate again "
                              "(--calibrate)") from None
    if (not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT
            or not isinstance(record.get("rates"), dict) or not record.get("peak_flops", 0) > 0
            or not all(isinstance(v, (int, float)) and v > 0 for v in record["rates"].values())):
        raise ScaleworldError(f"{path}: not a {CALIBRATION_FORMAT} file: delete it and calibrate again (--calibrate)")
    return record


def job_seconds(graph: Graph, jobs: list[Job], record: dict[str, Any], *, store: RunStore | None = None,
                measure: bool = True) -> list[float]:
    """Each job's estimated seconds on the calibrated machine (measuring the rates `record` lacks,
    with `measure`; they are added to it)."""
    meter = _Meter(seconds=record["seconds_per_item"], device=record["device"], rates=record["rates"],
                   measuring=measure)
    with meter.tmp:
        out = [_work(store, graph, job, meter)[0] for job in jobs]
    record["rates"] = meter.rates
    return out


def estimate(graph: Graph, record: dict[str, Any], *, store: RunStore | None = None, measure: bool = False,
             progress: bool = True) -> list[dict[str, Any]]:
    """Per kind: jobs, device-hours on the calibrated machine (GPU kinds on its GPU if it had one),
    the rates used, whether an upper bound went in, and how many jobs it has no rate for. With
    `measure`, rates `record` lacks are measured and added to it."""
    from scaleworld.progress import progress_bar

    meter = _Meter(seconds=record["seconds_per_item"], device=record["device"] if measure else "cpu",
                   rates=record["rates"], measuring=measure)
    per_kind: dict[str, dict[str, Any]] = {}
    with meter.tmp, progress_bar(progress and measure, "calibrating", len(graph.jobs)) as advance:
        for job in graph.jobs.values():
            row = per_kind.setdefault(job.kind, {"kind": job.kind, "jobs": 0, "seconds": 0.0, "missing": 0,
                                                 "upper_bound": False, "rates": [], "flops": 0.0})
            row["jobs"] += 1
            try:
                seconds, rate, upper = _work(store, graph, job, meter)
            except NotCalibrated:
                row["missing"] += 1
            else:
                row["seconds"] += seconds
                row["upper_bound"] |= upper
                if job.kind == "dynamics":
                    from scaleworld.study.planning import dynamics_flops

                    row["flops"] += dynamics_flops(job.config)
                if rate not in row["rates"]:
                    row["rates"].append(rate)
            advance(1, note=job.kind)
    record["rates"] = meter.rates
    rows = []
    for kind in KINDS:
        if kind in per_kind:
            row = per_kind[kind]
            on_gpu = record["device"] == "cuda" and kind in GPU_KINDS
            seconds = row.pop("seconds")
            flops = row.pop("flops")
            mfu = {"mfu": flops / seconds / record["peak_flops"]} if kind == "dynamics" and seconds > 0 else {}
            rows.append({**row, **mfu, "gpu_hours": seconds / 3600 if on_gpu else 0.0,
                         "cpu_hours": 0.0 if on_gpu else seconds / 3600})
    return rows
