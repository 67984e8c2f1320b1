"""The tokenizer kind: one categorical tokenizer for the games of its collect inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.study.assumptions import flops_seconds
from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds.base import RunContext, TrainingStage
from scaleworld.study.kinds.collect import CollectStage
from scaleworld.study.meter import WorkContext, shape_key, synthetic_windows, tokenizer_loss


@dataclass(frozen=True, kw_only=True)
class TokenizerStage(TrainingStage):
    """One tokenizer for the games of its collect inputs, on the dynamics models' episode split."""

    KIND = "tokenizer"
    ARTIFACT = "tokenizer.pt"

    def model_config(self) -> Any:
        from scaleworld.models.tokenizer_config import TokenizerConfig

        return TokenizerConfig.from_dict(self.model)

    def parameters(self) -> int:
        from scaleworld.models.tokenizer_config import tokenizer_parameters

        return tokenizer_parameters(self.model_config())

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.training.runs import train_tokenizer
        from scaleworld.training.trainer import resolve_device  # the GPU the job was given, if any

        info = train_tokenizer(data_dirs=ctx.artifacts(CollectStage), out=ctx.out, config=self.model_config(),
                               train=self.train_config(), val_fraction=self.val_fraction,
                               split_seed=self.split_seed, progress=False, device=resolve_device())
        return {"tokenizer": self.ARTIFACT, "final": info["final"], "quality": info["quality"]}

    def assumed_seconds(self, graph: Graph, job: Job) -> float:
        """Training FLOPs: 3 x 2 x its multiply-accumulates a frame (encode and decode), x the frames it trains on."""
        from scaleworld.models.tokenizer_config import tokenizer_macs

        macs = tokenizer_macs(self.model_config())
        return flops_seconds(6.0 * (macs["encode"] + macs["decode"]) * self.train["steps"] * self.train["batch_size"])

    def work(self, ctx: WorkContext) -> tuple[float, str, bool]:
        """Gradient steps (and held-out batches), at the Trainer's rate on TokenizerLoss."""
        import torch

        from scaleworld.models.tokenizer import Tokenizer, TokenizerConfig

        meter, model, train = ctx.meter, self.model, self.train

        def measure() -> float:
            net = Tokenizer(TokenizerConfig.from_dict(model)).to(meter.device)
            size = model["frame_size"]
            games = len(ctx.job.labels.get("games") or [None])
            windows = synthetic_windows({"pixels": ((size, size, 3), torch.uint8, 256)}, games=games, seq_len=1,
                                        frame_size=size, device=None)  # frames stay on the host, as a run's do
            return meter.training(tokenizer_loss(net, meter.device, games), windows, train, 1.0)

        rate = meter.rate(shape_key(self.KIND, model, train["batch_size"]), measure)
        steps = train["steps"] + (train["steps"] // train["eval_every"] + 1) * train["eval_batches"] / 3
        return steps / rate, f"{rate:,.1f} steps/s", False
