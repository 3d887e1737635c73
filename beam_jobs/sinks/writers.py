"""Per-format shard writers used inside ``WriteShardsFn``: TFRecord framing and Parquet row groups.

TFRecord framing (as TensorFlow writes it)::

    uint64 length | uint32 masked_crc32c(length) | bytes data | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import struct
import tarfile
from typing import Any

import google_crc32c
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.arrow import records_to_table
from schemas.record import MIX_FIELDS
from schemas.tf_example import example_parts

# A Parquet row group is written once its rows hold ~2 MB of images (at most 1,024 rows): big enough to amortize the
# per-group cost, small enough that its images are still in the CPU cache when they are copied into Arrow and then into
# the file (256 rows of ~30 KB photos made writing 2-3x slower), and bounded worker memory.
PARQUET_ROW_GROUP_BYTES = 2 * 1024 * 1024
PARQUET_ROW_GROUP_ROWS = 1024
_WRITE_CHUNK = 1 << 20


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    return _mask(google_crc32c.value(data))


def tfrecord_frame(data: bytes) -> bytes:
    """Frames one serialized record as TFRecord bytes."""
    return b"".join(tfrecord_frame_parts([data]))


def tfrecord_frame_parts(parts: list[bytes]) -> list[bytes]:
    """Frames one serialized record given as parts (``schemas.tf_example.example_parts``); returns parts too.

    The data CRC is extended part by part, so the record is never joined into one buffer.
    """
    length = struct.pack("<Q", sum(map(len, parts)))
    crc = 0
    for part in parts:
        crc = google_crc32c.extend(crc, part)
    return [length + struct.pack("<I", _mask(google_crc32c.value(length))), *parts, struct.pack("<I", _mask(crc))]


class TFRecordShardWriter:
    """Writes records as ``tf.train.Example``s into one TFRecord file."""

    suffix = "tfrecord"

    def __init__(self, path: str, schema: pa.Schema | None = None):
        self.path = path
        self._file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self._mixed = schema is not None and MIX_FIELDS[0].name in schema.names
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.num_bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record."""
        frame = tfrecord_frame_parts(example_parts(record, self._mixed))
        size = sum(map(len, frame))
        self._pending += frame
        self._pending_bytes += size
        self.num_bytes += size
        if self._pending_bytes >= _WRITE_CHUNK:
            self._flush()

    def _flush(self) -> None:
        # One write per ~1 MB: a record's dozen small parts and its image, written one by one, cost two or three
        # system calls per record.
        self._file.write(b"".join(self._pending))
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        """Flushes and closes the file."""
        self._flush()
        self._file.close()


class ParquetShardWriter:
    """Writes records into one Parquet file, one row group per ~``PARQUET_ROW_GROUP_BYTES`` of records."""

    suffix = "parquet"

    def __init__(self, path: str, schema: pa.Schema):
        self.path = path
        self._schema = schema
        self._file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        # Encoded images do not compress: spend no CPU on them; the small columns get snappy.
        codecs = {name: "snappy" for name in schema.names if name != "image"}
        codecs.update({"image.bytes": "none", "image.path": "snappy"})
        # Nor try to dictionary-encode them (hashing every image for a dictionary that never pays; ~20% of writing).
        small = [name for name in schema.names if name != "image"] + ["image.path"]
        self._writer = pq.ParquetWriter(self._file, schema, compression=codecs, use_dictionary=small)
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self.num_bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        """Buffers one record; writes a row group when enough are buffered."""
        size = len(record["image"]) + len(record["recipe"]) + 64
        self._pending.append(record)
        self._pending_bytes += size
        self.num_bytes += size
        if self._pending_bytes >= PARQUET_ROW_GROUP_BYTES or len(self._pending) >= PARQUET_ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(records_to_table(self._pending, self._schema))
            self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        """Writes the last row group and the footer, then closes the file."""
        self._flush()
        self._writer.close()
        self._file.close()


WRITERS = {"tfrecord": TFRecordShardWriter, "parquet": ParquetShardWriter}
FORMATS = tuple(WRITERS)


# Readable parts of export names are cut to this many characters: at up to 4 UTF-8 bytes each, with the hash and the
# copy/view suffix, a name stays below the 255 bytes a file system allows.
_READABLE_MAX = 50
# A source key kept readable in export names as-is: ``<class>/<stem>.<ext>`` (the other "." becomes "_").
_PLAIN_FILE = re.compile(rf"[\w-]{{1,{_READABLE_MAX - 8}}}\.[^\W_]{{1,7}}")
# What a class name cannot keep in a folder name: a leading "." (".", "..", hidden), separators, control characters.
_NOT_IN_FOLDER_NAMES = re.compile(r"^\.|[/\\\x00-\x1f\x7f]")


def _digest(text: str) -> str:
    """A short stable hash (never ``hash()``, which differs between processes) that keeps a changed name unique."""
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


def _readable(text: str) -> str:
    """``text`` with each character other than letters, digits, ``-`` and ``_`` replaced by ``_``; cut short."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:_READABLE_MAX]


def flat_name(record: dict[str, Any]) -> str:
    """A file-name-safe stem, unique per source key, for one record: key, copy index (and view).

    A key ``<class>/<stem>.<ext>`` of plain characters gives ``<stem>_<ext>``; any other key gives its readable
    form plus ``-`` and a hash of the key, so ``a b.jpg`` and ``a_b.jpg``, or ``x.jpg`` and ``x.png``, never share
    a name (a plain stem ends in ``_<ext>``, a hashed one in ``-<hex>``: the two kinds cannot meet either).
    """
    key = record["source_key"]
    # The class folder is already the parent directory in exports; keep the rest of the key's path.
    prefix = f"{record['label_name']}/"
    rest = key[len(prefix) :] if key.startswith(prefix) else key
    stem = _readable(rest)
    if not (key.startswith(prefix) and _PLAIN_FILE.fullmatch(rest)):
        stem += f"-{_digest(key)}"
    view = record.get("view_index", 0)
    return f"{stem}_{record['copy_index']}" + (f"_view{view}" if view else "")


def class_folder(name: str) -> str:
    """The export folder of a class: one path component, distinct for distinct classes.

    A name that is a plain folder name is kept; one that is empty, hidden (``.``, ``..``, ``.x``), too long or
    holds ``/``, a backslash or control characters (``T-shirt/top``) gets those replaced by ``_`` plus ``-`` and a
    hash of the name, so it can neither leave ``images/<split>`` nor merge with another class.
    """
    if name and len(name) <= _READABLE_MAX and not _NOT_IN_FOLDER_NAMES.search(name):
        return name
    return _NOT_IN_FOLDER_NAMES.sub("_", name[:_READABLE_MAX]) + f"-{_digest(name)}"


def _extension(image: bytes) -> str:
    if image[:3] == b"\xff\xd8\xff":
        return "jpg"
    if image[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "webp" if image[8:12] == b"WEBP" else "bin"


class WebDatasetShardWriter:
    """Writes records as a WebDataset tar shard: ``<stem>.jpg|png`` + ``<stem>.cls`` + ``<stem>.json``."""

    suffix = "tar"

    def __init__(self, path: str, schema: pa.Schema | None = None):
        self.path = path
        self._file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self._tar = tarfile.open(fileobj=self._file, mode="w|", format=tarfile.PAX_FORMAT)
        self.num_bytes = 0

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0  # deterministic archives
        self._tar.addfile(info, io.BytesIO(data))
        self.num_bytes += 512 + len(data)

    def write(self, record: dict[str, Any]) -> None:
        """Appends one sample (three members)."""
        stem = flat_name(record)
        meta = {k: record[k] for k in ("label", "label_name", "source_key", "copy_index", "view_index", "height",
                                     "width")}  # fmt: skip
        meta.update({f.name: record[f.name] for f in MIX_FIELDS if f.name in record})  # mixed runs
        meta["recipe"] = json.loads(record["recipe"]) if record["recipe"] else None
        self._add(f"{stem}.{_extension(record['image'])}", record["image"])
        self._add(f"{stem}.cls", str(record["label"]).encode())
        self._add(f"{stem}.json", json.dumps(meta, sort_keys=True).encode())

    def close(self) -> None:
        """Writes the end-of-archive blocks and closes the file."""
        self._tar.close()
        self._file.close()


class ImageFolderWriter:
    """Exports records as files ``images/<split>/<class>/<source>_<copy>.<ext>`` (what ``save_to_dir`` users want).

    Folder and file names come from ``class_folder`` and ``flat_name``: single, safe path components, one per class
    and per record.

    Names are a pure function of the record, so a retried bundle rewrites the same files with the same bytes;
    they are written straight into the staging directory (``<staging>/.tmp/...`` -> ``<staging>/images``).
    """

    suffix = "imagefolder"

    def __init__(self, path: str, schema: pa.Schema | None = None):
        self.path = path
        staging = path.rsplit("/.tmp/", 1)[0]
        split = posixpath.basename(path).split("-imagefolder-", 1)[0]
        self._root = FileSystems.join(staging, "images", split)
        self.num_bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        """Writes one image file."""
        name = f"{flat_name(record)}.{_extension(record['image'])}"
        with FileSystems.create(FileSystems.join(self._root, class_folder(record["label_name"]), name)) as f:
            f.write(record["image"])
        self.num_bytes += len(record["image"])

    def close(self) -> None:
        """Nothing to close: every image is its own file."""


WRITERS["webdataset"] = WebDatasetShardWriter
WRITERS["imagefolder"] = ImageFolderWriter
FORMATS = tuple(WRITERS)
