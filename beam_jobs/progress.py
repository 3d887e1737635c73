"""Progress for local runs: workers drop counts into files, the launcher polls and prints one line.

The FnApiRunner has no progress hook and its multi-process workers share nothing with the launcher but the
disk, so ``WriteShardsFn`` writes ``{"records": n, "sources": m}`` to its own file in a local directory every half
second, and ``ProgressMonitor`` sums them. Counts may run ahead on retried bundles; the summary's counts come
from the data.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time


def read_counts(directory: str) -> tuple[int, int]:
    """Returns (records, sources) summed over every worker's progress file."""
    records = sources = 0
    # The directory is a name, not a pattern: a TMPDIR with "[" or "*" in it would match other files, or none.
    for path in glob.glob(os.path.join(glob.escape(directory), "*.json")):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue  # being replaced right now; the next poll reads it
        records += int(data.get("records", 0))
        sources += int(data.get("sources", 0))
    return records, sources


class ProgressMonitor:
    """Prints ``images done/total, copies, copies/s`` while a local pipeline runs.

    Args:
        directory: Where workers drop their counts.
        total_images: Images selected for the run.
        stream: Where to print (stderr); on a terminal the line is redrawn, otherwise printed every 10 s.
    """

    def __init__(self, directory: str, total_images: int, stream=None):
        self._dir = directory
        self._total = total_images
        self._stream = stream or sys.stderr
        self._tty = getattr(self._stream, "isatty", lambda: False)()
        self._interval = 0.5 if self._tty else 10.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="beam-expand-progress", daemon=True)
        self._start = time.monotonic()

    def __enter__(self) -> ProgressMonitor:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._tty:
            self._print(final=True)

    def line(self) -> str:
        """Returns the current progress line."""
        records, sources = read_counts(self._dir)
        elapsed = max(time.monotonic() - self._start, 1e-9)
        pct = 100.0 * sources / self._total if self._total else 100.0
        return (
            f"expand: {sources:,}/{self._total:,} images ({pct:.0f}%), {records:,} copies, "
            f"{records / elapsed:,.0f} copies/s, {elapsed:,.0f}s"
        )

    def _print(self, final: bool = False) -> None:
        if self._tty:
            end = "\n" if final else ""
            print("\r" + self.line().ljust(90), end=end, file=self._stream, flush=True)
        else:
            print(self.line(), file=self._stream, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._print()
