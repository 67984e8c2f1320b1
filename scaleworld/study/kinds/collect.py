"""The collect kind: a game's fixed offline dataset, from its expert, an imported expert or random."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.study.assumptions import env_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RECORD_BYTES, RunContext, Stage, at_least
from scaleworld.study.kinds.expert import ExpertStage
from scaleworld.study.meter import WorkContext, env_rate

ROW_BYTES = 43
"""Disk of a dataset row's columns besides its frame (action, reward, flags, episode and step ids),
measured on the smoke study's datasets (42.3 bytes a row)."""


@dataclass(frozen=True, kw_only=True)
class CollectStage(Stage):
    """The fixed offline dataset of a game. `policy`: {source: random | ppo | a folder, sha256 of an
    imported expert's weights, sampling, epsilon}."""

    KIND = "collect"
    ARTIFACT = "dataset"
    game: str
    protocol: dict[str, Any]
    policy: dict[str, Any]
    steps: int
    num_envs: int
    seed: int

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        """RGB frames of frame_size^2 x 3 bytes a step, and the other columns' ROW_BYTES."""
        return self.steps * (3 * self.protocol["frame_size"] ** 2 + ROW_BYTES) + RECORD_BYTES

    def check(self) -> None:
        super().check()
        at_least(1, steps=self.steps, num_envs=self.num_envs)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.data.collect import collect_dataset
        from scaleworld.experts.policies import make_policy

        ctx.fresh(self.ARTIFACT)  # a dataset whose done.json was not written: redo it
        source = self.policy["source"]
        if source == "ppo":
            (expert,) = ctx.artifacts(ExpertStage)
            source = str(expert)
        options = {k: self.policy[k] for k in ("sampling", "epsilon") if k in self.policy}
        protocol = self.protocol_config()
        policy = make_policy(source, seed=self.seed, protocol=protocol, **options)
        manifest = collect_dataset(game=self.game, policy=policy, policy_identity=policy.identity, steps=self.steps,
                                   out=ctx.out / self.ARTIFACT, protocol=protocol, seed=self.seed,
                                   num_envs=self.num_envs, progress=False)
        return {"dataset": self.ARTIFACT, "episodes": manifest["counts"]["episodes"],
                "mean_return": manifest["returns"]["mean"]}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Its agent steps at the emulators' rate."""
        return env_seconds(self.steps)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Agent steps, at the rate of VectorAtari with the random policy and the job's emulators."""
        rate = env_rate(ctx.meter, self.game, self.protocol, self.num_envs)
        return self.steps / rate, f"{rate:,.0f} agent steps/s", False
