"""The tokenizer kind: one categorical tokenizer for the games of its collect inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.study.kinds.base import RunContext, TrainingStage
from scaleworld.study.kinds.collect import CollectStage


@dataclass(frozen=True, kw_only=True)
class TokenizerStage(TrainingStage):
    """One tokenizer for the games of its collect inputs, on the dynamics models' episode split."""

    KIND = "tokenizer"
    ARTIFACT = "tokenizer.pt"

    def model_config(self) -> Any:
        from scaleworld.models.tokenizer_config import TokenizerConfig

        return TokenizerConfig.from_dict(self.model)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from scaleworld.training.runs import train_tokenizer
        from scaleworld.training.trainer import resolve_device  # the GPU the job was given, if any

        info = train_tokenizer(data_dirs=ctx.artifacts(CollectStage), out=ctx.out, config=self.model_config(),
                               train=self.train_config(), val_fraction=self.val_fraction,
                               split_seed=self.split_seed, progress=False, device=resolve_device())
        return {"tokenizer": self.ARTIFACT, "final": info["final"], "quality": info["quality"]}
