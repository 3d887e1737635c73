"""Forked local workers: a fresh command forks its multi-process workers, gives the same bytes, and leaves nothing.

Each case runs in a fresh Python process, as the command does: only a process that has not run gRPC yet forks.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import read_tfrecords

ROOT = Path(__file__).resolve().parents[1]
TWO = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _records(out: Path) -> list:
    return sorted((r["source_key"], int(r["copy_index"]), int(r["label"]), r["recipe"], r["image"])
                  for r in read_tfrecords(out))  # fmt: skip


def _leftovers() -> set[str]:
    return {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("beam-expand-workers-*")}


def test_fresh_command_forks_its_workers_and_writes_the_same_records(image_folder, tmp_path):
    before = _leftovers()
    run = ["run", "--source", str(image_folder), "--copies", "2", "--no-progress", "--output"]
    one = subprocess.run([sys.executable, "-m", "beam_jobs.cli", *run, str(tmp_path / "one")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    two = subprocess.run([sys.executable, "-m", "beam_jobs.cli", *run, str(tmp_path / "two"), *TWO], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert "2 workers (multi_processing), forked" in two.stdout
    assert "Python sdk harness starting" not in two.stderr  # logged by workers started as usual, not forked ones
    assert "Logging handler created" not in two.stderr  # printed through the launcher's inherited log handlers
    records = _records(tmp_path / "one")
    assert len(records) == 24 and _records(tmp_path / "two") == records
    assert not _leftovers() - before


def test_a_relay_without_a_free_forked_worker_starts_the_usual_one(image_folder, tmp_path):
    # One worker forked for two: the second relay finds none free and becomes a worker itself.
    code = """
import sys
from beam_jobs import pipeline
from beam_jobs.config import JobConfig
from transforms.policies import PRESETS
pipeline.forked_worker_count = lambda options: 1
policy = PRESETS["imagedatagenerator"]
config = JobConfig(source=sys.argv[1], output=sys.argv[2], copies=2, progress=False, policy=policy)
pipeline.run_job(config, sys.argv[3:], fork_workers=True)
"""
    done = _python(code, str(image_folder), str(tmp_path / "out"), *TWO, "--default_sdk_harness_log_level=INFO")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "forked" in done.stdout and len(_records(tmp_path / "out")) == 24
    assert "Python sdk harness starting" in done.stderr  # the second worker, started as usual, logs as it starts


def test_unclaimed_workers_are_reaped_and_orphans_exit():
    before = _leftovers()
    code = """
import os, sys
from beam_jobs.forked_workers import ForkedWorkers
with ForkedWorkers(2) as workers:
    assert workers.folder and len(workers._pids) == 2
try:
    os.waitpid(-1, os.WNOHANG)
    sys.exit("a forked worker was left running")
except ChildProcessError:
    pass
assert not os.path.exists(workers.folder)
orphans = ForkedWorkers(1).__enter__()  # the launcher dies without cleaning up
print(orphans._pids[0], flush=True)
os._exit(0)
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "an orphaned forked worker kept running"
    assert not _leftovers() - before  # and it removed its socket and folder


def test_no_worker_is_forked_where_the_sockets_cannot_be_made(tmp_path):
    deep = tmp_path / ("x" * 100)  # a socket path over ~107 bytes cannot be bound
    deep.mkdir()
    code = """
import os, sys, tempfile
from beam_jobs.forked_workers import ENV, ForkedWorkers, can_fork
from beam_jobs.pipeline import make_pipeline_options
two = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
assert can_fork(2) and make_pipeline_options(two, True)[2:] == ("FnApiRunner (local, pinned by beam-expand), "
                                                                "2 workers (multi_processing), forked", 2)
tempfile.tempdir = sys.argv[1]
# Known before the run: the runner line does not claim forked workers, and none are forked.
assert not can_fork(2) and make_pipeline_options(two, True)[2:] == ("FnApiRunner (local, pinned by beam-expand), "
                                                                    "2 workers (multi_processing)", 0)
with ForkedWorkers(2) as workers:
    assert workers.folder is None and not workers._pids and ENV not in os.environ
try:
    os.waitpid(-1, os.WNOHANG)
    sys.exit("a forked worker was left running")
except ChildProcessError:
    pass
"""
    done = _python(code, str(deep))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(deep.iterdir())


def test_socket_folders_of_killed_launchers_are_removed_by_the_next_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"beam-expand-workers-{dead.pid}-abc"
    alive = tmp_path / f"beam-expand-workers-{os.getpid()}-abc"
    for folder in (stale, alive):
        folder.mkdir()
        (folder / "0.sock").write_bytes(b"")
    code = """
import sys, tempfile
tempfile.tempdir = sys.argv[1]
from beam_jobs.forked_workers import ForkedWorkers
with ForkedWorkers(1):
    pass
"""
    done = _python(code, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not stale.exists() and alive.exists()
