"""Finished results, read once: the rows the analysis job and the report both build on.

Each reader takes jobs in the caller's order (the analysis job's inputs, or the graph's) and skips
any that is not done, so it serves a finished study and a partial one alike. A finished job whose
record is missing or damaged raises `DamagedRunError` (the analysis job must not silently leave a
model out), unless the caller passes a `damaged` list (the report): then the job is left out and
the list says which file and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from scaleworld.errors import DamagedRunError
from scaleworld.study.graph import Graph, Job
from scaleworld.study.records import SCHEMAS, problem
from scaleworld.study.spec import BASE_VARIANT

if TYPE_CHECKING:  # annotations only: the store imports the kinds, whose analysis reads these rows
    from scaleworld.study.store import RunStore


def read_finished(store: RunStore, job: Job, name: str, damaged: list[str] | None) -> dict[str, Any] | None:
    """`store.read_json(job, name)` checked against its schema (`records.SCHEMAS`), or None (noted in
    `damaged`) if the caller collects damage."""
    try:
        record = store.read_json(job, name)
        wrong = problem(record, SCHEMAS[(job.kind, name)]) if (job.kind, name) in SCHEMAS else None
        if wrong:
            raise DamagedRunError(f"{store.job_dir(job) / name}: damaged, {wrong}")
        return record
    except DamagedRunError as exc:
        if damaged is None:
            raise
        damaged.append(str(exc))
        return None


READINGS = ("final", "best")
"""Which checkpoint of a dynamics run is read: its last, or its best on the validation split."""


def nll_rows(store: RunStore, graph: Graph, jobs: Iterable[Job], *, reading: str = READINGS[0],
             damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (finished fidelity job, mode label, game): {mode, game, size, seed, params, blocks, nll,
    train_nll, episodes, baselines, job, dynamics_job, variants} (job: the fidelity job's id;
    dynamics_job: the model's; variants: those the job counts in; train_nll: the training-split NLL;
    episodes: per held-out episode its summed nats and frames; None where fidelity did not measure them).

    `nll` is the held-out negative log-likelihood in nats per frame (fidelity.json); `params` the
    dynamics model's total parameter count, `blocks` its transformer blocks' (its done.json).
    `reading` ``best``: the best checkpoint's NLL, with its ``step``; runs without one (no
    validation split) give no row."""
    return nll_readings(store, graph, jobs, readings=(reading,), damaged=damaged)[reading]


def nll_readings(store: RunStore, graph: Graph, jobs: Iterable[Job], *, readings: tuple[str, ...] = READINGS,
                 damaged: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """`nll_rows` of each reading, every fidelity record read once."""
    rows: dict[str, list[dict[str, Any]]] = {reading: [] for reading in readings}
    for fjob in jobs:
        if fjob.kind != "fidelity" or not store.is_done(fjob):
            continue
        (dynamics,) = [graph.jobs[i] for i in fjob.inputs if graph.jobs[i].kind == "dynamics"]
        done = read_finished(store, dynamics, "done.json", damaged)
        record = read_finished(store, fjob, store.artifact(fjob), damaged)
        if done is None or record is None:
            continue
        params, blocks = done["outputs"]["params"]["total"], done["outputs"]["params"]["blocks"]
        for reading in readings:
            read = record if reading == "final" else record.get("best")
            if read is None:
                continue
            extra = {"step": read["step"]} if reading == "best" else {}
            for mode in fjob.labels["modes"]:
                for game, g in read["games"].items():
                    rows[reading].append({
                        "mode": mode, "game": game, "size": fjob.labels["size"], "seed": fjob.labels["seed"],
                        "params": params, "blocks": blocks, "nll": g["nll_nats_per_frame"],
                        "train_nll": g.get("train_nll_nats_per_frame"), "episodes": g.get("episode_nll"),
                        "baselines": g.get("baseline_nll"), "job": fjob.id, "dynamics_job": dynamics.id,
                        "variants": fjob.labels.get("variants", [BASE_VARIANT]), **extra})
    return rows


def control_rows(store: RunStore, jobs: Iterable[Job], *, damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per finished control job: its labels and its done.json outputs (game, score =
    raw mean return, normalised = expert/human-random normalised mean, upper_kind, diagnostic = the
    exploitation diagnostic, scaleworld.evaluation.exploitation; None for a job from before it)."""
    rows = []
    for job in jobs:
        if job.kind != "control" or not store.is_done(job):
            continue
        done = read_finished(store, job, "done.json", damaged)
        if done is None:
            continue
        out = done["outputs"]
        rows.append({"id": job.id, "variants": job.labels.get("variants", [BASE_VARIANT]), "modes": job.labels["modes"],
                     "game": out["game"], "size": job.labels["size"], "seed": job.labels["seed"],
                     "trial": job.labels["trial"], "score": out["score"], "normalised": out["normalised"],
                     "upper_kind": out["upper_kind"], "diagnostic": out.get("diagnostic")})
    return rows


def control_episodes(store: RunStore, graph: Graph, jobs: Iterable[Job], *,
                     damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per finished control job, for the evidence against random
    (`scaleworld.analysis.versus_random`): its labels, the real-game episode returns and lengths,
    the random anchor's episode returns it was normalised by, and the policy's mean imagined reward
    per step at its final update (None if the policy job's record lacks it)."""
    rows = []
    for job in jobs:
        if job.kind != "control" or not store.is_done(job):
            continue
        record = read_finished(store, job, store.artifact(job), damaged)
        (policy,) = [graph.jobs[i] for i in job.inputs if graph.jobs[i].kind == "policy"]
        done = read_finished(store, policy, "done.json", damaged)
        if record is None or done is None:
            continue
        imagined = (done["outputs"].get("final") or {}).get("metric_reward")
        rows.append({"modes": job.labels["modes"], "game": record["game"], "size": job.labels["size"],
                     "seed": job.labels["seed"], "trial": job.labels["trial"], "returns": record["returns"],
                     "lengths": record["lengths"], "random_returns": record["anchors"]["random"]["returns"],
                     "imagined_reward": None if imagined is None else float(imagined)})
    return rows
