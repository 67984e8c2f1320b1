"""The control kind: a trained policy scored in its real game, raw and normalised by the anchors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaleworld.evaluation.exploitation import random_episodes
from scaleworld.study.assumptions import env_seconds, flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.anchor import AnchorStage
from scaleworld.study.kinds.base import RunContext, Stage, at_least
from scaleworld.study.meter import (
    WorkContext,
    dynamics_parameters,
    dynamics_shape,
    episode_cap,
    episode_steps,
    of_kind,
    shape_key,
    world_model_agent,
)


@dataclass(frozen=True, kw_only=True)
class ControlStage(Stage):
    """A policy's score in its real game, raw and normalised by the game's anchors."""

    KIND = "control"
    ARTIFACT = "control.json"
    GPU = True
    episodes: int
    num_envs: int
    seed: int
    greedy: bool
    protocol: dict[str, Any]

    def check(self) -> None:
        super().check()
        at_least(1, episodes=self.episodes, num_envs=self.num_envs)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.evaluation.control import evaluate_control

        (policy,) = ctx.inputs("policy")
        (dynamics,) = ctx.inputs("dynamics")
        (tokenizer,) = ctx.inputs("tokenizer")
        (anchors,) = ctx.artifacts(AnchorStage)
        record = evaluate_control(policy_dir=policy, dynamics_dir=dynamics, tokenizer_dir=tokenizer,
                                  anchors=json.loads(anchors.read_text()), episodes=self.episodes,
                                  protocol=self.protocol_config(), seed=self.seed, num_envs=self.num_envs,
                                  greedy=self.greedy, out=ctx.out / self.ARTIFACT)
        return {"control": self.ARTIFACT, "game": record["game"], "score": record["mean"],
                "normalised": record["normalised"]["mean"], "upper_kind": record["normalised"]["upper_kind"],
                "diagnostic": record["diagnostic"]}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Its episodes at the protocol's cap (an upper bound), the policy's and the random policy's of the
        exploitation diagnostic: the emulators' time, and the world model's FLOPs a step (2 x parameters;
        latency, which one frame at a time is bound by, not counted)."""
        steps = (self.episodes + random_episodes(self.episodes)) * episode_cap(self.protocol)
        return env_seconds(steps) + flops_seconds(2.0 * dynamics_parameters(graph, job) * steps)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Agent steps of the policy's episodes, at the rate of VectorAtari with a WorldModelAgent of
        the job's model sizes (episode lengths as the anchor kind's)."""
        meter, shape, c = ctx.meter, dynamics_shape(ctx), ctx.job.config
        tokenizer = of_kind(ctx.graph, ctx.job, "tokenizer")[0].config["model"]
        game = ctx.job.labels["game"]
        rate = meter.rate(shape_key(self.KIND, shape.model, tokenizer, game, self.num_envs), lambda: meter.env_steps(
            game, self.protocol, self.num_envs, lambda: world_model_agent(shape.net(meter.device), tokenizer, game, c)))
        length, measured = episode_steps(ctx.store, ctx.graph, ctx.job)
        episodes = self.episodes + random_episodes(self.episodes)  # the policy's and the diagnostic's random ones
        return episodes * length / rate, f"{rate:,.0f} agent steps/s", not measured
