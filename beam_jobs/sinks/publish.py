"""Verify a staged dataset, then publish it in one step; clean up what failed runs left behind.

A run writes into ``<output>.staging-<run id>`` (a sibling of the output). Only when every shard has been
re-read (by the worker that wrote it, right after closing it: record count, TFRecord CRCs, sha256) and still has
the verified size once staged does the staging directory replace the output: on a local disk by two renames (the
old dataset moves aside, the new one moves in; a reader sees the old dataset, the new one, or for a moment none —
never half of one). Object stores have no directory rename: there the files are moved one by one, so use
``--refresh`` (a ``LATEST`` pointer swapped atomically) when readers may be reading during a publish.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import time

from apache_beam.io.filesystems import FileSystems

from beam_jobs.paths import delete_tree, files_under, is_local, match_under
from beam_jobs.sinks.writers import _masked_crc

SUCCESS = "_SUCCESS"
STAGING = ".staging-"  # <output>.staging-<run id>: where a run writes before it publishes
OLD = ".old-"  # <output>.old-<run id>: the dataset a local publish moved aside (removed right after)
STALE_SECONDS = 6 * 3600  # a run folder nobody wrote to for this long is a killed run's


class VerificationError(Exception):
    """A written shard does not match what the run reported."""


_CHUNK = 1 << 20


class _HashingReader:
    """A read-only stream that feeds every byte it returns into a sha256 (verification reads each shard once)."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        """Reads up to ``n`` bytes (all when negative)."""
        data = self._f.read(n) if n >= 0 else self._f.read()
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        """Reads (and hashes) whatever the counter left unread."""
        while self.read(_CHUNK):
            pass


def count_tfrecords(path: str, f) -> int:
    """Walks a TFRecord stream record by record, checking every length and data CRC; returns the record count.

    Raises:
        VerificationError: A truncated record or a CRC mismatch, with the record's offset.
    """
    n = offset = 0
    while header := f.read(12):
        if len(header) < 12:
            raise VerificationError(f"{path}: truncated record header at byte {offset}")
        (length,) = struct.unpack_from("<Q", header)
        (length_crc,) = struct.unpack_from("<I", header, 8)
        if _masked_crc(header[:8]) != length_crc:
            raise VerificationError(f"{path}: bad length CRC at byte {offset}")
        data, footer = f.read(length), f.read(4)  # two reads: slicing the CRC off would copy the data
        if len(data) < length or len(footer) < 4:
            raise VerificationError(f"{path}: truncated record at byte {offset}")
        (data_crc,) = struct.unpack("<I", footer)
        if _masked_crc(data) != data_crc:
            raise VerificationError(f"{path}: bad data CRC at byte {offset}")
        n += 1
        offset += 12 + length + 4
    return n


def count_parquet(path: str, f) -> int:
    """Returns the number of rows a Parquet file's footer declares (reading the footer checks it is whole)."""
    import pyarrow.parquet as pq

    f.drain()  # the hash covers every byte; the footer is read again below, by seeking
    with FileSystems.open(path) as seekable:
        return pq.ParquetFile(seekable).metadata.num_rows


def count_webdataset(path: str, f) -> int:
    """Returns the number of samples (``.cls`` members) in a WebDataset tar stream."""
    import tarfile

    with tarfile.open(fileobj=f, mode="r|") as tar:
        return sum(1 for m in tar if m.name.endswith(".cls"))


def _folder_files(path: str) -> list:
    return sorted(files_under(path), key=lambda m: m.path)


def verify_shard(path: str, fmt: str, expected: int | None = None, sha256: str | None = None) -> dict:
    """Re-reads one shard (or, for ``imagefolder``, one split's folder); returns ``{records, bytes, sha256}``.

    Raises:
        VerificationError: The count or the checksum differs from what is expected, or the file is damaged.
    """
    if fmt == "imagefolder":
        files = _folder_files(path)
        if expected is not None and len(files) != expected:
            raise VerificationError(f"{path}: {len(files)} image files, expected {expected}")
        listing = hashlib.sha256("".join(f"{m.path[len(path) :]}:{m.size_in_bytes}\n" for m in files).encode())
        digest = listing.hexdigest()  # of names and sizes: cheap, and catches a missing or replaced file
        if sha256 is not None and digest != sha256:
            raise VerificationError(f"{path}: the files differ from the manifest")
        return {"records": len(files), "bytes": sum(m.size_in_bytes for m in files), "sha256": digest}
    counters = {"tfrecord": count_tfrecords, "parquet": count_parquet, "webdataset": count_webdataset}
    try:
        with FileSystems.open(path) as f:
            # One streamed read serves the count, the CRCs and the sha256; memory stays at one record or chunk.
            stream = _HashingReader(f)
            records = counters[fmt](path, stream)
            stream.drain()
    except VerificationError:
        raise
    except Exception as e:  # a damaged Parquet footer, a missing file
        raise VerificationError(f"{path}: {type(e).__name__}: {e}") from None
    if expected is not None and records != expected:
        raise VerificationError(f"{path}: {records} records, expected {expected}")
    digest = stream.sha256.hexdigest()
    if sha256 is not None and digest != sha256:
        raise VerificationError(f"{path}: sha256 {digest}, expected {sha256}")
    return {"records": records, "bytes": stream.bytes, "sha256": digest}


def publish(staging: str, output: str, run_id: str) -> None:
    """Replaces ``output`` with the verified ``staging`` directory."""
    if is_local(output):
        old = f"{output.rstrip('/')}{OLD}{run_id}"
        if os.path.exists(output):
            os.rename(output, old)
        os.rename(staging, output)
        shutil.rmtree(old, ignore_errors=True)
        return
    # Object stores: no directory rename. Remove the previous run's files, then move the new ones in.
    prefix = output.rstrip("/") + "/"
    old = [m.path for m in files_under(output)]
    if old:
        FileSystems.delete(old)
    files = [m.path for m in files_under(staging)]
    FileSystems.rename(files, [prefix + f[len(staging.rstrip("/")) + 1 :] for f in files])


def is_run_folder(name: str) -> bool:
    """Whether a folder's name is a run's staging or set-aside folder (``<output>.staging-<run id>``, ``.old-``).

    Such a folder may hold a whole dataset, manifest included (a run finalizing, or killed while publishing): it is
    never a published dataset, nor a refresh version.
    """
    return STAGING in name or OLD in name


def clean_stale(output: str, max_age: float = STALE_SECONDS) -> list[str]:
    """Deletes ``<output>.staging-*`` / ``.old-*`` folders abandoned by killed runs; returns the folders deleted.

    A folder is abandoned when nothing in it was written for ``max_age`` seconds (``_abandoned``).
    """
    return _clean(output.rstrip("/"), "", max_age)


def clean_stale_in(folder: str, max_age: float = STALE_SECONDS) -> list[str]:
    """Deletes the abandoned ``*.staging-*`` / ``*.old-*`` folders directly in ``folder``, of whatever output.

    For a refresh root's ``versions``: each refresh stages beside the new version it names, so a killed run's
    staging folder is named for a version no later run has (``clean_stale`` of a later version never sees it).
    """
    return _clean(folder.rstrip("/") + "/", "*", max_age)


def _clean(base: str, stem: str, max_age: float) -> list[str]:
    """Deletes the abandoned folders ``base + stem + .staging-*`` (and ``.old-*``); ``base`` is taken literally."""
    removed = []
    for mark in (STAGING, OLD):
        for folder, newest in _run_folders(base, f"{stem}{mark}*"):
            if _abandoned(newest, max_age):
                _delete(folder)
                removed.append(folder)
    return removed


def _abandoned(newest: float, max_age: float) -> bool:
    """Whether a run folder whose newest file was written at ``newest`` is a killed run's.

    Judged by age alone: a run leaves no lock or pid that a later run, maybe on another machine, could check. A run
    in progress writes its shards into its folder, so one nobody wrote to for ``max_age`` (6 hours by default) is
    taken for abandoned; a live run that writes nothing for that long (its workers queued for hours) would be too.
    """
    return time.time() - newest > max_age


def _run_folders(base: str, pattern: str) -> list[tuple[str, float]]:
    """``(folder, time its newest file was written)`` of each folder that ``base + pattern`` (one level) names.

    A folder is judged as a whole, on object stores as on disks: its plan, written when the run started, is old
    long before its last shard is; deleting the old files of a running job's folder would break that job.
    """
    if is_local(base):
        import glob

        found = glob.glob(glob.escape(base) + pattern)  # the user's folder name is no pattern
        return sorted((path, _newest_local(path)) for path in found if os.path.isdir(path))
    newest: dict[str, float] = {}
    for m in match_under(base, pattern + "/**"):
        folder = base + m.path[len(base) :].split("/")[0]
        written = m.last_updated_in_seconds or time.time()  # no time known: taken for fresh, never deleted
        newest[folder] = max(newest.get(folder, 0.0), written)
    return sorted(newest.items())


def _newest_local(path: str) -> float:
    """When the newest file under a local folder was written (the folder's own time when it holds none).

    A file gone between the listing and its lookup was moved or deleted just now: the folder is in use.
    """
    newest = None
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                written = os.path.getmtime(os.path.join(folder, name))
            except OSError:
                return time.time()
            newest = written if newest is None else max(newest, written)
    if newest is not None:
        return newest
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


def _delete(folder: str) -> None:
    """Deletes a run folder; locally, one another run is deleting at the same moment is no error."""
    if is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        delete_tree(folder)
