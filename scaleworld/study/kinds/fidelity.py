"""The fidelity kind: a dynamics model scored on its games' held-out episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.errors import ScaleworldError
from scaleworld.study.assumptions import flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RunContext, Stage, at_least
from scaleworld.study.kinds.tokens import TokensStage
from scaleworld.study.meter import WorkContext, dynamics_parameters, dynamics_shape, nearest, of_kind


@dataclass(frozen=True, kw_only=True)
class FidelityStage(Stage):
    """Held-out NLL, reward and termination errors, open-loop PSNR of one dynamics model."""

    KIND = "fidelity"
    ARTIFACT = "fidelity.json"
    GPU = True
    context_steps: int
    horizon: int
    rollouts: int
    seed: int
    measures: str = "fidelity/3"
    """What the job measures, so that a new measure redoes finished fidelity jobs: ``fidelity/3`` adds
    the unigram and copy-last-frame baselines; ``fidelity/2`` the training-split NLL (regime-rule/2's
    mechanism check); ``fidelity/1`` (absent) before."""

    def check(self) -> None:
        super().check()
        at_least(1, context_steps=self.context_steps, horizon=self.horizon, rollouts=self.rollouts)
        if self.measures != FidelityStage.measures:
            raise ScaleworldError(f"measures={self.measures!r}: this scaleworld measures {FidelityStage.measures!r}; "
                                  "run the study with the scaleworld that planned it")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.evaluation.fidelity import evaluate_fidelity

        (dynamics,) = ctx.inputs("dynamics")
        (tokenizer,) = ctx.inputs("tokenizer")
        record = evaluate_fidelity(dynamics_dir=dynamics, tokenizer_dir=tokenizer,
                                   token_dirs=ctx.artifacts(TokensStage), context_steps=self.context_steps,
                                   horizon=self.horizon, rollouts=self.rollouts, seed=self.seed,
                                   out=ctx.out / self.ARTIFACT)
        best = record.get("best")
        nll = lambda games: {g: r["nll_nats_per_frame"] for g, r in games.items()}
        return {"fidelity": self.ARTIFACT, "nll": nll(record["games"]),
                **({"best": {"step": best["step"], "nll": nll(best["games"])}} if best else {})}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Inference FLOPs: 2 x the model's parameters a token, one token a step, x its games' collected steps
        (as `work` counts them)."""
        tokens = [graph.jobs[i] for i in nearest(graph, job, "dynamics").inputs]  # a tokens job per game
        frames = sum(graph.jobs[i].config["steps"] for t in tokens for i in t.inputs
                     if graph.jobs[i].kind == "collect")
        return flops_seconds(2.0 * dynamics_parameters(graph, job) * frames)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Tokens scored (the game's collected steps) at the model's forward rate."""
        shape = dynamics_shape(ctx)
        games = of_kind(ctx.graph, ctx.job, "dynamics")[0].labels["games"]
        frames = sum(j.config["steps"] for j in ctx.graph.by_kind("collect") if j.config["game"] in games)
        return frames / shape.forward, f"{shape.forward:,.0f} tokens/s forward", False
