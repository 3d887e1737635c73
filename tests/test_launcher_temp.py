"""A launcher's temporary folders carry its pid; the next launcher removes those of processes that are gone."""

import os
import subprocess
import sys
import tempfile

from beam_jobs import launcher_temp


def test_folders_of_gone_launchers_are_removed_and_others_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"beam-expand-progress-{dead.pid}-abc"
    alive = tmp_path / f"beam-expand-progress-{os.getppid()}-abc"
    unnamed = tmp_path / "beam-expand-progress-abc"  # an older run's name: not ours to judge
    other = tmp_path / f"beam-expand-workers-{dead.pid}-abc"  # another prefix
    for folder in (stale, alive, unnamed, other):
        folder.mkdir()
        (folder / "a.json").write_text("{}")
    made = launcher_temp.make("beam-expand-progress-")
    assert os.path.basename(made).startswith(f"beam-expand-progress-{os.getpid()}-") and os.path.isdir(made)
    assert not stale.exists() and alive.exists() and unnamed.exists() and other.exists()
