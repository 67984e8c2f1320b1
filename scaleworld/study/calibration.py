"""`scaleworld plan --calibrate`: every job kind's throughput measured on this machine, and the
study's cost in device-hours from it.

Each kind's work is counted in one unit and its rate measured by running the kind's own code for a
few seconds on inputs of the job's shapes (random weights, and random rows drawn by the job's own
window sampler from synthetic in-memory datasets: speed does not depend on their values; real
emulators where a kind steps a game; imagination with terminations switched off, as a trained
model rarely ends a rollout):

  kind       unit of work                                   measured by
  expert     agent steps (ppo.agent_steps)                  train_ppo for 3 updates on the study's first game
  collect    agent steps (data.steps)                       VectorAtari + the random policy, the job's num_envs
  tokenizer  gradient steps (+ held-out batches)            the Trainer on TokenizerLoss, the job's model and batch
  tokens     frames encoded (the collect job's steps)       Tokenizer.encode, batches of 256
  dynamics   tokens trained (steps x batch x context)       the Trainer on DynamicsLoss, the job's model and batch
             (+ held-out batches at the forward rate)
  fidelity   tokens scored (the game's collected steps)     the model's forward pass (no gradient)
  anchor     agent steps (episodes x episode length)        VectorAtari + the random policy
  policy     updates (train.steps)                          train_in_imagination, the job's model, policy and batch
  control    agent steps (episodes x episode length)        VectorAtari + WorldModelAgent of the job's model sizes
  analysis   -                                              not measured (numpy; seconds)

An episode's length is not known before the data exists: the mean length of the game's collected
episodes when its collect job is done, else the protocol's cap (max_episode_frames / frame_skip),
shown as an upper bound. Job time = work / rate; a kind's hours are the sum over its jobs, on the
device it runs on (GPU kinds on CUDA when the calibrating machine has one). Not counted: process
start-up, compilation, checkpoints, dataset checks, the tokenizer's quality measurement; packing
(launcher.pack) is not assumed. Measured against the same jobs run again on this machine
(tools/bench_calibration.py, pilot_cpu, 2 s per shape): dynamics 0.89-1.25 of the measured time over
its 4 shapes, tokenizer 0.92, policy 0.79 (one job run twice differed by 30% on the 2 shared cores).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from scaleworld.data.files import write_json_atomic
from scaleworld.errors import ScaleworldError
from scaleworld.study.graph import KINDS, Graph, Job
from scaleworld.study.kinds import GPU_KINDS, stage_of
from scaleworld.study.meter import Meter, NotCalibrated, WorkContext, peak_matmul_flops
from scaleworld.study.store import RunStore

CALIBRATION_FORMAT = "calibration/1"


def machine_name() -> str:
    """This machine as a calibration names it: its GPU, or its CPU and core count."""
    import torch

    from scaleworld.training.trainer import resolve_device

    if resolve_device() == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine() or 'CPU'} x{os.cpu_count()}"


def calibrate(*, seconds: float = 2.0) -> dict[str, Any]:
    """An empty calibration of this machine (`estimate(..., measure=True)` fills its rates)."""
    import torch

    from scaleworld.training.trainer import resolve_device

    device = resolve_device()
    name = machine_name()
    peak = peak_matmul_flops(device, n=8192, reps=50) if device == "cuda" else peak_matmul_flops(device, n=2048,
                                                                                                  reps=10)
    return {"format": CALIBRATION_FORMAT, "device": device, "machine": name, "threads": torch.get_num_threads(),
            "seconds_per_item": seconds, "peak_flops": peak, "rates": {}}


def save_calibration(record: dict[str, Any], path: Path) -> None:
    write_json_atomic(path, record)


def load_calibration(path: Path) -> dict[str, Any]:
    """A saved calibration; a missing or damaged file is one line naming it and the fix."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScaleworldError(f"{path}: no such calibration: make one with `scaleworld plan SPEC --calibrate "
                              f"--calibration {path}`") from None
    except (OSError, ValueError) as exc:
        raise ScaleworldError(f"{path}: not a calibration ({type(exc).__name__}): delete it and calibrate again "
                              "(--calibrate)") from None
    if (not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT
            or not isinstance(record.get("rates"), dict) or not record.get("peak_flops", 0) > 0
            or not all(isinstance(v, (int, float)) and v > 0 for v in record["rates"].values())):
        raise ScaleworldError(f"{path}: not a {CALIBRATION_FORMAT} file: delete it and calibrate again (--calibrate)")
    return record


def job_seconds(graph: Graph, jobs: list[Job], record: dict[str, Any], *, store: RunStore | None = None,
                measure: bool = True) -> list[float]:
    """Each job's estimated seconds on the calibrated machine (measuring the rates `record` lacks,
    with `measure`; they are added to it)."""
    meter = Meter(seconds=record["seconds_per_item"], device=record["device"], rates=record["rates"],
                  measuring=measure)
    with meter.tmp:
        out = [stage_of(job).work(WorkContext(store=store, graph=graph, job=job, meter=meter))[0] for job in jobs]
    record["rates"] = meter.rates
    return out


def estimate(graph: Graph, record: dict[str, Any], *, store: RunStore | None = None, measure: bool = False,
             progress: bool = True) -> list[dict[str, Any]]:
    """Per kind: jobs, device-hours on the calibrated machine (GPU kinds on its GPU if it had one),
    the rates used, whether an upper bound went in, and how many jobs it has no rate for. With
    `measure`, rates `record` lacks are measured and added to it."""
    from scaleworld.progress import progress_bar

    meter = Meter(seconds=record["seconds_per_item"], device=record["device"] if measure else "cpu",
                  rates=record["rates"], measuring=measure)
    per_kind: dict[str, dict[str, Any]] = {}
    with meter.tmp, progress_bar(progress and measure, "calibrating", len(graph.jobs)) as advance:
        for job in graph.jobs.values():
            row = per_kind.setdefault(job.kind, {"kind": job.kind, "jobs": 0, "seconds": 0.0, "missing": 0,
                                                 "upper_bound": False, "rates": [], "flops": 0.0})
            row["jobs"] += 1
            stage = stage_of(job)
            try:
                seconds, rate, upper = stage.work(WorkContext(store=store, graph=graph, job=job, meter=meter))
            except NotCalibrated:
                row["missing"] += 1
            else:
                row["seconds"] += seconds
                row["upper_bound"] |= upper
                row["flops"] += stage.training_flops()
                if rate not in row["rates"]:
                    row["rates"].append(rate)
            advance(1, note=job.kind)
    record["rates"] = meter.rates
    rows = []
    for kind in KINDS:
        if kind in per_kind:
            row = per_kind[kind]
            on_gpu = record["device"] == "cuda" and kind in GPU_KINDS
            seconds = row.pop("seconds")
            flops = row.pop("flops")
            mfu = {"mfu": flops / seconds / record["peak_flops"]} if flops > 0 and seconds > 0 else {}
            rows.append({**row, **mfu, "gpu_hours": seconds / 3600 if on_gpu else 0.0,
                         "cpu_hours": 0.0 if on_gpu else seconds / 3600})
    return rows
