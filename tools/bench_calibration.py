"""Is `scaleworld plan --calibrate` right? Its estimate of jobs against the same jobs run for real.

For some finished jobs of a run root (default: the first job of each distinct dynamics shape and
the first policy job), this script, in one process: calibrates the job's shape as `plan
--calibrate` does, then runs the job's own code again with the job's own settings on its real
inputs into a temporary folder, timed, and prints estimate / measured. A ratio within 0.75-1.25
is the issue's goal.

Usage: .venv/bin/python tools/bench_calibration.py --root runs/pilot_cpu [--kinds dynamics policy] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaleworld.study.calibration import calibrate, job_seconds  # noqa: E402
from scaleworld.study.graph import describe  # noqa: E402
from scaleworld.study.kinds import RunContext, stage_of  # noqa: E402
from scaleworld.study.packing import pack_key  # noqa: E402
from scaleworld.study.store import RunStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a finished study's run root")
    parser.add_argument("--kinds", nargs="+", default=["dynamics", "policy"])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per calibrated shape")
    args = parser.parse_args()
    store = RunStore(args.root)
    graph = store.read_plan()
    chosen, seen = [], set()
    for job in graph.jobs.values():
        shape = pack_key(job) or job.kind
        if job.kind in args.kinds and store.is_done(job) and shape not in seen:
            seen.add(shape)
            chosen.append(job)
    record = calibrate(seconds=args.seconds)
    print(f"machine: {record['machine']}, {record['threads']} threads; calibration {args.seconds:g} s per shape")
    ratios = []
    for job in chosen:
        (estimated,) = job_seconds(graph, [job], record, store=store)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            stage_of(job).run(RunContext(store=store, graph=graph, job=job, out=Path(tmp)))
            measured = time.perf_counter() - start
        ratios.append(estimated / measured)
        print(f"  {job.kind:9s} {describe(job):40s} "
              f"estimated {estimated:7.1f} s  measured {measured:7.1f} s  estimate / measured {ratios[-1]:5.2f}",
              flush=True)
    if ratios:
        print(f"estimate / measured: {min(ratios):.2f} to {max(ratios):.2f} over {len(ratios)} jobs")


if __name__ == "__main__":
    main()
