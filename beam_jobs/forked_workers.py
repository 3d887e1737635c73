"""Local worker processes forked from the launcher once it has imported everything: no second import per worker.

FnApiRunner's ``multi_processing`` mode starts each worker as ``python -m apache_beam.runners.worker.sdk_worker_main``
once the pipeline runs, and each imports Beam and the job's modules again (~1.2 s of CPU per worker, while the
launcher waits). A command-line run instead forks its workers just before the run, when everything is imported and
no thread or gRPC channel exists yet, and gives FnApiRunner a small relay command in their place: run as
``python -m beam_jobs.forked_workers``, the relay claims one forked worker, hands it the control and logging
addresses FnApiRunner gave the relay, and exits with the worker's exit code. A relay that finds no free forked
worker starts the usual worker instead, so a worker FnApiRunner starts again is never lost.

Only a fresh command-line process forks (``beam-expand run`` with ``--direct_num_workers=N --direct_running_mode=
multi_processing``), on Linux: forking a process that has run gRPC before (a test session, a notebook) is not safe,
nor is forking after macOS's system libraries are loaded. Elsewhere, or when the sockets cannot be made, the relays
start the usual workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

from beam_jobs import launcher_temp

ENV = "BEAM_EXPAND_FORKED_WORKERS"  # the folder of the forked workers' sockets, for the relays
COMMAND = f"{shlex.quote(sys.executable)} -m beam_jobs.forked_workers"


PREFIX = "beam-expand-workers-"  # the sockets' folder: <tmp>/<PREFIX><launcher pid>-<8 random characters>
_SUN_PATH = 108  # bytes of a Unix socket's path on Linux, its final NUL included


def can_fork(count: int = 1) -> bool:
    """Whether this process may fork ``count`` workers: on Linux, with no other thread, where their sockets fit.

    A socket's path holds at most 107 bytes: a TMPDIR over ~60 characters leaves no room. (macOS's system
    libraries are not safe to use in a child forked after they were loaded.)
    """
    folder = os.path.join(tempfile.gettempdir(), f"{PREFIX}{os.getpid()}-{'x' * 8}")
    fits = len(os.fsencode(os.path.join(folder, f"{max(count - 1, 0)}.sock"))) < _SUN_PATH
    return sys.platform == "linux" and threading.active_count() == 1 and fits


class ForkedWorkers:
    """Forks ``count`` idle workers on entering (if the process has no other thread); reaps them on exit.

    Args:
        count: Workers to fork (0 forks none).
    """

    def __init__(self, count: int):
        self.count = count
        self.folder: str | None = None
        self._pids: list[int] = []

    def __enter__(self) -> ForkedWorkers:
        if self.count < 1 or not can_fork(self.count):
            return self  # the relays will start the usual workers
        self.folder = launcher_temp.make(PREFIX)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            for i in range(self.count):
                path = os.path.join(self.folder, f"{i}.sock")
                listener = socket.socket(socket.AF_UNIX)
                listener.bind(path)  # if it fails (can_fork checked the length), no worker is forked
                listener.listen(1)
                launcher = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _worker(listener, launcher, path)  # never returns
                listener.close()
                self._pids.append(pid)
        except OSError:
            self.__exit__()
            self.folder, self._pids = None, []
            return self
        os.environ[ENV] = self.folder
        return self

    def __exit__(self, *exc) -> None:
        os.environ.pop(ENV, None)
        if not self.folder:
            return
        for i, pid in enumerate(self._pids):
            if not os.path.exists(os.path.join(self.folder, f"{i}.claimed")):
                os.kill(pid, signal.SIGTERM)  # never used
        deadline = time.monotonic() + 30  # claimed workers end with the run; their relay has reported already
        for pid in self._pids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)
        for name in os.listdir(self.folder):
            os.remove(os.path.join(self.folder, name))
        os.rmdir(self.folder)


def _worker(listener: socket.socket, launcher: int, path: str) -> None:
    """The forked child: waits for a relay, runs the SDK harness with the relay's environment, reports, exits."""
    code = 1
    try:
        listener.settimeout(1.0)
        while True:
            try:
                conn, _ = listener.accept()
                break
            except TimeoutError:
                if os.getppid() != launcher:  # the launcher was killed: nobody will claim this worker
                    os.remove(path)
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.dirname(path))  # the last one out
                    os._exit(0)
        listener.close()
        with conn:
            env = json.loads(_read_all(conn))
            from apache_beam.runners.worker import sdk_worker_main

            # A worker started afresh has no logging handlers but the one sending records to the runner (which
            # prints what its level lets through); the launcher's inherited ones would print the worker's INFO
            # lines ("Logging handler created.") straight to the terminal.
            root = logging.getLogger()
            for handler in root.handlers[:]:
                root.removeHandler(handler)

            log_handler, harness, _ = sdk_worker_main.create_harness(env)
            try:
                harness.run()
                code = 0
            finally:
                if log_handler:
                    log_handler.close()
            conn.sendall(str(code).encode())
    except BaseException:  # noqa: BLE001 (a child must never return into the launcher's code)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _read_all(conn: socket.socket) -> bytes:
    return b"".join(iter(lambda: conn.recv(1 << 16), b""))


def relay() -> int:
    """The worker command FnApiRunner starts: hands its environment to a free forked worker, else becomes a worker."""
    folder = os.environ.get(ENV)
    for name in sorted(os.listdir(folder)) if folder and os.path.isdir(folder) else []:
        if not name.endswith(".sock"):
            continue
        try:
            os.close(os.open(os.path.join(folder, name[: -len(".sock")] + ".claimed"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(os.path.join(folder, name))
            conn.sendall(json.dumps(dict(os.environ)).encode())
            conn.shutdown(socket.SHUT_WR)
            reply = _read_all(conn)
        return int(reply) if reply.isdigit() else 1
    os.execv(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(relay())
