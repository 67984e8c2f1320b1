"""The run store: one folder per job, ``RUN_ROOT/<kind>/<id>/``, finished by ``done.json``.

A job folder holds ``job.json`` (its kind, config, inputs, labels), ``log.txt``, its checkpoints and
outputs, ``failed.json`` after a failure (the one-line reason), and, written last and atomically,
``done.json``. A job's state is read from disk alone, so a detached driver, `scaleworld status`
and a later `run` all agree: done (a readable done.json), running (its lock is held), failed, or
pending. A done.json that cannot be read (damaged, or not a record), or a missing artifact (the
file or folder the stage's readers read), makes the job failed with that reason: the next run
redoes it (training resumes from its checkpoint); nothing damaged is used. done.json records its
artifact's size and, for a record of at most `HASHED_BYTES`, its sha256 (`artifact_stamp`): an
artifact cut short, grown or (a record) edited since is damaged the same way.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleworld.data.files import sha256_file, write_json_atomic, write_text_atomic
from scaleworld.errors import DamagedRunError, ScaleworldError
from scaleworld.study.graph import Graph, Job

PLAN = "plan.json"
HASHED_BYTES = 1 << 20
"""An artifact file up to this size (the JSON records the report reads) is checked by its sha256 too;
bigger ones (model files, which their loaders check) by size alone, so that `status` on joint26's
23,514 jobs stays quick. Folders (datasets, tokens) carry their own manifests."""


def artifact_stamp(path: Path) -> dict[str, Any] | None:
    """What done.json records of a job's artifact: {bytes, sha256 (records only)}; None for a folder."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    return {"bytes": size, **({"sha256": sha256_file(path)} if size <= HASHED_BYTES else {})}


def _stamp_problem(path: Path, stamp: Any) -> str | None:
    """Why `path` is not the artifact done.json's `stamp` describes, or None."""
    if not isinstance(stamp, dict):
        return None  # done.json from before stamps
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path}: missing"
    if size != stamp.get("bytes"):
        return f"{path}: damaged ({size} bytes where the job wrote {stamp.get('bytes')})"
    if "sha256" in stamp and sha256_file(path) != stamp["sha256"]:
        return f"{path}: damaged (changed since the job wrote it: its sha256 differs)"
    return None
STORAGE = "storage.json"
SPEC = "spec.yaml"


@dataclass(frozen=True)
class RunStore:
    root: Path
    _done_records: dict[str, tuple[tuple[int, int, int], str | None]] = field(
        default_factory=dict, compare=False, repr=False)
    """job id -> (done.json's inode, mtime, size; what `_done_problem` found in it): executors ask
    `is_done` of every job on every poll, and a done.json that did not change is not parsed again."""

    def read_json(self, job: Job, name: str) -> dict[str, Any]:
        """A JSON record in `job`'s folder; `DamagedRunError` names the file if it is missing,
        unreadable or not a JSON object."""
        return read_record(self.job_dir(job) / name)

    def job_dir(self, job: Job) -> Path:
        return self.root / job.kind / job.id

    def write_plan(self, graph: Graph, spec_yaml: str, *, keep_checkpoints: bool) -> None:
        """The study's spec and graph, and whether finished jobs keep their resume state
        (``launcher.keep_checkpoints``, read by each job as it finishes: `keeps_checkpoints`); job
        folders are made when a job is first run or submitted (`prepare`), so a run of joint26 starts
        without writing 23,514 folders first."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / SPEC, spec_yaml)
        write_json_atomic(self.root / STORAGE, {"keep_checkpoints": bool(keep_checkpoints)})
        write_json_atomic(self.root / PLAN, graph.to_dict(), compact=True)

    def keeps_checkpoints(self) -> bool:
        """Whether a finished job keeps its resume state; yes when the run root does not say (written
        before the choice, or storage.json damaged): nothing is deleted on a guess."""
        try:
            return read_record(self.root / STORAGE)["keep_checkpoints"] is not False
        except (DamagedRunError, KeyError, TypeError):
            return True

    def prepare(self, job: Job) -> Path:
        """The job's folder, made with its job.json (kind, config, inputs, labels) if new."""
        folder = self.job_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "job.json").exists():
            write_json_atomic(folder / "job.json", job.to_dict())
        return folder

    def read_plan(self) -> Graph:
        path = self.root / PLAN
        if not path.is_file():
            raise ScaleworldError(
                f"{self.root}: no {PLAN}, so this is not a run root (start one with `scaleworld run`)"
            )
        fix = (f"rewrite it with `scaleworld run {self.root / SPEC} run_root={self.root}` (finished jobs are kept)"
               if (self.root / SPEC).is_file() else "run the study's spec again with this run_root")
        try:
            return Graph.from_dict(read_record(path))
        except DamagedRunError as exc:
            raise ScaleworldError(f"{exc}: {fix}") from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ScaleworldError(f"{path}: not a study plan (damaged or edited): {fix}") from None

    @staticmethod
    def artifact(job: Job) -> str:
        """The name of what a job of this kind leaves in its folder for its consumers."""
        from scaleworld.study.kinds import STAGES  # here: the kinds import the readers of this store's records

        return STAGES[job.kind].ARTIFACT

    def _done_problem(self, job: Job, names: set[str] | None = None) -> str | None:
        """None if done.json is a finished job's record and the job's artifact is there, else why
        not. `names`: the folder's listing, if the caller has it."""
        artifact = self.artifact(job)
        if not (artifact in names if names is not None else (self.job_dir(job) / artifact).exists()):
            return f"{self.job_dir(job) / artifact}: missing"
        try:
            st = os.stat(self.job_dir(job) / "done.json")
        except OSError:
            return f"{self.job_dir(job) / 'done.json'}: missing"
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        seen = self._done_records.get(job.id)
        if seen is not None and seen[0] == key:
            return seen[1]
        missing: list[str] = []
        try:
            record = self.read_json(job, "done.json")
            problem = (None if isinstance(record.get("outputs"), dict) else "done.json holds no outputs (damaged)") or \
                _stamp_problem(self.job_dir(job) / artifact, record.get("artifact"))
            missing = [m for m in record.get("missing_inputs", []) if isinstance(m, str) and m.count("/") == 1]
        except DamagedRunError as exc:
            problem = str(exc)
        self._done_records[job.id] = (key, problem, missing)
        return problem

    def _stale(self, job: Job) -> bool:
        """A job that ran on what had finished (its done.json names the inputs it went without, which
        `_done_problem` has read) is stale once one of those has finished since: it runs again."""
        seen = self._done_records.get(job.id)
        for name in seen[2] if seen is not None else ():
            kind, job_id = name.split("/")
            if self._done_problem(_Ref(kind, job_id)) is None:
                return True
        return False

    def is_done(self, job: Job) -> bool:
        return ((self.job_dir(job) / "done.json").is_file() and self._done_problem(job) is None
                and not self._stale(job))

    def failure(self, job: Job) -> str | None:
        if (self.job_dir(job) / "done.json").is_file():
            problem = self._done_problem(job)
            return None if problem is None else f"{problem} (the next run redoes the job)"
        path = self.job_dir(job) / "failed.json"
        if path.is_file():
            try:
                return str(read_record(path)["reason"])
            except (DamagedRunError, KeyError):
                return f"{path}: damaged, the failure's reason is lost (the next run retries the job)"
        return None

    def is_running(self, job: Job) -> bool:
        lock = self.job_dir(job) / "lock"
        if not lock.exists():
            return False
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False

    def state(self, job: Job) -> str:
        if self.is_done(job):
            return "done"
        if self.is_running(job):
            return "running"
        if self.failure(job) is not None:
            return "failed"
        return "pending"

    def states(self, jobs: Iterable[Job]) -> dict[str, str]:
        """`state` of many jobs at once (job id -> state): one directory listing per kind and per
        existing job folder, and a lock probe only where a lock file exists, instead of a dozen
        path operations per job (joint26's 23,514 jobs in a fraction of a second)."""
        found: dict[str, str] = {}
        folders: dict[str, set[str]] = {}
        for job in jobs:
            if job.kind not in folders:
                try:
                    folders[job.kind] = set(os.listdir(self.root / job.kind))
                except (FileNotFoundError, NotADirectoryError):
                    folders[job.kind] = set()
            if job.id not in folders[job.kind]:
                found[job.id] = "pending"
                continue
            try:
                names = set(os.listdir(self.job_dir(job)))
            except NotADirectoryError:
                names = set()
            if "done.json" in names and self._done_problem(job, names) is None:
                found[job.id] = "pending" if self._stale(job) else "done"
            elif "done.json" in names:
                found[job.id] = "failed"
            elif "lock" in names and self.is_running(job):
                found[job.id] = "running"
            else:
                found[job.id] = "failed" if "failed.json" in names else "pending"
        return found

    def outputs(self, job: Job) -> dict[str, Any]:
        return self.read_json(job, "done.json")["outputs"]


def read_record(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or `DamagedRunError` naming it."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DamagedRunError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedRunError(f"{path}: damaged, not readable JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise DamagedRunError(f"{path}: damaged, a {type(value).__name__} where a JSON object belongs")
    return value


@dataclass(frozen=True)
class _Ref:
    """A job by its kind and id: what the folder layout needs (`RunStore.job_dir`)."""

    kind: str
    id: str


class JobLock:
    """An exclusive, non-blocking flock on ``<job>/lock``; the OS releases it if the holder dies."""

    def __init__(self, path: Path):
        self.path = path
        self._file = None

    def acquire(self) -> bool:
        self._file = open(self.path, "a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
