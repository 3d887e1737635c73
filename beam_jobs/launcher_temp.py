"""Local temporary folders of a launcher process, named by its pid: the next launcher removes those of killed ones.

A run killed with SIGKILL (its whole process group, say) cleans nothing up; its progress files and worker sockets
would stay in the temp directory for good. Standard library only: the forked workers' relay imports this module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def make(prefix: str) -> str:
    """Creates ``<tmp>/<prefix><pid>-<random>`` after removing the ``prefix`` folders of processes that are gone."""
    remove_stale(prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def remove_stale(prefix: str) -> None:
    """Removes ``<tmp>/<prefix><pid>-*`` folders whose process no longer exists."""
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = folder.name[len(prefix) :].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's
