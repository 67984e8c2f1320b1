"""Which dynamics jobs train together (``launcher.pack``): packs fixed by the graph, not by timing.

A pack is up to K dynamics jobs of one shape: the same stage settings but the training seed (so
the same model, steps, batch and split; the data may differ: the seeds of one size and game, or
several games' single runs), taken in graph order. Packs are fixed from the graph, not formed from
whichever jobs happen to be ready, so a study's numbers do not depend on its executor's timing:
packed arithmetic differs from separate runs' (and from other packs') in the last bits
(scaleworld/training/packed.py). A pack starts when every member's inputs are done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from scaleworld.study.graph import Graph, Job
from scaleworld.study.kinds import STAGES


def pack_key(job: Job) -> str | None:
    """What a job must share with the others of its pack (its settings but the seed); None: never packed."""
    if not STAGES[job.kind].PACKS:
        return None
    config = {**job.config, "train": {k: v for k, v in job.config["train"].items() if k != "seed"}}
    return json.dumps(config, sort_keys=True, default=str)


def packs(graph: Graph, size: int, *, skip: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """Every job id -> the ids of its pack, in graph order (a 1-tuple: the job runs alone). `skip`:
    jobs dropped from their packs (those already done); the packs are cut before, so what is left of
    each is what it was."""
    skipped = set(skip)
    by_key: dict[str, list[str]] = {}
    for job in graph.jobs.values():
        key = pack_key(job) if size > 1 else None
        if key is not None:
            by_key.setdefault(key, []).append(job.id)
    out = {job_id: (job_id,) for job_id in graph.jobs}
    for ids in by_key.values():
        for i in range(0, len(ids), size):
            chunk = tuple(j for j in ids[i:i + size] if j not in skipped)
            for job_id in chunk:
                out[job_id] = chunk
    return out
