"""Running one job of a study: ``python -m scaleworld.study.jobs RUN_ROOT JOB_ID [JOB_ID ...]``
(several ids: dynamics jobs trained as one pack, ``launcher.pack``).

Each kind reads its inputs' outputs from their job folders and writes its own into its folder
(`scaleworld.study.kinds`: its stage's `run`). Training kinds resume from their checkpoint;
collection and encoding restart from scratch (their staging folders never look finished). Exit
status: 0 done, 1 failed (reason in failed.json), 75 another driver holds the job's lock. An
interrupted job (Ctrl-C, or SLURM's time-limit signal, on which submitit requeues the task) is
neither done nor failed: the next run resumes it. A job whose process dies without a word (SIGKILL,
the OOM killer) is marked failed by its executor.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from scaleworld.data.files import write_json_atomic
from scaleworld.study.graph import Job
from scaleworld.study.kinds import RunContext, stage_of
from scaleworld.study.kinds.dynamics import run_pack
from scaleworld.study.store import JobLock, RunStore, artifact_stamp

EXIT_LOCKED = 75


def run_job(root: str | Path, job_id: str, *, requeued: Callable[[], bool] | None = None) -> int:
    """Run one job in this process; returns the exit status described in the module docstring.

    `requeued` says whether a SystemExit is a requeue (the SLURM task's time-limit signal: see
    `scaleworld.study.slurm.JobCall`); any other SystemExit ends the job as failed.
    """
    return run_jobs(root, [job_id], requeued=requeued)


def run_jobs(root: str | Path, job_ids: list[str], *, requeued: Callable[[], bool] | None = None) -> int:
    """Run one job, or several dynamics jobs as one pack (`scaleworld.study.packing`), in this process.
    The exit status is `run_job`'s for all of them together: 0 when every one is done, 75 when another
    driver holds all those not done. Members another driver holds are left to it; a failure fails
    every member (the same reason in each failed.json)."""
    store = RunStore(Path(root))
    graph = store.read_plan()
    jobs = [graph.jobs[i] for i in job_ids]
    if len(jobs) > 1 and {j.kind for j in jobs} != {"dynamics"}:  # scaleworld.study.packing packs these only
        raise ValueError(f"only dynamics jobs train as a pack, not {sorted({j.kind for j in jobs})}")
    mine: list[tuple[Job, Path, JobLock]] = []
    for job in jobs:
        out = store.prepare(job)
        if store.is_done(job):
            continue
        lock = JobLock(out / "lock")
        if lock.acquire():  # else another driver runs it: left to that driver
            # a done.json that is damaged, stale or stamps another artifact: gone before the job runs, so a
            # failure of the rerun reads as its own reason, and a half-rewritten artifact is not "damaged"
            (out / "done.json").unlink(missing_ok=True)
            mine.append((job, out, lock))
    if not mine:
        return 0 if all(store.is_done(j) for j in jobs) else EXIT_LOCKED
    start = time.time()
    outs = [out for _, out, _ in mine]
    try:
        stages = [stage_of(job) for job, _, _ in mine]
        missing = {}
        for (job, _, _), stage in zip(mine, stages):
            pending = [i for i in job.inputs if not store.is_done(graph.jobs[i])]
            if pending and not stage.RUNS_ON_WHAT_FINISHED:
                raise RuntimeError(f"inputs not finished: {', '.join(pending)}")
            missing[job.id] = [f"{graph.jobs[i].kind}/{i}" for i in pending]
        contexts = [RunContext(store=store, graph=graph, job=job, out=out) for job, out, _ in mine]
        outputs = [stages[0].run(contexts[0])] if len(mine) == 1 else run_pack(stages, contexts)
        keep = store.keeps_checkpoints()
        for (job, out, _), record, stage in zip(mine, outputs, stages):
            (out / "failed.json").unlink(missing_ok=True)
            write_json_atomic(out / "done.json", {
                "kind": job.kind, "id": job.id, "outputs": record, "seconds": round(time.time() - start, 2),
                "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU its executor pinned it to
                "artifact": artifact_stamp(out / stage.ARTIFACT),  # what readers check it against: size, sha256
                **({"missing_inputs": missing[job.id]} if missing[job.id] else {}),  # ran on what had finished
            })
            for name in () if keep else stage.RESUME_STATE:  # done: only a resumed run would read these
                (out / name).unlink(missing_ok=True)
        return 0 if all(store.is_done(j) for j in jobs) else EXIT_LOCKED
    except KeyboardInterrupt:  # interrupted, not failed: the next run resumes from the job's checkpoint
        raise
    except SystemExit:
        if requeued is not None and requeued():  # submitit requeued the task and exits: as Ctrl-C
            raise
        return _failed(outs)
    except Exception as exc:  # recorded, then the driver decides what else to run
        if _masks_interrupt(exc):  # Ctrl-C landed mid-checkpoint and torch's writer raised on close
            raise KeyboardInterrupt from None
        if requeued is not None and requeued():
            # The requeue's SystemExit can be masked by the code it interrupted (torch.save's zip
            # writer raises on close when the signal lands mid-checkpoint): still a requeue.
            context = exc.__context__
            raise (context if isinstance(context, SystemExit) else SystemExit(-1)) from None
        return _failed(outs)
    finally:
        for _, _, lock in mine:
            lock.release()


def _masks_interrupt(exc: BaseException) -> bool:
    """Whether `exc` was raised while a KeyboardInterrupt was being handled (it is in its context
    chain): code the interrupt stopped mid-way (torch.save's zip writer closing on a half-written
    file) can raise its own error over it, and the job is interrupted, not failed."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def _failed(outs: list[Path]) -> int:
    """Record the exception being handled in each out/failed.json; returns the failed exit status."""
    exc = sys.exc_info()[1]
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    for out in outs:
        write_json_atomic(out / "failed.json", {"reason": reason, "traceback": traceback.format_exc()[-4000:]})
    traceback.print_exc()
    return 1


if __name__ == "__main__":
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    sys.exit(run_jobs(sys.argv[1], sys.argv[2:]))
