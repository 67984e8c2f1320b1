"""The graph of a study's jobs; a job's identity is a hash of what decides its output. A spec
expands into it in `scaleworld.study.expand`.

`KINDS` lists the kinds in dependency order (what each is and needs: `scaleworld.study.expand`).

`Job.id` = SHA-256 (first 16 hex digits) of the canonical JSON of {kind, config, input ids}: the
resolved settings that change the job's output, and nothing else (no names, paths or labels). So
identical jobs in different specs or variants share one folder, and a changed setting changes
exactly the identities downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

KINDS = ("expert", "collect", "tokenizer", "tokens", "dynamics", "fidelity", "anchor", "policy", "control", "analysis")


@dataclass
class Job:
    kind: str
    config: dict[str, Any]
    inputs: list[str]
    labels: dict[str, Any] = field(default_factory=dict)
    """Human-readable facts for status and reports (game, size, seed, mode, variants); not hashed."""
    checks: dict[str, Any] = field(default_factory=dict)
    """Quality gates: settings that decide whether the job may run, not what it writes (the tokens
    job's ``max_residual``). Not hashed, so a changed threshold never redoes finished work."""
    id: str = ""

    def __post_init__(self) -> None:
        payload = json.dumps({"kind": self.kind, "config": self.config, "inputs": self.inputs},
                             sort_keys=True, separators=(",", ":"))
        self.id = hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The job as plain data (shares its dicts: for writing, not for editing)."""
        return {"kind": self.kind, "config": self.config, "inputs": self.inputs, "labels": self.labels,
                "checks": self.checks, "id": self.id}


class Graph:
    """Jobs by id, in an order where every job comes after its inputs."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> str:
        if job.id in self.jobs:  # shared by several variants or modes: merge the list labels
            known = self.jobs[job.id]
            for key in ("variants", "modes"):
                if key in job.labels:
                    known.labels[key] = sorted(set(known.labels.get(key, [])) | set(job.labels[key]))
            for key, value in job.checks.items():  # a gate shared by variants: the strictest applies
                known.checks[key] = min(known.checks.get(key, value), value)
        else:
            missing = [i for i in job.inputs if i not in self.jobs]
            assert not missing, f"inputs must be added first: {missing}"
            self.jobs[job.id] = job
        return job.id

    def by_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.kind == kind]

    def counts(self) -> dict[str, int]:
        return {k: len(self.by_kind(k)) for k in KINDS if self.by_kind(k)}

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": [j.to_dict() for j in self.jobs.values()]}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Graph:
        graph = cls()
        for j in payload["jobs"]:
            if j["kind"] not in KINDS:  # an edited plan: a job no stage runs is not dropped silently
                raise ValueError(f"a job of unknown kind {j['kind']!r}")
            job = Job(kind=j["kind"], config=j["config"], inputs=j["inputs"], labels=j["labels"],
                      checks=j.get("checks", {}))
            graph.jobs[job.id] = job
        return graph


LABEL_KEYS = ("game", "size", "seed", "mode", "trial", "variant", "scope")
"""The labels a user selects jobs by (`scaleworld status --list`); a joint job's ``games``, a shared
job's ``modes`` and ``variants`` match each of theirs."""


def describe(job: Job) -> str:
    """A job in a few words: its kind and the labels that tell it from its siblings."""
    labels = job.labels
    parts = [job.kind]
    for key in ("game", "size", "seed", "trial"):
        if key in labels:
            parts.append(f"{key}={labels[key]}")
    if "games" in labels and "game" not in labels:
        parts.append("games=" + "+".join(labels["games"]))
    if "modes" in labels:
        parts.append("mode=" + "/".join(labels["modes"]))
    return " ".join(parts)
