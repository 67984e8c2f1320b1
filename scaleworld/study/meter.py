"""How `plan --calibrate` measures a kind's throughput: the rate of a few seconds of the kind's own
code on inputs of the job's shapes (each kind's `Stage.work` says which code and which unit of work;
scaleworld.study.calibration runs them and sums the hours). Random weights, and random rows drawn by
the job's own window sampler from synthetic in-memory datasets: speed does not depend on their
values; real emulators where a kind steps a game; imagination with terminations switched off, as a
trained model rarely ends a rollout.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleworld.study.graph import Graph, Job


@dataclass
class WorkContext:
    """One job being estimated: the plan, the run root when there is one (finished collect jobs
    give real episode lengths), and the meter that measures or looks up rates."""

    store: Any
    """A `scaleworld.study.store.RunStore`, or None (a plan without a run root)."""
    graph: Graph
    job: Job
    meter: Meter


class NotCalibrated(Exception):
    """A rate the saved calibration does not have (a shape it never measured)."""


MIN_SECONDS = 0.05
"""The shortest window `plan --calibrate --seconds` takes: the tests' window, which measures every
kind of the micro study; a window shorter than a step (the 1e-12 s once asked for) times one call
and its noise, and its estimate (4 CPU-hours for the smoke study) was printed as measured."""


def rate_of(step: Callable[[], float], *, seconds: float, sync: Callable[[], None]) -> float:
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


def shape_key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class Meter:
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

    def fresh_folder(self) -> Path:
        """A new empty folder for one measured run: never one an earlier shape wrote its checkpoint in
        (a policy of another seed would refuse it as a run of other settings)."""
        return Path(tempfile.mkdtemp(dir=self.tmp.name))

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
                          run_dir=self.fresh_folder(), generators={}, device=self.device, progress=False,
                          compile_on_cuda=compile_on_cuda)

        def step() -> float:
            trainer.train_step()
            return units

        return rate_of(step, seconds=self.seconds, sync=self.sync)

    def forward(self, loss: Any, windows: Any, batch: int, units: float) -> float:
        import torch

        def step() -> float:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss(windows.sample(batch))
            return units

        return rate_of(step, seconds=self.seconds, sync=self.sync)

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

            return rate_of(step, seconds=self.seconds, sync=lambda: None)


def synthetic_windows(columns: dict[str, tuple[tuple[int, ...], Any, int]], *, games: int, seq_len: int,
                      frame_size: int, device: Any, one_store: bool = False) -> Any:
    """The job's own window sampler (`MultiGameWindows`) over `games` synthetic in-memory datasets of
    10,000 rows in episodes of 500, so the rate counts sampling as a run pays it. `columns`: name ->
    (row shape, dtype, high) of random integer rows. `one_store`: the games' rows joined in one store,
    as a dynamics run's loss columns are (`MultiGameWindows` keys)."""
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
    keys = [*columns, ("next", "reward"), ("next", "terminated")] if one_store else None
    return MultiGameWindows(datasets, seq_len=seq_len, generator=torch.Generator().manual_seed(1),
                            resident_on=device, keys=keys)


def synthetic_token_windows(model: dict[str, Any], device: Any) -> Any:
    """A dynamics run's window sampler over synthetic token datasets of `model`'s shape (a config dict)."""
    import torch

    return synthetic_windows({"tokens": ((model["groups"],), torch.uint8, model["classes"]),
                              "action": ((), torch.int64, model["num_actions"])},
                             games=max(1, len(model.get("games") or [])), seq_len=model["context"], frame_size=64,
                             device=device, one_store=True)


def dynamics_model(job_model: dict[str, Any], graph: Graph, job: Job) -> dict[str, Any]:
    """The model a dynamics job trains, with the tokenizer's code shape (known from the tokenizer job)."""
    tokenizer = nearest(graph, job, "tokenizer")
    code = tokenizer.config["model"] if tokenizer is not None else {}
    return {**job_model, "groups": code.get("groups", job_model["groups"]),
            "classes": code.get("classes", job_model["classes"])}


def nearest(graph: Graph, job: Job, kind: str) -> Job | None:
    """`job` if of `kind`, else its nearest upstream job of `kind`, or None (breadth first: a policy's
    or a control job's own dynamics job, a level or two up, without walking all of joint26's graph)."""
    todo = [job]
    while todo and todo[0].kind != kind:
        todo = todo[1:] + [graph.jobs[i] for i in todo[0].inputs]
    return todo[0] if todo else None


def dynamics_parameters(graph: Graph, job: Job) -> int:
    """Parameters, by formula, of the dynamics model `job` trains (a dynamics job) or reads (`nearest`)."""
    from scaleworld.models.dynamics_config import DynamicsConfig, parameter_counts

    dynamics = nearest(graph, job, "dynamics")
    model = dynamics_model(dynamics.config["model"], graph, dynamics)
    return parameter_counts(DynamicsConfig.from_dict(model))["total"]


def upstream(graph: Graph, job: Job) -> list[str]:
    seen, todo = [], list(job.inputs)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.append(i)
            todo += graph.jobs[i].inputs
    return seen


def of_kind(graph: Graph, job: Job, kind: str) -> list[Job]:
    return [graph.jobs[i] for i in upstream(graph, job) if graph.jobs[i].kind == kind]


def episode_steps(store: Any, graph: Graph, job: Job) -> tuple[float, bool]:
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
    return episode_cap(protocol), False


def episode_cap(protocol: dict[str, Any]) -> float:
    """The protocol's longest episode in agent steps (max_episode_frames / frame_skip)."""
    from scaleworld.atari.protocol import Protocol

    p = Protocol(**protocol)
    return p.max_episode_frames / p.frame_skip


def tokenizer_loss(net: Any, device: Any, games: int) -> Any:
    import torch

    from scaleworld.objectives.world_model import TokenizerLoss

    generator = torch.Generator(device).manual_seed(0)
    return TokenizerLoss(net, game_variance=torch.ones(games), generator=generator).to(device)


def policy_rate(meter: Meter, model: Any, c: dict[str, Any]) -> float:
    """Policy updates per second: train_in_imagination's own loop from random start contexts."""
    import torch

    from scaleworld.atari.games import GAMES
    from scaleworld.imagination.core import StartContexts
    from scaleworld.imagination.train import train_in_imagination
    from scaleworld.models.policy_config import PolicyConfig
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
                             train=TrainConfig(**{**c["train"], "steps": n}), out=meter.fresh_folder(),
                             device=meter.device, progress=False)
        meter.sync()
        return time.perf_counter() - start

    first = run(2)  # set-up and 2 updates; then enough more updates to fill `seconds`: their difference
    more = max(2, round(meter.seconds / max(first / 2, 1e-3)))
    return more / max(run(2 + more) - first, 1e-6)


def world_model_agent(model: Any, tokenizer: dict[str, Any], game: str, c: dict[str, Any]) -> Any:
    import torch

    from scaleworld.evaluation.control import WorldModelAgent
    from scaleworld.models.agent import ActorCritic, AgentConfig
    from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

    cfg = model.config
    agent = ActorCritic(AgentConfig.for_model(cfg))
    return WorldModelAgent(tokenizer=Tokenizer(TokenizerConfig.from_dict(tokenizer)), model=model.cpu(), agent=agent,
                           game=cfg.games[0] if cfg.games else game, generator=torch.Generator().manual_seed(0),
                           greedy=c.get("greedy", False))


def env_rate(meter: Meter, game: str, protocol: dict[str, Any], num_envs: int) -> float:
    """Agent steps per second of `num_envs` emulators of `game` under the random policy."""
    from scaleworld.data.random_policy import RandomPolicy

    return meter.rate(shape_key("env", game, num_envs),
                      lambda: meter.env_steps(game, protocol, num_envs, lambda: RandomPolicy(seed=0)))


@dataclass
class DynamicsShape:
    """What a dynamics job, or a job downstream of one, is measured on: its model (with the
    tokenizer's code shape), training settings, tokens per step, and the forward rate in tokens/s."""

    model: dict[str, Any]
    train: dict[str, Any]
    tokens: int
    forward: float

    def net(self, device: Any) -> Any:
        """A fresh model of this shape on `device` (random weights, seeded)."""
        import torch

        from scaleworld.models.dynamics import DynamicsModel
        from scaleworld.models.dynamics_config import DynamicsConfig

        torch.manual_seed(0)
        return DynamicsModel(DynamicsConfig.from_dict(self.model)).to(device)


def dynamics_shape(ctx: WorkContext) -> DynamicsShape:
    """The `DynamicsShape` of `ctx.job` (a dynamics job) or of the dynamics job upstream of it."""
    from scaleworld.objectives.world_model import DynamicsLoss

    meter = ctx.meter
    dynamics = ctx.job if ctx.job.kind == "dynamics" else of_kind(ctx.graph, ctx.job, "dynamics")[0]
    model = dynamics_model(dynamics.config["model"], ctx.graph, dynamics)
    train = dynamics.config["train"]
    shape = DynamicsShape(model=model, train=train, tokens=train["batch_size"] * model["context"], forward=0.0)
    shape.forward = meter.rate(shape_key("forward", model, train["batch_size"]), lambda: meter.forward(
        DynamicsLoss(shape.net(meter.device)), synthetic_token_windows(model, meter.device), train["batch_size"],
        shape.tokens))
    return shape
