"""The anchor kind: a game's normalisation anchors, the random policy's score and the upper one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.assumptions import env_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RunContext, Stage, at_least
from scaleworld.study.kinds.expert import ExpertStage
from scaleworld.study.meter import WorkContext, env_rate, episode_cap, episode_steps


@dataclass(frozen=True, kw_only=True)
class AnchorStage(Stage):
    """A game's normalisation anchors: the random policy's score and the upper one (`upper`: expert
    or human). `expert`: {source, episodes, sha256} of an imported expert the job scores itself."""

    KIND = "anchor"
    ARTIFACT = "anchor.json"
    game: str
    protocol: dict[str, Any]
    episodes: int
    num_envs: int
    seed: int
    upper: str
    expert: dict[str, Any] | None = None

    def check(self) -> None:
        super().check()
        at_least(1, episodes=self.episodes, num_envs=self.num_envs)
        if self.upper not in ("expert", "human"):
            raise ScaleworldError(f"upper={self.upper!r}: use expert or human")
        if self.expert is not None:
            at_least(1, episodes=self.expert["episodes"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """The random policy's score and the upper anchor, and the expert's quality record wherever
        the expert was scored (a PPO expert job always scores it)."""
        from scaleworld.evaluation.control import measure_anchors
        from scaleworld.experts.anchor import score_expert
        from scaleworld.experts.checkpoint import SCORE_JSON

        protocol = self.protocol_config()
        expert_record = None
        experts = ctx.artifacts(ExpertStage)
        if experts:  # a PPO expert job measured its score under the study's protocol
            expert_record = json.loads((experts[0] / SCORE_JSON).read_text())
        elif self.upper == "expert":  # an imported expert: score it here, under the study's protocol
            expert_record = score_expert(self.expert["source"], episodes=self.expert["episodes"], protocol=protocol,
                                         seed=self.seed, num_envs=self.num_envs, out=ctx.out / "expert_score.json")
        record = measure_anchors(game=self.game, protocol=protocol, episodes=self.episodes, seed=self.seed,
                                 num_envs=self.num_envs, upper=self.upper, expert_record=expert_record)
        write_json_atomic(ctx.out / self.ARTIFACT, record)
        return {"anchor": self.ARTIFACT, "random": record["random"]["score"], "upper": record["upper"]["score"],
                "upper_kind": record["upper"]["kind"],
                **({"expert_margin_se": record["expert"]["margin_se"]} if "expert" in record else {})}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Its episodes at the protocol's cap (an upper bound), at the emulators' rate."""
        return env_seconds(self.episodes * episode_cap(self.protocol))

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Agent steps of the random policy's episodes (their length measured when the game's data is
        collected, else the protocol's cap: an upper bound)."""
        rate = env_rate(ctx.meter, self.game, self.protocol, self.num_envs)
        length, measured = episode_steps(ctx.store, ctx.graph, ctx.job)
        return self.episodes * length / rate, f"{rate:,.0f} agent steps/s", not measured
