"""What a job asks the cluster for: its kind's resources and the launcher's cluster settings.

Resources per kind: ``launcher.gpus / cpus / mem_gb / time_min`` are what a job of a GPU kind asks
for (the kinds whose stage says ``GPU``: training, tokens, fidelity, control); a job of a CPU kind
(collect, anchor, analysis: they step emulators or run numpy) asks for the same but no GPU, so 26
collect jobs do not hold 26 GPUs. ``launcher.resources.<kind>`` overrides any of the four for one
kind, e.g. ``resources: {control: {gpus: 0, cpus: 8}}``; the local executor reads the same
answer (a kind given 0 GPUs runs as a CPU job beside the GPU jobs).

Cluster settings (SLURM only): account, qos, constraint (the node features a GPU job needs, such
as a GPU type; jobs without a GPU go anywhere), a job-name prefix, ``setup`` lines that run on the
node before every job (module loads, activating an environment), and ``sbatch``: any
other sbatch option by its long name, passed through (submitit's additional parameters). The
options the executor sets itself (time, memory, CPUs, GPUs, array, output, signal, ...) have their
own keys and are refused there, as is a name sbatch does not know, before anything is submitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scaleworld.study.graph import KINDS

RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "time_min")
DRIVER = "driver"
"""`run --detach`'s driver job (scaleworld.study.slurm.DriverCall): a CPU job that polls and submits;
``launcher.resources.driver`` overrides its resources like a kind's."""
DRIVER_CPUS, DRIVER_MEM_GB = 1, 4.0
"""What the driver asks for by default: one CPU, and memory for joint26's graph (23,514 jobs)."""

SBATCH_PASSTHROUGH = frozenset((
    "begin", "bb", "bbf", "chdir", "cluster-constraint", "clusters", "comment", "container", "contiguous",
    "core-spec", "cores-per-socket", "cpu-freq", "deadline", "delay-boot", "distribution", "exclude", "exclusive",
    "export", "export-file", "extra-node-info", "get-user-env", "gpu-bind", "gpu-freq", "gres-flags", "hold",
    "licenses", "mail-type", "mail-user", "mcs-label", "mincpus", "nice", "no-kill", "nodefile", "nodelist",
    "ntasks-per-core", "ntasks-per-socket", "overcommit", "oversubscribe", "power", "priority", "profile",
    "propagate", "reboot", "reservation", "sockets-per-node", "spread-job", "switches", "thread-spec",
    "threads-per-core", "tmp", "uid", "gid", "use-min-nodes", "wckey",
))
"""sbatch's long options (Slurm 22-24 `sbatch --help`) that `launcher.sbatch` may set."""

OWN_KEYS = {"account": "launcher.account", "qos": "launcher.qos", "constraint": "launcher.constraint",
            "job-name": "launcher.job_name", "partition": "launcher.partition", "time": "launcher.time_min",
            "mem": "launcher.mem_gb", "cpus-per-task": "launcher.cpus", "gpus-per-node": "launcher.gpus",
            "gpus": "launcher.gpus", "gres": "launcher.gpus", "array": "launcher.array_parallelism",
            "requeue": "launcher.requeues", "no-requeue": "launcher.requeues"}
"""sbatch options the executor sets from their own launcher keys: refused in `launcher.sbatch`."""


@dataclass(frozen=True)
class Resources:
    """What one job (or one pack of jobs) of a kind asks for."""

    gpus: int
    cpus: int
    mem_gb: float
    time_min: int

    def describe(self) -> str:
        return f"{self.gpus} GPU, {self.cpus} CPU, {self.mem_gb:g} GB, {self.time_min} min"


def kind_resources(launcher: Any, kind: str) -> Resources:
    """The resources of a job of `kind` under `launcher` (this module's docstring says how)."""
    from scaleworld.study.kinds import STAGES

    own = dict(launcher.resources.get(kind) or {})
    base = {key: getattr(launcher, key) for key in RESOURCE_KEYS}
    if kind == DRIVER:
        base.update(gpus=0, cpus=DRIVER_CPUS, mem_gb=DRIVER_MEM_GB)  # its time limit is a job's: it requeues
    elif not STAGES[kind].GPU:
        base["gpus"] = 0
    return Resources(**{**base, **own})


def uses_gpu(launcher: Any, kind: str) -> bool:
    """Whether a job of `kind` is a GPU job: its stage says so, unless `launcher.resources.<kind>.gpus`
    gives it none (or gives a CPU kind some)."""
    from scaleworld.study.kinds import STAGES

    own = launcher.resources.get(kind) or {}
    return own["gpus"] > 0 if "gpus" in own else kind != DRIVER and STAGES[kind].GPU


def check_cluster_settings(launcher: Any, fail: Any) -> None:
    """Refuse, with `fail(key, why)`, resources and cluster settings no cluster would take."""
    for kind, own in (launcher.resources or {}).items():
        if kind not in (*KINDS, DRIVER):
            fail(f"launcher.resources.{kind}", f"no such job kind: use one of {', '.join((*KINDS, DRIVER))}")
        if not hasattr(own, "items"):
            fail(f"launcher.resources.{kind}", f"{own!r}: give a mapping of {', '.join(RESOURCE_KEYS)}")
        for key, value in own.items():
            where = f"launcher.resources.{kind}.{key}"
            if key not in RESOURCE_KEYS:
                fail(where, f"unknown resource: use {', '.join(RESOURCE_KEYS)}")
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if not numeric or value != value or value in (float("inf"), float("-inf")):
                fail(where, f"{value!r}: give a finite number")
            if key != "mem_gb" and value != int(value):
                fail(where, f"{value!r}: give a whole number")
            minimum = 0 if key == "gpus" else 1
            if key == "mem_gb" and not value > 0:
                fail(where, f"{value} must be positive")
            if key != "mem_gb" and value < minimum:
                fail(where, f"{value} is impossible: it must be at least {minimum}")
    for key in ("account", "qos", "constraint"):
        value = getattr(launcher, key)
        if value is not None and (not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value)):
            fail(f"launcher.{key}", f"{value!r}: give one word (or null for the cluster's default)")
    name = launcher.job_name
    if not isinstance(name, str) or not name or any(c.isspace() or c in "/%" for c in name):
        fail("launcher.job_name", f"{name!r}: give a prefix without spaces, '/' or '%'")
    for i, line in enumerate(launcher.setup or []):
        if not isinstance(line, str) or "\n" in line or not line.strip():
            fail(f"launcher.setup[{i}]", f"{line!r}: give one shell line (a list item per line)")
    for key, value in (launcher.sbatch or {}).items():
        where = f"launcher.sbatch.{key}"
        if key in OWN_KEYS:
            fail(where, f"set by scaleworld: use {OWN_KEYS[key]}")
        if key not in SBATCH_PASSTHROUGH:
            fail(where, "not an sbatch option this executor passes on (sbatch's long name without the dashes, "
                        "e.g. mail-user, exclude, reservation)")
        if isinstance(value, bool) or not isinstance(value, str | int) or "\n" in str(value):
            fail(where, f"{value!r}: give a word or a number on one line")


def slurm_parameters(launcher: Any, kind: str) -> dict[str, Any]:
    """submitit's parameters for an array of `kind` jobs: resources, cluster settings, passthrough."""
    res = kind_resources(launcher, kind)
    params: dict[str, Any] = {
        "name": f"{launcher.job_name}-{kind}", "timeout_min": res.time_min, "mem_gb": res.mem_gb,
        "cpus_per_task": res.cpus, "slurm_array_parallelism": launcher.array_parallelism,
        "stderr_to_stdout": True,
        # SLURM checks time limits every 30 s and signals once now + delay + 30 s passes the limit; with
        # submitit's default 90 s a short job can be signalled before Python is ready for it.
        "slurm_signal_delay_s": min(90, max(20, res.time_min * 60 // 4)),
    }
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    for key in ("partition", "account", "qos"):
        if getattr(launcher, key):
            params[f"slurm_{key}"] = getattr(launcher, key)
    if launcher.constraint and res.gpus:  # the node features a GPU job needs (a GPU type): CPU jobs go anywhere
        params["slurm_constraint"] = launcher.constraint
    if launcher.setup:
        params["slurm_setup"] = list(launcher.setup)
    if launcher.sbatch:
        params["slurm_additional_parameters"] = dict(launcher.sbatch)
    return params


def resource_table(launcher: Any, kinds: list[str]) -> list[dict[str, Any]]:
    """One row per kind of the study: its resources (what `plan` shows)."""
    return [{"kind": kind, **asdict(kind_resources(launcher, kind))} for kind in kinds]


def cluster_lines(launcher: Any) -> list[str]:
    """The cluster settings that are set, one line each (what `plan` shows)."""
    lines = [f"{key}: {getattr(launcher, key)}" for key in ("partition", "account", "qos", "constraint")
             if getattr(launcher, key)]
    lines.append(f"job names: {launcher.job_name}-<kind>")
    lines += [f"setup: {line}" for line in launcher.setup or []]
    lines += [f"sbatch --{key}={value}" for key, value in (launcher.sbatch or {}).items()]
    return lines
