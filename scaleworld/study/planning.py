"""`scaleworld plan` and `scaleworld status`: job counts, what is done, and a compute estimate."""

from __future__ import annotations

from typing import Any

from scaleworld.study.graph import KINDS, Graph
from scaleworld.study.store import RunStore

# The stated throughput assumption of the estimate: an H100's dense bf16 peak at 40% utilisation.
ASSUMED_PEAK_FLOPS = 989e12
ASSUMED_MFU = 0.40


def dynamics_flops(job_config: dict[str, Any]) -> float:
    """Training FLOPs of one dynamics job: 6 x parameters x tokens (one token per time step)."""
    from scaleworld.models.dynamics_config import DynamicsConfig, parameter_counts

    model = DynamicsConfig.from_dict(job_config["model"])
    train = job_config["train"]
    tokens = train["steps"] * train["batch_size"] * model.context
    return 6.0 * parameter_counts(model)["total"] * tokens


def summarize(store: RunStore, graph: Graph) -> list[dict[str, Any]]:
    """One row per kind: jobs, done, running, failed, pending, estimated GPU-hours (dynamics)."""
    rows = []
    state = store.states(graph.jobs.values())
    for kind in KINDS:
        jobs = graph.by_kind(kind)
        if not jobs:
            continue
        states = [state[j.id] for j in jobs]
        row = {"kind": kind, "jobs": len(jobs),
               **{s: states.count(s) for s in ("done", "running", "failed", "pending")}}
        if kind == "dynamics":
            flops = sum(dynamics_flops(j.config) for j in jobs)
            row["gpu_hours"] = flops / (ASSUMED_PEAK_FLOPS * ASSUMED_MFU) / 3600
        rows.append(row)
    return rows


def failures(store: RunStore, graph: Graph) -> list[tuple[str, str, str]]:
    from scaleworld.study.local import describe

    state = store.states(graph.jobs.values())
    return [(job.kind, describe(job), store.failure(job) or "")
            for job in graph.jobs.values() if state[job.id] == "failed"]


def print_summary(store: RunStore, graph: Graph, *, title: str, estimate: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = summarize(store, graph)
    table = Table(title=title)
    cols = ["kind", "jobs", "done", "running", "failed", "pending"] + (["est. GPU-hours"] if estimate else [])
    for c in cols:
        table.add_column(c, justify="left" if c == "kind" else "right")
    for r in rows:
        cells = [r["kind"]] + [str(r[c]) for c in cols[1:6]]
        if estimate:
            cells.append(f"{r['gpu_hours']:.2f}" if "gpu_hours" in r else "")
        table.add_row(*cells)
    console = Console()
    console.print(table)
    if estimate:
        console.print(f"estimate: dynamics training only, 6 x params x tokens FLOPs at {ASSUMED_MFU:.0%} of "
                      f"{ASSUMED_PEAK_FLOPS / 1e12:.0f} TFLOP/s (an H100's dense bf16 peak)")
    for _, what, reason in failures(store, graph):
        console.print(f"[red]failed[/red] {what}: {reason}")
