"""The tokens kind: a game's dataset encoded by its tokenizer, behind the tokenizer's quality gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaleworld.study.kinds.base import RunContext, Stage
from scaleworld.study.kinds.collect import CollectStage


@dataclass(frozen=True, kw_only=True)
class TokensStage(Stage):
    """A game's dataset encoded by its tokenizer (behind the quality gate, a `Job.checks` entry)."""

    KIND = "tokens"
    ARTIFACT = "tokens"
    GPU = True

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
