"""`scaleworld plan` and `scaleworld status`: job counts, what is done, and a compute estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaleworld.study.assumptions import ASSUMPTIONS
from scaleworld.study.graph import KINDS, Graph
from scaleworld.study.kinds import GPU_KINDS, stage_of
from scaleworld.study.store import RunStore


def summarize(store: RunStore, graph: Graph, *, gpu_kinds: frozenset[str] = GPU_KINDS) -> list[dict[str, Any]]:
    """One row per kind: jobs, done, running, failed, pending, and its jobs' hours under the stated
    assumptions (each stage's `assumed_seconds`) as gpu_hours for the kinds in `gpu_kinds` (those that
    hold a GPU), else cpu_hours."""
    rows = []
    state = store.states(graph.jobs.values())
    for kind in KINDS:
        jobs = graph.by_kind(kind)
        if not jobs:
            continue
        states = [state[j.id] for j in jobs]
        row = {"kind": kind, "jobs": len(jobs),
               **{s: states.count(s) for s in ("done", "running", "failed", "pending")}}
        hours = sum(stage_of(j).assumed_seconds(graph, j) for j in jobs) / 3600
        row["gpu_hours" if kind in gpu_kinds else "cpu_hours"] = hours
        rows.append(row)
    return rows


def data_passes(graph: Graph) -> list[dict[str, Any]]:
    """How often each training run kind goes over each game's data: one row per (kind, mode, steps).

    passes = frames of a game the run trains on / that game's training frames, where a run trains
    on steps x batch x window frames (window 1 for the tokenizer), shared evenly among its games
    (sampling is balanced over games), and a game's training frames are its collect job's steps x
    (1 - val_fraction) (x (1 - train.validation_fraction) for dynamics runs with a validation
    split): the splits are by episode, so the figure is approximate (the plan exists before the
    data). Sizes share a row: every size of a mode gets the same steps."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for job in graph.jobs.values():
        if job.kind not in ("tokenizer", "dynamics"):
            continue
        train = job.config["train"]
        window = job.config["model"].get("context", 1) if job.kind == "dynamics" else 1
        games = job.labels["games"]
        frames = train["steps"] * train["batch_size"] * window / len(games)
        collects = _collects_under(graph, job)
        held = (1.0 - job.config["val_fraction"]) * (1.0 - (job.config.get("validation") or 0.0))
        passes = [frames / (graph.jobs[c].config["steps"] * held) for c in collects]
        for mode in job.labels.get("modes", ["-"]):
            row = rows.setdefault((job.kind, mode, train["steps"]), {
                "kind": job.kind, "mode": mode, "steps": train["steps"], "games": len(games),
                "frames_per_game": frames, "passes": []})
            row["passes"] += passes
    from scaleworld.study.spec import MODES

    modes = {mode: i for i, mode in enumerate(MODES)}
    ordered = sorted(rows.values(), key=lambda r: (r["kind"] != "tokenizer", modes.get(r["mode"], 9), r["steps"]))
    return [{**r, "passes": (min(r["passes"]), max(r["passes"]))} for r in ordered]


def _collects_under(graph: Graph, job: Any) -> list[str]:
    """The collect jobs a training job's data comes from (directly, or through its token datasets)."""
    found, todo = [], list(job.inputs)
    while todo:
        j = graph.jobs[todo.pop()]
        if j.kind == "collect":
            found.append(j.id)
        elif j.kind == "tokens":
            todo += [i for i in j.inputs if graph.jobs[i].kind == "collect"]
    return sorted(set(found))


def expert_budgets(graph: Graph) -> list[str]:
    """One line per distinct PPO expert budget: agent steps and frames (agent steps x frame skip), and the games."""
    budgets: dict[tuple[int, int], list[str]] = {}
    for job in graph.by_kind("expert"):
        steps = job.config["agent_steps"]
        budgets.setdefault((steps, steps * job.config["protocol"]["frame_skip"]), []).append(job.config["game"])
    return [f"experts: PPO for {steps:,} agent steps = {frames:,} frames a game ({len(games)} games; the standard "
            "Atari PPO run is 10,000,000 agent steps = 40,000,000 frames)"
            for (steps, frames), games in budgets.items()]


def find_jobs(graph: Graph, kind: str, selection: dict[str, str]) -> list[Any]:
    """The jobs of `kind` whose labels match every key=value of `selection` (values compared as text;
    `mode` and `variant` match any of a shared job's, `game` any of a joint job's). An unknown key is
    one line naming the keys there are."""
    from scaleworld.errors import ScaleworldError
    from scaleworld.study.graph import LABEL_KEYS

    unknown = sorted(set(selection) - set(LABEL_KEYS))
    if unknown:
        raise ScaleworldError(f"--list {kind} {unknown[0]}=...: jobs are selected by {', '.join(LABEL_KEYS)}")
    plural = {"game": "games", "mode": "modes", "variant": "variants"}

    def values(job: Any, key: str) -> list[str]:
        labels = job.labels
        found = labels.get(plural.get(key, key), labels.get(key))
        found = [] if found is None else found if isinstance(found, list) else [found]
        if key == "game" and "game" in labels:
            found = [labels["game"]]
        return [str(v) for v in found]

    return [job for job in graph.by_kind(kind) if all(v in values(job, k) for k, v in selection.items())]


def failures(store: RunStore, graph: Graph) -> list[tuple[str, str, str, str]]:
    """(kind, job, reason, log file) of every failed job."""
    from scaleworld.study.graph import describe

    state = store.states(graph.jobs.values())
    return [(job.kind, describe(job), store.failure(job) or "", str(log_file(store, job)))
            for job in graph.jobs.values() if state[job.id] == "failed"]


def log_file(store: RunStore, job: Any) -> Path:
    """Where a job's output went: its SLURM task's log (submitit's, under <root>/slurm/<task id>/) when
    it ran on SLURM, else its folder's log.txt (the local executor's)."""
    from scaleworld.study.store import DamagedRunError, read_record

    record = store.job_dir(job) / "slurm.json"
    if record.is_file():
        try:
            task = str(read_record(record)["slurm_job_id"])
        except (DamagedRunError, KeyError):
            task = None
        logs = sorted((store.root / "slurm" / task).glob("*_log.out")) if task else []
        if logs:
            return logs[-1]
    return store.job_dir(job) / "log.txt"


def _hours(hours: float) -> str:
    return "0" if hours == 0 else f"{hours:,.2f}" if hours >= 10 else f"{hours:.3g}"


def print_calibrated(rows: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """The study's cost on the calibrated machine, per kind (scaleworld.study.calibration)."""
    from rich.table import Table

    from scaleworld.console import console as plain_safe_console

    table = Table(title=f"cost on {record['machine']} ({record['device']}, {record['threads']} threads), measured")
    for c in ("kind", "jobs", "GPU-hours", "CPU-hours", "measured rate", "note"):
        table.add_column(c, justify="left" if c in ("kind", "measured rate", "note") else "right")
    for r in rows:
        note = "; ".join(n for n in (
            "episode lengths not known yet: at most (the protocol's cap)" if r["upper_bound"] else "",
            f"{r['missing']} jobs of shapes never calibrated: run --calibrate" if r["missing"] else "",
            f"MFU {r['mfu']:.1%} of the measured peak" if "mfu" in r else "",
            "not measured (numpy, seconds)" if r["kind"] == "analysis" else "") if n)
        rates = (r["rates"][0] if r["rates"] else "") + (f" (+{len(r['rates']) - 1} shapes)" if len(r["rates"]) > 1
                                                          else "")
        table.add_row(r["kind"], str(r["jobs"]), _hours(r["gpu_hours"]), _hours(r["cpu_hours"]), rates, note)
    console = plain_safe_console()
    console.print(table)
    gpu, cpu = sum(r["gpu_hours"] for r in rows), sum(r["cpu_hours"] for r in rows)
    console.print(f"total: {_hours(gpu)} GPU-hours, {_hours(cpu)} CPU-hours, one job at a time, measured peak matmul "
                  f"{record['peak_flops'] / 1e12:.2f} TFLOP/s; rates measured for {record['seconds_per_item']:g} s "
                  "each on random inputs of the jobs' shapes (scaleworld/study/calibration.py says how)")


def disk_per_kind(graph: Graph, *, keep: bool) -> list[dict[str, Any]]:
    """One row per kind: its jobs and the disk they leave once finished (each stage's `disk_bytes`:
    formulas from its settings and measured per-row and per-file sizes), smallest and largest job."""
    rows = []
    for kind in KINDS:
        jobs = graph.by_kind(kind)
        if jobs:
            sizes = [stage_of(job).disk_bytes([graph.jobs[i] for i in job.inputs], keep=keep) for job in jobs]
            rows.append({"kind": kind, "jobs": len(jobs), "smallest": min(sizes), "largest": max(sizes),
                         "total": sum(sizes)})
    return rows


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:.0f} B"


def print_disk(graph: Graph, *, keep: bool) -> None:
    """The disk a finished study takes, per kind and in total (`disk_per_kind`), and what keeping
    the checkpoints would add (or saves)."""
    from rich.table import Table

    from scaleworld.console import console as plain_safe_console

    rows, other = disk_per_kind(graph, keep=keep), disk_per_kind(graph, keep=not keep)
    table = Table(title="disk once finished, estimated (launcher.keep_checkpoints="
                        f"{str(keep).lower()})")
    for c in ("kind", "jobs", "a job", "total"):
        table.add_column(c, justify="left" if c == "kind" else "right")
    for r in rows:
        each = _bytes(r["smallest"]) + ("" if r["largest"] <= r["smallest"] * 1.05 else f" - {_bytes(r['largest'])}")
        table.add_row(r["kind"], f"{r['jobs']:,}", each, _bytes(r["total"]))
    total, total_other = sum(r["total"] for r in rows), sum(r["total"] for r in other)
    table.add_row("total", f"{sum(r['jobs'] for r in rows):,}", "", _bytes(total))
    console = plain_safe_console()
    console.print(table)
    console.print(f"disk: model files at 4 bytes a parameter (by formula from each model's settings), datasets at "
                  f"their frames and rows, records at most 100 kB a job (sizes measured on the smoke study: "
                  f"scaleworld/study/kinds); with launcher.keep_checkpoints={str(not keep).lower()}: "
                  f"{_bytes(total_other)}")


def pack_line(graph: Graph, launcher: Any) -> str | None:
    """With launcher.pack > 1: how the dynamics jobs pack, and the model shapes the memory cap packs
    fewer of (scaleworld.study.packing); None without packing."""
    from scaleworld.study.packing import pack_size, packs

    if launcher.pack <= 1:
        return None
    jobs = graph.by_kind("dynamics")
    pack_of = packs(graph, launcher.pack, memory_gb=launcher.pack_memory_gb)
    capped: dict[str, int] = {}
    for job in jobs:
        m, batch = job.config["model"], job.config["train"]["batch_size"]
        shape = f"depth {m['depth']} width {m['width']} batch {batch}"
        if shape not in capped:
            capped[shape] = pack_size(graph, job, launcher.pack, launcher.pack_memory_gb)
    fewer = [f"{shape}: {k}" for shape, k in capped.items() if k < launcher.pack]
    line = (f"packs: {len(jobs)} dynamics jobs train in {len({pack_of[j.id] for j in jobs})} processes of up to "
            f"{launcher.pack} (launcher.pack)")
    if fewer:
        line += (f"; fewer where {launcher.pack_memory_gb:g} GB (launcher.pack_memory_gb) cannot hold them by the "
                 f"estimate of their training memory: {', '.join(fewer)}")
    return line


def print_launcher(launcher: Any, kinds: list[str]) -> None:
    """What each kind's jobs ask for (scaleworld.study.cluster) and, on SLURM, the cluster settings."""
    from rich.table import Table

    from scaleworld.console import console as plain_safe_console
    from scaleworld.study.cluster import DRIVER, cluster_lines, resource_table, uses_gpu

    console = plain_safe_console()
    if launcher.kind != "slurm":
        on_gpu = [kind for kind in kinds if uses_gpu(launcher, kind)]
        console.print(f"local: {', '.join(on_gpu) or 'no'} jobs take a GPU of their own when one is visible; "
                      f"{', '.join(k for k in kinds if k not in on_gpu) or 'no'} jobs run beside them on the CPU")
        return
    table = Table(title="resources per SLURM job (launcher.resources.<kind> overrides)")
    for c in ("kind", "GPUs", "CPUs", "memory GB", "time limit min"):
        table.add_column(c, justify="left" if c == "kind" else "right")
    for r in resource_table(launcher, [*kinds, DRIVER]):  # and the driver of `run --detach`
        table.add_row(r["kind"], str(r["gpus"]), str(r["cpus"]), f"{r['mem_gb']:g}", str(r["time_min"]))
    console.print(table)
    for line in cluster_lines(launcher):
        console.print(f"slurm {line}")


def print_summary(store: RunStore, graph: Graph, *, title: str, estimate: bool, calibrated: bool = False,
                  gpu_kinds: frozenset[str] = GPU_KINDS) -> int:
    """The jobs per kind and state (and the plan's estimates: GPU-hours of the kinds in `gpu_kinds`,
    CPU job-hours of the others), then every failed job; returns how many failed."""
    from rich.table import Table

    from scaleworld.console import console as plain_safe_console

    rows = summarize(store, graph, gpu_kinds=gpu_kinds)
    table = Table(title=title)
    cols = ["kind", "jobs", "done", "running", "failed", "pending"] + (["est. GPU-hours", "est. CPU-hours"]
                                                                       if estimate else [])
    for c in cols:
        table.add_column(c, justify="left" if c == "kind" else "right")
    for r in rows:
        cells = [r["kind"]] + [f"{r[c]:,}" for c in cols[1:6]]
        if estimate:
            cells += [_hours(r["gpu_hours"]) if "gpu_hours" in r else "-",
                      _hours(r["cpu_hours"]) if "cpu_hours" in r else "-"]
        table.add_row(*cells)
    table.add_row("total", *[f"{sum(r[c] for r in rows):,}" for c in cols[1:6]],
                  *([_hours(sum(r.get(k, 0.0) for r in rows)) for k in ("gpu_hours", "cpu_hours")] if estimate else []))
    console = plain_safe_console()
    console.print(table)
    if estimate:
        console.print(f"estimate, assumed: {ASSUMPTIONS}; a GPU kind's hours are its jobs' GPU-hours, a CPU "
                      "kind's the hours its jobs run (launcher.resources decides which)"
                      + ("" if calibrated else "; --calibrate measures every kind's rate on this machine instead"))
        passes = Table(title="passes over each game's training data (per run, every size alike)")
        for c in ("run", "games", "steps", "frames per game", "passes"):
            passes.add_column(c, justify="left" if c == "run" else "right")
        for r in data_passes(graph):
            low, high = r["passes"]
            passes.add_row(r["kind"] + ("" if r["mode"] == "-" else f" {r['mode']}"), str(r["games"]),
                           f"{r['steps']:,}", f"{r['frames_per_game']:,.0f}",
                           f"{low:,.1f}" if high - low < 0.05 else f"{low:,.1f}-{high:,.1f}")
        console.print(passes)
        console.print("passes: the frames of a game a run trains on (steps x batch x window, shared evenly by a "
                      "joint run's games) over its training frames (collected steps x (1 - val_fraction) x (1 - "
                      "train.validation_fraction); the splits are by episode, so about)")
        for line in expert_budgets(graph):
            console.print(line)
    failed = failures(store, graph)
    for _, what, reason, log in failed:
        console.print(f"[red]failed[/red] {what}: {reason} (log: {log})", soft_wrap=True)  # a path to copy whole
    return len(failed)
