"""Jobs forked from a server that imported what jobs import once (the local executor's default).

A fresh interpreter per job pays torch, torchrl, tensordict, ALE and scipy's imports (about 5 s on
this project's 2-core machine) before its first line of work: the smoke study's 50 jobs and a 26-game
toy run's 400 pay it each time. The local executor instead starts one `JobServer` per run: a
process that imports those libraries (and nothing else: no CUDA, no torch thread pool, no RNG draw)
and then forks one child per job. The child is its own process as before (its own log.txt, exit
status, memory and GPU pin; a crash, a leak or a NaN costs that job only), and it starts from the
state a fresh interpreter reaches after the same imports, so a job's numbers do not change
(`tools/bench_job_start.py` runs the smoke study both ways and compares the reports).

The server starts with the driver's environment, so what libraries read at import (OMP_NUM_THREADS,
RL_LOGGING_LEVEL) is what a fresh interpreter would read; each child then takes the environment its
job is given (CUDA_VISIBLE_DEVICES: read when CUDA starts, in the job). Protocol, one line each way:
the driver writes a request as JSON ({"root", "ids", "env", "log"}); the server answers
"started PID", and "ended PID STATUS" when it reaps the child (STATUS as subprocess's returncode:
negative for a signal).
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# What jobs import, heaviest first; a module missing here is imported by the job that needs it.
PRELOAD = ("torch", "tensordict", "torchrl", "scipy.stats", "gymnasium", "ale_py", "scaleworld.study.jobs",
           "scaleworld.data.collect", "scaleworld.experts.ppo", "scaleworld.models.encode",
           "scaleworld.training.trainer", "scaleworld.evaluation.fidelity", "scaleworld.evaluation.control",
           "scaleworld.imagination.train", "scaleworld.analysis.study_analysis")
START_TIMEOUT_S = 600  # the server's imports, then each fork: far below this unless the machine is stuck


class JobServer:
    """The driver's side: start jobs as forks of one server process; `ForkedJob`s poll like `subprocess.Popen`."""

    def __init__(self, *, env: dict[str, str], log: Path):
        with open(log, "ab") as server_log:  # the server's own output: import warnings, a crash
            self._process = subprocess.Popen([sys.executable, "-m", "scaleworld.study.forked"], env=env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_log)
        self._started: queue.Queue[int] = queue.Queue()
        self._ended: dict[int, int] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            word, *rest = line.decode().split()
            if word == "started":
                self._started.put(int(rest[0]))
            elif word == "ended":
                with self._lock:
                    self._ended[int(rest[0])] = int(rest[1])
        self._started.put(-1)  # the server is gone: a start waiting for it fails

    def start(self, *, root: Path, ids: list[str], env: dict[str, str], log: Path) -> ForkedJob:
        request = json.dumps({"root": str(root), "ids": ids, "env": env, "log": str(log)})
        self._process.stdin.write(request.encode() + b"\n")
        self._process.stdin.flush()
        pid = self._started.get(timeout=START_TIMEOUT_S)
        if pid < 0:
            raise RuntimeError(f"the job server exited with status {self._process.wait()}; see {self._process.args}")
        return ForkedJob(self, pid)

    def status(self, pid: int) -> int | None:
        """The job's exit status once the server reaped it; None while it runs."""
        with self._lock:
            if pid in self._ended:
                return self._ended[pid]
        if self._process.poll() is not None and not _alive(pid):  # the server died; so did the job
            return 1
        return None

    def close(self) -> None:
        """Let the server exit (its running children, if any, run on: the caller waited for them)."""
        self._process.stdin.close()
        self._process.wait()

    def __enter__(self) -> JobServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForkedJob:
    """One job's process, forked by the server: `poll` and `wait` as subprocess.Popen's."""

    def __init__(self, server: JobServer, pid: int):
        self.server, self.pid = server, pid

    def poll(self) -> int | None:
        return self.server.status(self.pid)

    def wait(self) -> int:
        while (status := self.poll()) is None:
            time.sleep(0.1)
        return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def serve() -> None:
    """The server's loop: import, then fork a child per request and report each child's end.
    Ctrl-C reaches the children (one process group), not the server: it outlives them to report.
    Each child gets the SIGINT disposition the server was started with, as a new interpreter would
    (a driver started in the background by a shell ignores SIGINT, and so do its jobs)."""
    inherited = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.dup(1)  # the answers' own descriptor: whatever an import prints goes to the server's log
    os.dup2(2, 1)
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")  # read by torchrl at import
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            traceback.print_exc()
    imported = source_state()  # what the children inherit: a job after an edit runs the edited code whole
    pending = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.1)
        if ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:  # the driver closed the pipe (or died): the server's work is over
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    os.close(protocol)
                    _child(json.loads(line), sigint=inherited, imported=imported)  # never returns
                os.write(protocol, f"started {pid}\n".encode())
        while True:  # reap whatever ended
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            os.write(protocol, f"ended {pid} {os.waitstatus_to_exitcode(wait_status)}\n".encode())


def source_state() -> tuple[tuple[str, int, int], ...]:
    """Each of scaleworld's source files with its mtime and size: a change means the modules the server
    imported are not the files on disk any more."""
    package = Path(__file__).resolve().parents[1]
    state = []
    for path in sorted(package.rglob("*.py")):
        try:
            st = os.lstat(path)  # an editor's lock file is a dangling symlink; a file may go mid-scan
            state.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            state.append((str(path), -1, -1))
    return tuple(state)


def _child(request: dict, *, sigint: Any, imported: tuple[tuple[str, int, int], ...]) -> None:
    """A job's process: its environment, its log as stdout and stderr, then the job; exits, never returns.
    If scaleworld's source changed since the server imported it (`source_state`), the job runs in a new
    interpreter instead (exec, same process): a fork would mix the server's modules with edited ones
    that the job imports itself, which once failed a run's dynamics jobs mid-study."""
    status = 1
    try:
        signal.signal(signal.SIGINT, sigint)
        os.environ.clear()
        os.environ.update(request["env"])
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((devnull, 0), (log, 1), (log, 2)):
            os.dup2(fd, target)
        os.close(log)
        os.close(devnull)
        if source_state() != imported:
            print("scaleworld's source changed since this run's job server started: this job runs in a new "
                  "interpreter, on the edited code throughout", flush=True)
            os.execv(sys.executable, [sys.executable, "-m", "scaleworld.study.jobs", request["root"], *request["ids"]])
        from scaleworld.study.jobs import run_jobs

        status = run_jobs(request["root"], request["ids"])
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a fresh interpreter: printed, status 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - exiting either way
                pass
        os._exit(status)


if __name__ == "__main__":
    serve()
