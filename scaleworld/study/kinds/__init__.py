"""One home per job kind: each module holds a kind's typed stage (its config, checks and artifact),
whether it wants a GPU, and how it runs (`Stage.run`). The graph builder (scaleworld.study.expand),
the driver (scaleworld.study.jobs), the executors and the store ask the stage and never switch on a
kind's name. Adding a kind: a module here and its line in `STAGES`.
"""

from __future__ import annotations

from typing import Any

from scaleworld.study.graph import KINDS, Job
from scaleworld.study.kinds.analysis import AnalysisStage
from scaleworld.study.kinds.anchor import AnchorStage
from scaleworld.study.kinds.base import RunContext, Stage
from scaleworld.study.kinds.collect import CollectStage
from scaleworld.study.kinds.control import ControlStage
from scaleworld.study.kinds.dynamics import DynamicsStage
from scaleworld.study.kinds.expert import ExpertStage
from scaleworld.study.kinds.fidelity import FidelityStage
from scaleworld.study.kinds.policy import PolicyStage
from scaleworld.study.kinds.tokenizer import TokenizerStage
from scaleworld.study.kinds.tokens import TokensStage

STAGES: dict[str, type[Stage]] = {s.KIND: s for s in (ExpertStage, CollectStage, TokenizerStage, TokensStage,
                                                      DynamicsStage, FidelityStage, AnchorStage, PolicyStage,
                                                      ControlStage, AnalysisStage)}

assert tuple(STAGES) == KINDS, "one stage per kind, in dependency order"

GPU_KINDS = frozenset(kind for kind, stage in STAGES.items() if stage.GPU)
"""Kinds whose jobs use a GPU when one is given (the local executor pins each to a GPU of its own)."""
PARTIAL_KINDS = frozenset(kind for kind, stage in STAGES.items() if stage.RUNS_ON_WHAT_FINISHED)
"""Kinds whose jobs run on what finished of their inputs (`Stage.RUNS_ON_WHAT_FINISHED`)."""


def stage_of(job: Job) -> Any:
    """The typed config of `job` (a Stage subclass instance, by its kind)."""
    return STAGES[job.kind](**job.config)


__all__ = ["STAGES", "GPU_KINDS", "RunContext", "Stage", "stage_of", "AnalysisStage", "AnchorStage",
           "CollectStage", "ControlStage", "DynamicsStage", "ExpertStage", "FidelityStage", "PolicyStage",
           "TokenizerStage", "TokensStage"]
