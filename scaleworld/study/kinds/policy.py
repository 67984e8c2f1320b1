"""The policy kind: an actor-critic trained purely inside one world model, for one game."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.errors import ScaleworldError
from scaleworld.study.assumptions import flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import BYTES_PER_PARAMETER, RECORD_BYTES, RunContext, Stage
from scaleworld.study.kinds.tokens import TokensStage
from scaleworld.study.meter import WorkContext, dynamics_parameters, dynamics_shape, policy_rate, shape_key

POLICY_CHECKPOINT_SIZE = 3.6
"""A policy's checkpoint.pt over its policy.pt (weights, target critic, AdamW's moments): 3.58x,
measured on the smoke study."""


@dataclass(frozen=True, kw_only=True)
class PolicyStage(Stage):
    """An actor-critic trained purely inside one world model, for one game."""

    KIND = "policy"
    ARTIFACT = "policy.pt"
    RESUME_STATE = ("checkpoint.pt",)  # scaleworld.training.trainer.CHECKPOINT
    GPU = True
    policy: dict[str, Any]
    train: dict[str, Any]
    starts: str | None = None
    """Which episodes of the model's split imagination starts from (`START_SPLITS`); None: held_out
    (what every policy job did before the choice existed, so those jobs keep their identities)."""

    def policy_config(self) -> Any:
        from scaleworld.models.policy_config import PolicyConfig

        return PolicyConfig(**self.policy)

    def start_split(self) -> str:
        """The split imagination starts from (unset: held_out)."""
        from scaleworld.imagination.config import START_SPLITS

        return self.starts or START_SPLITS[0]

    def train_config(self) -> Any:
        from scaleworld.training.config import TrainConfig

        return TrainConfig(**self.train)

    def check(self) -> None:
        super().check()
        self.policy_config()
        self.train_config()
        from scaleworld.imagination.config import START_SPLITS

        if self.starts is not None and self.starts not in START_SPLITS[1:]:
            raise ScaleworldError(f"starts={self.starts!r}: use one of {', '.join(START_SPLITS[1:])} (or leave it "
                                  "unset for held_out)")

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        """policy.pt (the actor-critic on its world model's latent and width), and its checkpoint when
        kept: weights, the target critic and AdamW's moments, POLICY_CHECKPOINT_SIZE times the file."""
        from scaleworld.models.dynamics_config import DynamicsConfig
        from scaleworld.models.policy_config import AgentConfig, agent_parameters

        model = DynamicsConfig.from_dict(next(job.config["model"] for job in inputs if job.kind == "dynamics"))
        weights = BYTES_PER_PARAMETER * agent_parameters(AgentConfig.for_model(model, self.policy_config()))
        return weights * (1 + (POLICY_CHECKPOINT_SIZE if keep else 0)) + RECORD_BYTES

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Train a policy purely inside the world model (resuming from its checkpoint)."""
        from scaleworld.imagination.train import train_policy
        from scaleworld.training.trainer import resolve_device

        (dynamics,) = ctx.inputs("dynamics")
        (tokens,) = ctx.artifacts(TokensStage)
        info = train_policy(dynamics_dir=dynamics, token_dir=tokens, out=ctx.out, config=self.policy_config(),
                            train=self.train_config(), starts=self.start_split(), device=resolve_device(),
                            progress=False)
        return {"policy": self.ARTIFACT, "game": info["game"], "final": info["final"]}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """The world model's FLOPs in imagination: 2 x its parameters a step, updates x batch x horizon steps
        (the actor-critic's own, far smaller, left out)."""
        steps = self.train["steps"] * self.train["batch_size"] * self.policy["horizon"]
        return flops_seconds(2.0 * dynamics_parameters(graph, job) * steps)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Actor-critic updates at train_in_imagination's rate, the job's model, policy and batch."""
        meter, shape, c = ctx.meter, dynamics_shape(ctx), ctx.job.config
        rate = meter.rate(shape_key(self.KIND, shape.model, c), lambda: policy_rate(meter, shape.net(meter.device), c))
        return self.train["steps"] / rate, f"{rate:,.2f} updates/s", False
