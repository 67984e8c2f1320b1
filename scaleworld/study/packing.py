"""Which dynamics jobs train together (``launcher.pack``): packs fixed by the graph, not by timing.

A pack is up to K dynamics jobs of one shape: the same stage settings but the training seed (so
the same model, steps, batch and split; the data may differ: the seeds of one size and game, or
several games' single runs), taken in graph order. Packs are fixed from the graph, not formed from
whichever jobs happen to be ready, so a study's numbers do not depend on its executor's timing:
packed arithmetic differs from separate runs' (and from other packs') in the last bits
(scaleworld/training/packed.py). A pack starts when every member's inputs are done.

Pack size per model size: up to ``launcher.pack`` runs, fewer where K runs' estimated training memory
(`scaleworld.models.dynamics_config.training_bytes`) would not fit in ``launcher.pack_memory_gb`` less a 15% margin
(allocator fragmentation, the compiler's workspaces): with the spec's 80 GB, paper-d96 at batch 64
packs 6, not 8. A spec setting, not the executing device's memory, so the packs (and the numbers)
are the same on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds import STAGES

MEMORY_MARGIN = 0.85
"""The share of `pack_memory_gb` a pack's estimate may fill."""


def pack_key(job: Job) -> str | None:
    """What a job must share with the others of its pack (its settings but the seed); None: never packed."""
    if not STAGES[job.kind].PACKS:
        return None
    config = {**job.config, "train": {k: v for k, v in job.config["train"].items() if k != "seed"}}
    return json.dumps(config, sort_keys=True, default=str)


def pack_size(graph: Graph, job: Job, size: int, memory_gb: float | None) -> int:
    """The runs a pack of `job`'s shape holds: `size`, capped by `memory_gb` (None: no cap). The model
    is the one the job trains: its code shape is its tokenizer's (`meter.dynamics_model`)."""
    if memory_gb is None or size <= 1:
        return size
    from scaleworld.models.dynamics_config import DynamicsConfig
    from scaleworld.study.meter import dynamics_model

    model = DynamicsConfig.from_dict(dynamics_model(job.config["model"], graph, job))
    return pack_size_for(model, batch=job.config["train"]["batch_size"], size=size, memory_gb=memory_gb)


def pack_size_for(model: Any, *, batch: int, size: int, memory_gb: float) -> int:
    """`size` runs of `model` (a DynamicsConfig) at `batch`, fewer where their estimated training memory
    (`training_bytes`) would not fit in MEMORY_MARGIN x `memory_gb`; at least one."""
    from scaleworld.models.dynamics_config import training_bytes

    fits = int(MEMORY_MARGIN * memory_gb * 2**30 // training_bytes(model, batch=batch))
    return max(1, min(size, fits))


def packs(graph: Graph, size: int, *, memory_gb: float | None = None,
          skip: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """Every job id -> the ids of its pack, in graph order (a 1-tuple: the job runs alone); a pack
    holds up to `size` jobs, fewer where `memory_gb` caps it (`pack_size`). `skip`: jobs dropped from
    their packs (those already done); the packs are cut before, so what is left of each is what it was."""
    skipped = set(skip)
    by_key: dict[str, list[str]] = {}
    for job in graph.jobs.values():
        key = pack_key(job) if size > 1 else None
        if key is not None:
            by_key.setdefault(key, []).append(job.id)
    out = {job_id: (job_id,) for job_id in graph.jobs}
    for ids in by_key.values():
        k = pack_size(graph, graph.jobs[ids[0]], size, memory_gb)
        for i in range(0, len(ids), k):
            chunk = tuple(j for j in ids[i:i + k] if j not in skipped)
            for job_id in chunk:
                out[job_id] = chunk
    return out
