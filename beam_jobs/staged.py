"""Per-input plan data (the listing, per-source K, splits, partners, manifest rows) kept out of the pipeline graph.

Beam pickles a transform's arguments into the pipeline it submits, so everything the launcher planned per input
image would grow the job graph with the dataset: Dataflow refuses job graphs over ~10 MB and Flink's job
submission is bounded alike (a packed listing alone is ~15-30 bytes per input, and Beam's ``Create`` holds it
three times). The launcher instead writes each such value once, next to the run's temporary shards, and the graph
holds only its path; the steps that use it read it back once per worker process. The files are the launcher's
own and never change during the run, so a retried bundle reads the same value.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_LOADED: dict[str, Any] = {}  # path -> value, one copy per worker process however many steps use it


class Staged:
    """A value written to ``path`` by ``write``; pickles as its path, and ``load`` reads the value back (cached).

    Args:
        path: Where the value is written.
    """

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def write(cls, folder: str, name: str, value: Any) -> Staged:
        """Writes ``value`` (pickled, compressed) to ``<folder>/<name>`` and returns its handle."""
        path = FileSystems.join(folder, name)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1))
        return cls(path)  # the launcher keeps no copy: it frees its own objects once the pipeline is built

    def load(self) -> Any:
        """The value, read once per process and shared by the steps that use it there: treat it as read-only."""
        if self.path not in _LOADED:
            with FileSystems.open(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                _LOADED[self.path] = pickle.loads(zlib.decompress(f.read()))
        return _LOADED[self.path]

    def __repr__(self) -> str:
        return f"Staged({self.path!r})"


def forget(folder: str) -> None:
    """Drops this process's cached values read from under ``folder`` (a finished run's; an in-process runner's)."""
    for path in [p for p in _LOADED if p.startswith(folder)]:
        del _LOADED[path]


def unstaged(value: Any) -> Any:
    """``value.load()`` for a ``Staged`` value, else ``value`` itself (DoFns take either)."""
    return value.load() if isinstance(value, Staged) else value
