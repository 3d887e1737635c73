"""Verify a staged dataset, then publish it in one step; clean up what failed runs left behind.

A run writes into ``<output>.staging-<run id>`` (a sibling of the output). Only when every shard has been
re-read and matches the manifest (record count, TFRecord CRCs, sha256) does the staging directory replace the
output: on a local disk by two renames (the old dataset moves aside, the new one moves in; a reader sees the old
dataset, the new one, or for a moment none — never half of one). Object stores have no directory rename: there
the files are moved one by one, so use ``--refresh`` (a ``LATEST`` pointer swapped atomically) when readers may
be reading during a publish.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import time

from apache_beam.io.filesystems import FileSystems

from beam_jobs.paths import is_local
from beam_jobs.sinks.writers import _masked_crc

SUCCESS = "_SUCCESS"
STALE_SECONDS = 6 * 3600


class VerificationError(Exception):
    """A written shard does not match what the run reported."""


def count_tfrecords(path: str, data: bytes | None = None) -> int:
    """Walks a TFRecord file, checking every length and data CRC; returns the number of records.

    Args:
        path: The file (named in errors; read when ``data`` is None).
        data: The file's bytes, if already read.

    Raises:
        VerificationError: A truncated record or a CRC mismatch, with the record's offset.
    """
    if data is None:
        with FileSystems.open(path) as f:
            data = f.read()
    n = offset = 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise VerificationError(f"{path}: truncated record header at byte {offset}")
        (length,) = struct.unpack_from("<Q", data, offset)
        (length_crc,) = struct.unpack_from("<I", data, offset + 8)
        if _masked_crc(data[offset : offset + 8]) != length_crc:
            raise VerificationError(f"{path}: bad length CRC at byte {offset}")
        end = offset + 12 + length
        if end + 4 > len(data):
            raise VerificationError(f"{path}: truncated record at byte {offset}")
        (data_crc,) = struct.unpack_from("<I", data, end)
        if _masked_crc(data[offset + 12 : end]) != data_crc:
            raise VerificationError(f"{path}: bad data CRC at byte {offset}")
        n += 1
        offset = end + 4
    return n


def count_parquet(path: str, data: bytes | None = None) -> int:
    """Returns the number of rows a Parquet file's footer declares (reading the footer checks it is whole)."""
    import io

    import pyarrow.parquet as pq

    if data is None:
        with FileSystems.open(path) as f:
            data = f.read()
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def count_webdataset(path: str, data: bytes | None = None) -> int:
    """Returns the number of samples (``.cls`` members) in a WebDataset tar shard."""
    import io
    import tarfile

    if data is None:
        with FileSystems.open(path) as f:
            data = f.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return sum(1 for m in tar if m.name.endswith(".cls"))


def _folder_files(path: str) -> list:
    if not FileSystems.exists(path):
        return []
    return sorted(FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list, key=lambda m: m.path)


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
            data = f.read()  # one read serves the count, the CRCs and the sha256
        records = counters[fmt](path, data)
    except VerificationError:
        raise
    except Exception as e:  # a damaged Parquet footer, a missing file
        raise VerificationError(f"{path}: {type(e).__name__}: {e}") from None
    if expected is not None and records != expected:
        raise VerificationError(f"{path}: {records} records, expected {expected}")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise VerificationError(f"{path}: sha256 {digest}, expected {sha256}")
    return {"records": records, "bytes": len(data), "sha256": digest}


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
    old = [m.path for m in FileSystems.match([prefix + "**"])[0].metadata_list] if FileSystems.exists(output) else []
    if old:
        FileSystems.delete(old)
    files = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    FileSystems.rename(files, [prefix + f[len(staging.rstrip("/")) + 1 :] for f in files])


def clean_stale(output: str, max_age: float = STALE_SECONDS) -> list[str]:
    """Deletes ``<output>.staging-*`` / ``.old-*`` left by killed or failed runs more than ``max_age`` s ago."""
    base = output.rstrip("/")
    removed = []
    for pattern in (base + ".staging-*", base + ".old-*"):
        if is_local(base):
            import glob

            for path in glob.glob(pattern):
                newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs),
                             default=os.path.getmtime(path))  # fmt: skip
                if time.time() - newest > max_age:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        else:
            metas = FileSystems.match([pattern + "/**"])[0].metadata_list
            stale = [m.path for m in metas if time.time() - (m.last_updated_in_seconds or time.time()) > max_age]
            if stale:
                FileSystems.delete(stale)
                removed.extend(stale)
    return removed
