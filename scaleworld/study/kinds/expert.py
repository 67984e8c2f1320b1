"""The expert kind: a PPO expert trained on its game, then scored (the upper anchor)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from scaleworld.study.assumptions import env_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RECORD_BYTES, RunContext, Stage, at_least
from scaleworld.study.meter import WorkContext, shape_key

EXPERT_BYTES = 2_600_000
"""An expert's exported network (policy.pt2) and logs: 2.5 MB, measured on the smoke study."""
EXPERT_STATE_BYTES = 7_400_000
"""Its resumable PPO state (training/state.pt: weights, Adam moments): 7.3 MB, measured likewise."""


@dataclass(frozen=True, kw_only=True)
class ExpertStage(Stage):
    """A PPO expert trained on the game for `agent_steps` (x frame skip = frames), then scored: the
    upper anchor. `episodic_life`, `fire_reset`: PPOConfig's learning-only signals."""

    KIND = "expert"
    ARTIFACT = "expert"
    RESUME_STATE = ("expert/training/state.pt",)  # scaleworld.experts.ppo_state.STATE_FILE
    GPU = True
    game: str
    protocol: dict[str, Any]
    agent_steps: int
    num_envs: int
    seed: int
    episodes: int
    episodic_life: bool
    fire_reset: bool

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        """The exported PPO network and its logs, and its training state when kept: the network is the
        same for every study (EXPERT_BYTES, measured)."""
        return EXPERT_BYTES + (EXPERT_STATE_BYTES if keep else 0) + RECORD_BYTES

    def ppo_config(self) -> Any:
        from scaleworld.experts.ppo_config import PPOConfig

        return PPOConfig(agent_steps=self.agent_steps, seed=self.seed, num_envs=self.num_envs,
                         episodic_life=self.episodic_life, fire_reset=self.fire_reset)

    def check(self) -> None:
        super().check()
        self.ppo_config()
        at_least(1, episodes=self.episodes)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Train (resuming from its checkpoint), then measure its score."""
        from scaleworld.experts.anchor import score_expert
        from scaleworld.experts.ppo import train_ppo
        from scaleworld.experts.tasks import AtariTask
        from scaleworld.training.trainer import resolve_device

        protocol = self.protocol_config()
        result = train_ppo(AtariTask(game=self.game, protocol=protocol), self.ppo_config(), ctx.out / self.ARTIFACT,
                           device=resolve_device(), progress=False)
        record = score_expert(ctx.out / self.ARTIFACT, episodes=self.episodes, protocol=protocol, seed=self.seed)
        return {"expert": "expert", "updates": result.updates_done, "frames": result.frames_done,
                "score": record["mean"]}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Its agent steps at the emulators' rate: a lower bound (the network's updates not counted)."""
        return env_seconds(self.agent_steps)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Agent steps, at the rate of train_ppo for 3 updates on the study's first game."""
        from scaleworld.experts.ppo import train_ppo
        from scaleworld.experts.tasks import AtariTask

        meter, ppo = ctx.meter, self.ppo_config()
        per_update = ppo.num_envs * ppo.rollout_steps

        def measure() -> float:
            start = time.perf_counter()
            game = ctx.graph.by_kind(self.KIND)[0].config["game"]
            train_ppo(AtariTask(game=game, protocol=self.protocol_config()), ppo,
                      meter.fresh_folder(), device=meter.device, progress=False, stop_after=3)
            return 3 * per_update / (time.perf_counter() - start)

        rate = meter.rate(shape_key(self.KIND, ctx.job.config.get("ppo")), measure)
        return self.agent_steps / rate, f"{rate:,.0f} agent steps/s", False
