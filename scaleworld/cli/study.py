"""`scaleworld run | validate | plan | status | report`: a study spec from planning to its report.

Handlers import the heavy libraries themselves, so `scaleworld --help` is fast; a `ScaleworldError`
is one line and exit 2 (cli/main.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scaleworld.cli.args import add_no_progress, check_outputs, count, declare_outputs, real
from scaleworld.report import COLLAPSE_ABOVE
from scaleworld.report import SECTION_NAMES as REPORT_SECTIONS
from scaleworld.report.figures import DPI as FIGURE_DPI
from scaleworld.report.figures import FORMATS as FIGURE_FORMATS
from scaleworld.study.graph import LABEL_KEYS
from scaleworld.study.meter import MIN_SECONDS


def _load(args: argparse.Namespace):
    from scaleworld.study.spec_load import load_spec

    return load_spec(args.spec, args.overrides)


def cmd_validate(args: argparse.Namespace) -> None:
    from scaleworld.study.expand import build_graph

    spec = _load(args)
    graph = build_graph(spec)
    counts = ", ".join(f"{n} {k}" for k, n in graph.counts().items())
    print(f"ok: {args.spec} is valid ({len(spec.games)} games; jobs: {counts}; run_root {spec.run_root})")


def cmd_plan(args: argparse.Namespace) -> None:
    from scaleworld.study.expand import build_graph
    from scaleworld.study.planning import pack_line, print_disk, print_launcher, print_summary
    from scaleworld.study.store import RunStore

    spec = _load(args)
    graph = build_graph(spec)
    store = RunStore(Path(spec.run_root))
    calibrated = args.calibrate or args.calibration is not None
    if calibrated:
        from scaleworld.study.calibration import (
            calibrate,
            estimate,
            load_calibration,
            machine_name,
            save_calibration,
        )

        record = None
        if args.calibration is not None and (args.calibration.exists() or not args.calibrate):
            record = load_calibration(args.calibration)
        if args.calibrate and (record is None or record["machine"] != machine_name()):
            record = calibrate(seconds=args.seconds)  # another machine's rates are not this one's
        rows = estimate(graph, record, store=store if store.root.is_dir() else None, measure=args.calibrate,
                        progress=not args.no_progress)
        if args.calibrate and args.calibration is not None:
            save_calibration(record, args.calibration)
    from scaleworld.study.cluster import uses_gpu
    from scaleworld.study.graph import KINDS

    print_summary(store, graph, title=f"plan for {spec.name} ({spec.run_root})", estimate=True,
                  calibrated=calibrated, gpu_kinds=frozenset(kind for kind in KINDS if uses_gpu(spec.launcher, kind)))
    print_disk(graph, keep=spec.launcher.keep_checkpoints)
    print_launcher(spec.launcher, list(graph.counts()))
    packing = pack_line(graph, spec.launcher)
    if packing:
        from scaleworld.console import console

        console().print(packing)
    if calibrated:
        from scaleworld.study.planning import print_calibrated

        print_calibrated(rows, record)


def cmd_run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from scaleworld.study.expand import build_graph
    from scaleworld.study.planning import print_summary
    from scaleworld.study.store import RunStore

    spec = _load(args)
    graph = build_graph(spec)
    store = RunStore(Path(spec.run_root))
    if spec.launcher.kind == "slurm":
        from scaleworld.study.slurm import require_cluster

        require_cluster()  # before anything is written
    check_outputs(argparse.Namespace(run_root=store.root, outputs={"run_root": "run_folder"}))
    store.write_plan(graph, OmegaConf.to_yaml(spec), keep_checkpoints=spec.launcher.keep_checkpoints)
    if spec.launcher.kind == "slurm" and args.detach:
        from scaleworld.study.slurm import submit_driver

        slurm_id, new = submit_driver(store, spec.launcher)
        print(f"{'submitted the driver as' if new else 'the driver already runs as'} SLURM job {slurm_id}: it runs "
              f"the study to the end on the cluster (`scaleworld status {store.root}` follows it)")
        return 0
    if spec.launcher.kind == "slurm":
        from scaleworld.study.slurm import run_slurm

        counts = run_slurm(store, graph, spec.launcher)
    else:
        from scaleworld.study.cluster import uses_gpu
        from scaleworld.study.graph import KINDS
        from scaleworld.study.local import default_workers, run_local, visible_gpus

        workers = spec.launcher.workers or default_workers(visible_gpus())
        gpu_kinds = frozenset(kind for kind in KINDS if uses_gpu(spec.launcher, kind))
        counts = run_local(store, graph, workers=workers, pack=spec.launcher.pack,
                           pack_memory_gb=spec.launcher.pack_memory_gb, gpu_kinds=gpu_kinds,
                           progress=not args.no_progress)
    print_summary(store, graph, title=f"{spec.name}: {store.root}", estimate=False)
    return 1 if counts.get("failed") or counts.get("blocked") else 0


def _list_jobs(store: Any, graph: Any, words: list[str]) -> int:
    """`status RUN --list KIND [KEY=VALUE ...]`: a line per matching job, "folder<TAB>state<TAB>what"
    (whole paths, for scripts and the TorchRL snippets); exit 1 when nothing matches."""
    from scaleworld.errors import ScaleworldError
    from scaleworld.study.graph import KINDS, describe
    from scaleworld.study.planning import find_jobs

    kind, *pairs = words
    if kind not in KINDS:
        raise ScaleworldError(f"--list {kind}: no such job kind; use one of {', '.join(KINDS)}")
    if any("=" not in pair for pair in pairs):
        raise ScaleworldError(f"--list {kind} {' '.join(pairs)}: write each selection as key=value, e.g. game=Pong")
    jobs = find_jobs(graph, kind, dict(pair.split("=", 1) for pair in pairs))
    states = store.states(jobs)
    for job in jobs:
        print(f"{store.job_dir(job)}\t{states[job.id]}\t{describe(job)}")
    if not jobs:
        print(f"no {kind} job matches {' '.join(pairs) or 'anything'}", file=sys.stderr)
    return 0 if jobs else 1


def cmd_spec(args: argparse.Namespace) -> None:
    from scaleworld.study.spec_doc import spec_text

    print(spec_text(_load(args) if args.spec is not None else None), end="")


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 1 when a job failed (each named with its reason and log file), else 0."""
    from scaleworld.study.planning import print_summary
    from scaleworld.study.store import RunStore

    store = RunStore(Path(args.run_root))
    graph = store.read_plan()
    if args.list:
        return _list_jobs(store, graph, args.list)
    failed = print_summary(store, graph, title=f"status of {args.run_root}", estimate=False)
    if (store.root / "slurm").is_dir():  # it ran on SLURM: the driver and the arrays, where sacct answers
        from scaleworld.study.slurm import slurm_answers, slurm_lines

        for line in slurm_lines(store, graph) if slurm_answers() else ["slurm: no cluster answers here"]:
            print(line)
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> None:
    from scaleworld.console import console
    from scaleworld.data.files import write_json_atomic
    from scaleworld.report.terminal import collect_results, render

    results = collect_results(args.run_root)
    render(results, console(width=args.width), sections=args.section, full=args.full)
    if args.json:
        from scaleworld.report.tidy import tidy_tables

        write_json_atomic(args.json, {"tables": tidy_tables(results), **results})
        print(f"wrote {args.json}")
    if args.csv:
        from scaleworld.report.export import write_csv

        for path in write_csv(results, args.csv):
            print(f"wrote {path}")
    if args.figures:
        from scaleworld.report.figures import write_figures

        for path in write_figures(results, args.figures, fmt=args.format, dpi=args.dpi):
            print(f"wrote {path}")


def add_study_parsers(groups: argparse._SubParsersAction) -> None:
    """The commands on a study spec and its run root: run, validate, plan, status, report."""
    def spec_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", type=Path, help="a study spec (YAML), e.g. studies/smoke.yaml")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override spec keys, e.g. train.steps=100 run_root=/scratch/x")

    p = groups.add_parser("run", help="run a study spec end to end (skips finished jobs, resumes the rest)")
    spec_args(p)
    p.add_argument("--detach", action="store_true",
                   help="slurm: hand the driver to the cluster (a CPU job that runs the study to the end, "
                        "requeued at its time limit) and exit")
    add_no_progress(p, "no progress display")
    p.set_defaults(func=cmd_run, on_interrupt=lambda args: "finished jobs are kept (each job's done.json); the "
                   "same `scaleworld run` resumes the rest, training from its last checkpoint")
    p = groups.add_parser("spec", help="a spec with every key: its value (the file's, an override's or the "
                                       "default) under the schema's comment; no SPEC: the defaults")
    p.add_argument("spec", type=Path, nargs="?", help="a study spec (YAML), e.g. studies/smoke.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override spec keys, e.g. train.steps=100")
    p.set_defaults(func=cmd_spec)
    p = groups.add_parser("validate", help="check a study spec without running anything")
    spec_args(p)
    p.set_defaults(func=cmd_validate)
    p = groups.add_parser("plan", help="job counts per kind, what is done, and a compute estimate")
    spec_args(p)
    p.add_argument("--calibrate", action="store_true",
                   help="measure every job kind's throughput on this machine (a few seconds per distinct shape) and "
                        "print GPU- and CPU-hours per kind")
    p.add_argument("--calibration", type=Path, metavar="FILE",
                   help="a saved calibration: read it (and, with --calibrate, measure what it lacks and save it)")
    p.add_argument("--seconds", type=real(MIN_SECONDS), default=2.0,
                   help=f"with --calibrate: seconds per measured shape (at least {MIN_SECONDS:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while calibrating")
    p.set_defaults(func=cmd_plan)
    p = groups.add_parser("status", help="done / running / failed / pending jobs of a run root; each failed job "
                                         "with its reason and log file (exit 1 when a job failed)")
    p.add_argument("run_root", type=Path, help="a study's run root, e.g. runs/smoke")
    p.add_argument("--list", nargs="+", metavar="KIND [KEY=VALUE]",
                   help="instead: the folder, state and settings of each job of KIND whose labels match, e.g. "
                        f"--list dynamics game=Pong size=tiny-d2 seed=0 mode=single (keys: {', '.join(LABEL_KEYS)})")
    p.set_defaults(func=cmd_status)

    p = groups.add_parser("report", help="what a study found so far: tokenizer quality against its gate, regimes, "
                                         "scaling curves and fits, open-loop PSNR, single vs joint vs matched, "
                                         "normalised control scores with intervals")
    p.add_argument("run_root", type=Path, help="a study's run root, e.g. runs/smoke")
    p.add_argument("--json", type=Path, help="also write every number shown as JSON: `tables` holds flat rows that "
                                             "join on variant, mode, game, size, seed (scaleworld.report.tidy)")
    p.add_argument("--csv", type=Path, help="also write every NLL (mode, game, size, seed) as CSV, and every "
                                            "control run's raw and normalised score into F_control.csv")
    p.add_argument("--figures", type=Path, metavar="DIR",
                   help="also write figures into DIR (curves, scores, and per game real, reconstructed and "
                        "imagined frames)")
    p.add_argument("--format", choices=FIGURE_FORMATS, default=FIGURE_FORMATS[0],
                   help="with --figures: the file format")
    p.add_argument("--dpi", type=count(1), default=FIGURE_DPI, help="with --figures: dots per inch of raster figures")
    p.add_argument("--width", type=count(20), help="console width (default: the terminal's)")
    p.add_argument("--full", action="store_true",
                   help=f"every row of every per-game table (default: a table of more than {COLLAPSE_ABOVE} games "
                        "merges the games whose rows agree and states a column's one value once)")
    p.add_argument("--section", action="append", choices=REPORT_SECTIONS, metavar="NAME",
                   help="after the findings, show only this section (repeat for several; default: all of "
                        f"{', '.join(REPORT_SECTIONS)})")
    declare_outputs(p, json="file", csv="file", figures="folder")
    p.set_defaults(func=cmd_report)
