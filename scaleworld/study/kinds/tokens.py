"""The tokens kind: a game's dataset encoded by its tokenizer, behind the tokenizer's quality gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.study.assumptions import flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RECORD_BYTES, RunContext, Stage
from scaleworld.study.kinds.collect import ROW_BYTES, CollectStage
from scaleworld.study.meter import WorkContext, nearest, of_kind, rate_of, shape_key


@dataclass(frozen=True, kw_only=True)
class TokensStage(Stage):
    """A game's dataset encoded by its tokenizer (behind the quality gate, a `Job.checks` entry)."""

    KIND = "tokens"
    ARTIFACT = "tokens"
    GPU = True

    def disk_bytes(self, inputs: list[Job], *, keep: bool) -> float:
        """A byte per latent variable a step, and the rows' other columns (`collect.ROW_BYTES`)."""
        steps = next(job.config["steps"] for job in inputs if job.kind == "collect")
        groups = next(job.config["model"]["groups"] for job in inputs if job.kind == "tokenizer")
        return steps * (groups + ROW_BYTES) + RECORD_BYTES

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.models.encode import encode_dataset
        from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION

        ctx.fresh(self.ARTIFACT)
        (tokenizer,) = ctx.inputs("tokenizer")
        (dataset,) = ctx.artifacts(CollectStage)
        gate = ctx.job.checks.get("max_residual", MAX_RESIDUAL_FRACTION)
        manifest = encode_dataset(tokenizer_dir=tokenizer, data_dir=dataset, out=ctx.out / self.ARTIFACT,
                                  max_residual=gate, progress=False)
        return {"tokens": self.ARTIFACT, "quality": manifest["tokenizer"]["quality"], "max_residual": gate}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Encoding FLOPs: 2 x the encoder's multiply-accumulates a frame, x the collect job's steps."""
        from scaleworld.models.tokenizer_config import TokenizerConfig, tokenizer_macs

        macs = tokenizer_macs(TokenizerConfig.from_dict(nearest(graph, job, "tokenizer").config["model"]))
        steps = sum(graph.jobs[i].config["steps"] for i in job.inputs if graph.jobs[i].kind == CollectStage.KIND)
        return flops_seconds(2.0 * macs["encode"] * steps)

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Frames encoded (the collect job's steps), at Tokenizer.encode's rate on batches of 256."""
        import torch

        from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

        meter = ctx.meter
        (tokenizer,) = of_kind(ctx.graph, ctx.job, "tokenizer")[:1] or [None]
        collects = [ctx.graph.jobs[i] for i in ctx.job.inputs if ctx.graph.jobs[i].kind == CollectStage.KIND]
        model = tokenizer.config["model"]

        def measure() -> float:
            net = Tokenizer(TokenizerConfig.from_dict(model)).to(meter.device).eval()
            frames = torch.randint(0, 256, (256, model["frame_size"], model["frame_size"], 3), dtype=torch.uint8,
                                   device=meter.device)

            def step() -> float:
                with torch.no_grad():
                    net.encode(frames)
                return 256.0

            return rate_of(step, seconds=meter.seconds, sync=meter.sync)

        rate = meter.rate(shape_key(self.KIND, model), measure)
        return sum(j.config["steps"] for j in collects) / rate, f"{rate:,.0f} frames/s", False
