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

from beam_jobs.paths import files_under, is_local, match_under
from beam_jobs.sinks.writers import _masked_crc

SUCCESS = "_SUCCESS"
STALE_SECONDS = 6 * 3600


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
        old = f"{output.rstrip('/')}.old-{run_id}"
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


def clean_stale(output: str, max_age: float = STALE_SECONDS) -> list[str]:
    """Deletes ``<output>.staging-*`` / ``.old-*`` left by killed or failed runs more than ``max_age`` s ago."""
    base = output.rstrip("/")
    removed = []
    for suffix in (".staging-*", ".old-*"):
        if is_local(base):
            import glob

            for path in glob.glob(glob.escape(base) + suffix):  # the user's folder name is no pattern
                newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs),
                             default=os.path.getmtime(path))  # fmt: skip
                if time.time() - newest > max_age:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        else:
            metas = match_under(base, suffix + "/**")
            stale = [m.path for m in metas if time.time() - (m.last_updated_in_seconds or time.time()) > max_age]
            if stale:
                FileSystems.delete(stale)
                removed.extend(stale)
    return removed
