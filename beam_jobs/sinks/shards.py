"""Shard files written by the expanding workers themselves: no shuffle of encoded copies.

Each bundle writes its records to temporary files named uniquely per bundle attempt, and reports them in
``finish_bundle``. Only reports of bundles that succeeded reach ``FinalizeFn``, which renames those files into
place; files of failed or retried attempts are never reported and are deleted with the temporary directory.
Determinism is defined on the set of records, not on which shard holds which record.

Shape: record dicts -> WriteShardsFn -> ShardReport (one per file, emitted at the end of the bundle).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from beam_jobs.sinks.publish import verify_shard
from beam_jobs.sinks.writers import WRITERS
from schemas.arrow import arrow_schema
from transforms.quality import record_counts

DEFAULT_MAX_SHARD_BYTES = 256 * 1024 * 1024


class ShardReport(NamedTuple):
    """One temporary shard file written by a successful bundle.

    Attributes:
        fmt: ``tfrecord`` or ``parquet``.
        split: The split of every record in the file.
        temp_path: Where the file is now.
        num_records: Records in the file (read from the data, not from metrics).
        num_bytes: Size of the file, as re-read after closing it (image folders: approximate payload).
        first_key: Smallest ``source_key`` in the file; orders shards deterministically.
        records_per_class: Records per class name.
        sources_per_class: Source images per class name (counted once per source, under its own class).
        gate_counts: Augmented copies and the quality gate's re-draws and flags among them
            (``transforms.quality.record_counts``, summed).
        mix_states: In a mixed run, augmented copies per outcome (``transforms.mix.MIX_STATES``).
        sha256: Of the file, from the re-read that verified it (None for image folders, checked at finalize).
    """

    fmt: str
    split: str
    temp_path: str
    num_records: int
    num_bytes: int
    first_key: str
    records_per_class: dict[str, int]
    sources_per_class: dict[str, int]
    gate_counts: dict[str, int]
    mix_states: dict[str, int] | None = None
    sha256: str | None = None


class _OpenShard:
    def __init__(self, writer):
        self.writer = writer
        self.records = 0
        self.first_key: str | None = None
        self.per_class: Counter = Counter()
        self.sources: Counter = Counter()
        self.mix_states: Counter = Counter()
        self.gate: Counter = Counter()


class WriteShardsFn(beam.DoFn):
    """Writes every record of a bundle into one temporary file per format (rolled over at a size limit).

    Args:
        temp_dir: Directory for temporary shard files (any Beam filesystem).
        formats: Output formats, e.g. ``("tfrecord", "parquet")``.
        class_names: Class names in label order (for the Parquet schema metadata).
        max_shard_bytes: Roll over to a new file after this many bytes.
        progress_dir: Local directory where counts are dropped for the launcher's progress line, or None.
        max_shard_records: Roll over to a new file after this many records (between sources), or None.
        mixed: The run mixes images: records carry the mix fields (``schemas.record.MIX_FIELDS``).
    """

    def __init__(
        self,
        temp_dir: str,
        formats: tuple[str, ...],
        class_names: list[str],
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        progress_dir: str | None = None,
        max_shard_records: int | None = None,
        mixed: bool = False,
    ):
        self._mixed = mixed
        self._max_shard_records = max_shard_records
        self._temp_dir = temp_dir
        self._formats = tuple(formats)
        self._class_names = list(class_names)
        self._max_shard_bytes = max_shard_bytes
        self._progress_dir = progress_dir
        self._shards_written = Metrics.counter("beam_expand", "shards_written")

    def setup(self):
        """Builds the Arrow schema once; picks a progress file name for this instance."""
        self._schema = arrow_schema(self._class_names, self._mixed)
        self._progress_path = None
        if self._progress_dir:
            self._progress_path = os.path.join(self._progress_dir, f"{uuid.uuid4().hex}.json")
        self._progress_records = 0
        self._progress_sources = 0
        self._progress_at = 0.0

    def start_bundle(self):
        """Starts a bundle with no open files."""
        self._open: dict[tuple[str, str], _OpenShard] = {}
        self._done: list[ShardReport] = []

    def _shard(self, split: str, fmt: str) -> _OpenShard:
        if (split, fmt) not in self._open:
            path = FileSystems.join(self._temp_dir, f"{split}-{fmt}-{uuid.uuid4().hex}")
            self._open[(split, fmt)] = _OpenShard(WRITERS[fmt](path, self._schema))
        return self._open[(split, fmt)]

    def _close(self, key: tuple[str, str]) -> None:
        split, fmt = key
        shard = self._open.pop(key)
        shard.writer.close()
        # Re-read the closed file here, on the worker that wrote it: verification runs in parallel with the rest
        # of the job, and a bad write fails (and retries) this bundle instead of the whole run at the end.
        checked = None if fmt == "imagefolder" else verify_shard(shard.writer.path, fmt, expected=shard.records)
        self._shards_written.inc()
        self._done.append(
            ShardReport(
                fmt,
                split,
                shard.writer.path,
                shard.records,
                checked["bytes"] if checked else shard.writer.num_bytes,
                shard.first_key or "",
                dict(shard.per_class),
                dict(shard.sources),
                dict(shard.gate),
                dict(shard.mix_states) if self._mixed else None,
                checked["sha256"] if checked else None,
            )
        )

    def process(self, record: dict[str, Any]):
        """Appends a record to this bundle's open files; nothing is emitted until the bundle finishes."""
        key = record["source_key"]
        starts_source = bool(record.get("source_start"))
        split = record.get("split", "train")
        gate = record_counts(record["recipe"]) if record["copy_index"] else None
        if starts_source:
            # Roll over only between sources, so all copies of one source stay in one file.
            self._roll_over_full()
        for fmt in self._formats:
            shard = self._shard(split, fmt)
            shard.writer.write(record)
            shard.records += 1
            shard.per_class[record["label_name"]] += 1
            if starts_source:
                shard.sources[record.get("source_class", record["label_name"])] += 1
            if "mix_state" in record:
                shard.mix_states[record["mix_state"]] += 1
            if gate:
                shard.gate.update(gate)
            if shard.first_key is None or key < shard.first_key:
                shard.first_key = key
        self._progress_records += 1
        self._progress_sources += int(starts_source)
        self._report_progress(force=False)
        return ()

    def _roll_over_full(self) -> None:
        for key in list(self._open):
            shard = self._open[key]
            full_records = self._max_shard_records is not None and shard.records >= self._max_shard_records
            if shard.writer.num_bytes >= self._max_shard_bytes or full_records:
                self._close(key)

    def _report_progress(self, force: bool) -> None:
        if self._progress_path is None:
            return
        now = time.monotonic()
        if not force and now - self._progress_at < 0.5:
            return
        self._progress_at = now
        tmp = self._progress_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"records": self._progress_records, "sources": self._progress_sources}, f)
        os.replace(tmp, self._progress_path)

    def finish_bundle(self):
        """Closes the bundle's files and emits one ``ShardReport`` per file."""
        for key in list(self._open):
            self._close(key)
        self._report_progress(force=True)
        for report in self._done:
            yield GlobalWindows.windowed_value(report)
        self._done = []
