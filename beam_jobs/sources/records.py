"""Record-format sources: TFRecord, Parquet, CSV pixel rows, WebDataset tars and list files.

TFRecord includes TFDS directories; Parquet the Hugging Face layout and plain columns; list files are CSV or
JSONL of ``path,label``.

Each format has a scanner that walks its files in order and yields ``Item``s: a stable key (``<file>#<index>``,
the tar sample key, or the listed path, normalised), a label (index, name or None), the encoded bytes (or a path)
and, for records that cannot be used, a reason code. The launcher scans once to list classes and counts; the
pipeline's ``ReadRecordsFn`` scans again to stream the bytes, so nothing is loaded whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import posixpath
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.paths import exists, files_under, is_dir, is_local, is_object
from beam_jobs.sinks.manifest import MANIFEST
from beam_jobs.sources.listing import NO_LABEL, Listing, is_text
from beam_jobs.sources.reads import SourceFile, open_source
from beam_jobs.staged import Staged, unstaged
from schemas.source import SourceImage

FORMATS = ("imagefolder", "list", "tfrecord", "parquet", "csv", "tar")
# An integer label written as text, in its canonical form only: "001" keeps its own name (str.isdigit accepts "²",
# which int() refuses).
_INT = re.compile(r"-?(0|[1-9][0-9]*)")


@dataclass
class Item:
    """One record of a source file."""

    key: str
    label: int | str | None
    data: bytes | None = None
    path: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RecordOptions:
    """How to read records: feature/column names and, for CSV pixel rows, the image shape."""

    image_key: str = "image"
    label_key: str = "label"
    image_shape: tuple[int, int, int] | None = None


def _rel(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/") if root and path.startswith(root) else posixpath.basename(path)


def _open(path: str) -> SourceFile:
    """Opens a record file: a failed read raises ``SourceReadError``, never taken for damage (``sources.reads``)."""
    return open_source(path)


# --- TFRecord -------------------------------------------------------------------------------------------------


def scan_tfrecord(path: str, root: str, opts: RecordOptions, with_data: bool) -> Iterator[Item]:
    """Yields one item per ``tf.train.Example``; a bad CRC or truncation ends the shard with a dead item.

    Raises:
        SourceReadError: A read failed: no verdict on the records (a short read is truncation, a failed one is not).
    """
    from beam_jobs.sinks.writers import _masked_crc

    rel = _rel(path, root)
    with _open(path) as f:
        i = 0
        while True:
            header = f.read(12)
            if not header:
                return
            key = f"{rel}#{i}"
            if len(header) < 12 or _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
                yield Item(key, None, error="corrupt_record")
                return
            (length,) = struct.unpack("<Q", header[:8])
            body = f.read(length + 4)
            if len(body) < length + 4 or _masked_crc(body[:length]) != struct.unpack("<I", body[length:])[0]:
                yield Item(key, None, error="corrupt_record")
                return
            yield _example_item(key, body[:length], opts, with_data)
            i += 1


def _example_item(key: str, body: bytes, opts: RecordOptions, with_data: bool) -> Item:
    """Turns one serialized ``tf.train.Example`` into an item (a dead one when it is unusable)."""
    from schemas.tf_example import decode_example

    try:
        ex = decode_example(body)
    except (ValueError, IndexError, UnicodeDecodeError):
        return Item(key, None, error="corrupt_record")
    image, label = ex.get(opts.image_key), ex.get(opts.label_key)
    if not image:
        return Item(key, None, error="missing_image")
    if not label:
        return Item(key, None, error="missing_label")
    value = label[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return Item(key, None, error="unknown_label")  # bytes that are no text name no class
    return Item(key, value, data=image[0] if with_data else None)


# --- Parquet --------------------------------------------------------------------------------------------------


def parquet_class_names(path: str, label_key: str) -> list[str] | None:
    """Returns the ClassLabel names from a Hugging Face Parquet schema, if present (None for a damaged file).

    Raises:
        SourceReadError: The file could not be read (the scan would say whether it is damaged).
    """
    import pyarrow.parquet as pq

    with _open(path) as f:
        try:
            meta = pq.ParquetFile(f).schema_arrow.metadata or {}
        except Exception:  # noqa: BLE001 (damaged files are reported by the scan)
            f.check()  # a failed read is no damage: without the names every label would mean another class
            return None
    hf = json.loads(meta.get(b"huggingface", b"{}") or b"{}")
    feature = hf.get("info", {}).get("features", {}).get(label_key, {})
    return list(feature["names"]) if feature.get("_type") == "ClassLabel" and "names" in feature else None


def parquet_shards_class_names(files: list[str], label_key: str) -> list[str] | None:
    """Returns the ClassLabel names of Hugging Face Parquet shards, if they have any (one footer read per file).

    Raises:
        UserError: Two shards name different classes (a label is an index: it would mean another class in each).
    """
    first: tuple[str, list[str]] | None = None
    for path in files:
        names = parquet_class_names(path, label_key)
        if names is None:
            continue
        if first is None:
            first = (path, names)
        elif names != first[1]:
            raise UserError(
                f"the Parquet shards name different classes: {first[0]} has {first[1]}, {path} has {names}; "
                "give --source the shards of one dataset (or re-export them with one ClassLabel)"
            )
    return first[1] if first else None


def scan_parquet(path: str, root: str, opts: RecordOptions, with_data: bool) -> Iterator[Item]:
    """Yields one item per row; a file without a footer or without the columns is one dead item.

    A damaged page ends the file with one dead item (``corrupt_shard``, keyed by the first row not read).

    Raises:
        SourceReadError: A read failed (a reset connection, a timeout, a vanished file): no verdict on the rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel = _rel(path, root)
    with _open(path) as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception:  # noqa: BLE001 (a missing footer, not Parquet at all)
            f.check()  # a failed read is no damage: it raises, and the bundle is retried
            yield Item(rel, None, error="corrupt_shard")
            return
        schema = pf.schema_arrow
        if opts.label_key not in schema.names or not _holds_images(schema, opts.image_key):
            yield Item(rel, None, error="schema_mismatch")
            return
        i = 0
        try:
            # Group by group: a batch can span row groups, and damage in one would lose the rows before it too.
            for group in range(pf.num_row_groups):
                for batch in pf.iter_batches(256, row_groups=[group], columns=[opts.label_key, opts.image_key]):
                    labels = batch.column(opts.label_key).to_pylist()
                    images = batch.column(opts.image_key).to_pylist()
                    for label, image in zip(labels, images, strict=True):
                        yield _parquet_item(f"{rel}#{i}", label, image, with_data)
                        i += 1
        except (OSError, pa.ArrowException):  # a damaged page: keep what came before, as for a TFRecord
            # pyarrow 25 reports damage as ArrowInvalid or a bare OSError ("Couldn't deserialize thrift", "Corrupt
            # snappy compressed data", "ZSTD decompression failed"); a failed read is a SourceReadError, no OSError.
            f.check()
            yield Item(f"{rel}#{i}", None, error="corrupt_shard")


def _holds_images(schema, column: str) -> bool:
    """Whether ``column`` holds encoded images: binary, or HF's ``{bytes, path}`` struct (paths alone are not read)."""
    import pyarrow as pa

    if column not in schema.names:
        return False
    kind = schema.field(column).type
    if pa.types.is_struct(kind):
        kind = kind.field("bytes").type if kind.get_field_index("bytes") >= 0 else pa.null()
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _parquet_item(key: str, label: Any, image: Any, with_data: bool) -> Item:
    data = image.get("bytes") if isinstance(image, dict) else image
    if data is None:
        return Item(key, None, error="missing_image")
    if label is None:
        return Item(key, None, error="missing_label")
    return Item(key, label, data=data if with_data else None)


# --- CSV pixel rows -------------------------------------------------------------------------------------------


def scan_csv_pixels(path: str, root: str, opts: RecordOptions, with_data: bool) -> Iterator[Item]:
    """Yields one item per ``label,pixel1..pixelN`` row (header optional); pixels become a PNG.

    Raises:
        UserError: The file is not UTF-8 text (as for list files).
    """
    from transforms.codec import encode_image

    h, w, c = opts.image_shape or (0, 0, 0)
    rel = _rel(path, root)
    with _open(path) as f:
        for i, row in enumerate(_utf8_csv_rows(f, path)):
            key = f"{rel}#{i}"
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line (files often end with some), not a record
            if i == 0 and not _is_number(row[-1]):
                continue  # a header
            if len(row) != 1 + h * w * c:
                yield Item(key, None, error="bad_row_length")
                continue
            try:
                values = np.array([float(v) for v in row[1:]])
            except ValueError:
                yield Item(key, None, error="bad_pixel_value")
                continue
            if values.min(initial=0) < 0 or values.max(initial=0) > 255 or not np.all(values == np.round(values)):
                yield Item(key, None, error="bad_pixel_value")
                continue
            label: int | str = int(row[0]) if _is_int(row[0]) else row[0]
            data = None
            if with_data:
                data = encode_image(values.astype(np.uint8).reshape(h, w, c), "png")
            yield Item(key, label, data=data)


def _utf8_csv_rows(f: SourceFile, path: str) -> Iterator[list[str]]:
    """Yields the rows of a UTF-8 CSV file, streamed (pixel rows run to gigabytes); a byte-order mark is no text.

    Raises:
        UserError: The file is not UTF-8 text, as for list files (a decode error would end the run in a traceback).
    """
    # "utf-8-sig": Excel's "CSV UTF-8" starts with a byte-order mark, which would make the first label "\ufeff0".
    # "surrogateescape": a byte that is no UTF-8 reaches the row it is in, so the message can say which line (the
    # decoder's own offset counts in the chunk it was decoding, not in the file).
    reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline=""))
    for row in reader:
        if not is_text("".join(row)):
            raise UserError(
                f"{path} is not UTF-8 text (line {reader.line_num}): save the pixel rows as UTF-8 "
                "(label,pixel1,...,pixelN)"
            )
        yield row


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _is_int(text: str) -> bool:
    return _INT.fullmatch(text.strip()) is not None


# --- WebDataset tar shards ------------------------------------------------------------------------------------

_IMAGE_EXT = {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm"}


def scan_webdataset(path: str, root: str, opts: RecordOptions, with_data: bool) -> Iterator[Item]:
    """Yields one item per sample (``key.jpg`` + ``key.cls`` or ``key.json`` with a ``label``), streamed.

    A damaged shard keeps the samples before the damage; the sample being read where it breaks off is an
    ``archive_damaged`` item (its members after the break are lost, so it may lack its image, its label or a file
    that would change them), standing for the rest of the shard. A shard that is no tar (no sample was read) is
    one ``archive_damaged`` item keyed by the shard. What follows the end-of-archive marker is never damage
    (``archive._check_end``).

    Raises:
        SourceReadError: A read of the shard failed (damage ends the shard; a failed read is no damage).
    """
    from beam_jobs.sources.archive import ARCHIVE_ERRORS, iter_members

    rel = _rel(path, root)
    sample: dict[str, Any] = {}
    current = None
    seen: dict[str, int] = {}  # sample key -> times met: a key met again is a duplicate, whatever lies between

    def flush(damaged: bool = False):
        if current is None:
            return None
        seen[current] = seen.get(current, 0) + 1
        image = next((sample[e] for e in sample if e in _IMAGE_EXT), None)
        label = _sample_label(sample, opts.label_key)
        key = f"{rel}/{current}"
        if seen[current] > 1:  # the first sample of a key is kept; a later one is dead, under its own label
            key = f"{key} (duplicate {seen[current]})"
        if damaged:  # under its label as far as it was read, so that it counts under its class
            return Item(key, label, error="archive_damaged")
        if seen[current] > 1:
            return Item(key, label, error="duplicate_key")
        if image is None:
            return Item(key, None, error="missing_image")
        if label is None:
            return Item(key, None, error="missing_label")
        return Item(key, label, data=image if with_data else None)

    try:
        for name, _, data in iter_members(path, with_data=True):
            if name is None:
                continue
            base = posixpath.basename(name)
            stem, _, ext = base.partition(".")
            sample_key = posixpath.join(posixpath.dirname(name), stem)
            if sample_key != current:
                if (item := flush()) is not None:
                    yield item
                current, sample = sample_key, {}
            sample[ext.lower()] = data if data is not None else b""
    except ARCHIVE_ERRORS:
        # Damage comes before the end-of-archive marker (what follows it is never read): the sample being read
        # may have lost members, and it stands for the rest of the shard; with none, the shard is no tar.
        item = flush(damaged=True)
        yield item if item is not None else Item(rel, None, error="archive_damaged")
        return
    if (item := flush()) is not None:
        yield item


def _sample_label(sample: dict[str, bytes], label_key: str) -> int | str | None:
    """A WebDataset sample's label: its ``.cls`` text (an int when it is one), else its ``.json``'s ``label_key``."""
    if "cls" in sample:
        text = sample["cls"].decode("utf-8", "replace").strip()
        return int(text) if _is_int(text) else text
    if "json" in sample:
        try:
            return json.loads(sample["json"]).get(label_key)
        except (ValueError, AttributeError):
            return None
    return None


# --- list files -----------------------------------------------------------------------------------------------


# The first row of a list CSV is a header when it names its columns so (any case); any other row is data.
_PATH_HEADERS = frozenset(
    {"path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path", "img"}
)
_LABEL_HEADERS = frozenset({"label", "labels", "class", "class_name", "category", "target"})


def scan_list(path: str, root: str, opts: RecordOptions, with_data: bool) -> Iterator[Item]:
    """Yields one item per ``path,label`` line (CSV) or ``{"path": ..., "label": ...}`` line (JSONL).

    Fields are stripped. A line that is not a ``path,label`` row (bad JSON, not an object, a path that is not a
    string) is a ``bad_row`` item keyed ``<list file>#<line number>``. A listed path is keyed and read as
    ``listed_path`` says. A file listed again (with any label, under any spelling of its path) is a
    ``duplicate_key`` item keyed by its line: the first listing is kept, also when it is itself dead, so that no
    two items share a key.

    Raises:
        UserError: The file is not UTF-8 text.
    """
    base = list_file_folder(path)
    rel = _rel(path, root)
    seen: set[str] = set()  # where each listed file is, spelled one way
    for line, p, label in _list_rows(path, opts.label_key):
        if p is None:
            yield Item(f"{rel}#{line}", None, error="bad_row")
            continue
        if not p:
            yield Item(f"{rel}#{line}", None, error="missing_image")
            continue
        key, full = listed_path(base, p)
        label = int(label) if isinstance(label, str) and _is_int(label) else label
        where = _same_file(full)
        if where in seen:  # again with its label it would write the same records twice
            yield Item(f"{rel}#{line}", label, error="duplicate_key")
            continue
        seen.add(where)
        if label in (None, ""):
            yield Item(key, None, error="missing_label")
        else:
            yield Item(key, label, path=full)


def list_file_folder(path: str) -> str:
    """The folder a list file's relative paths are relative to: the list file's own."""
    return path.rsplit("/", 1)[0] if "/" in path else "."


def listed_path(base: str, p: str) -> tuple[str, str]:
    """Returns the key and the location of a path listed in a list file in the folder ``base``.

    A relative path is normalised as text (``posixpath.normpath``: ``./a/x.jpg``, ``a//x.jpg``, ``a/./x.jpg`` and
    ``a/b/../x.jpg`` are all ``a/x.jpg``), so one file has one key; a path that is normalised already keeps it as
    listed (keys seed every copy: a clean key must never change). It is read from ``base``, also when it climbs out
    of it with ``..`` (the list is the user's, as ``--source`` is; the key keeps its leading ``../``). An absolute
    path is normalised the same way and keyed by itself; a URL is an object's exact name (``a//b`` is another
    object than ``a/b``) and is taken as listed.
    """
    if "://" in p:
        return p, p
    if p.startswith("/"):
        key = "/" + posixpath.normpath(p).lstrip("/")  # POSIX keeps a leading "//"; Linux reads it as "/"
        return key, key
    key = posixpath.normpath(p)
    return key, _join(base, key)


def _join(base: str, key: str) -> str:
    """``base/key``; on an object store, a leading ``..`` is resolved (an object name has no ``..`` of its own)."""
    if "://" not in base or not key.startswith("../"):
        return f"{base}/{key}"
    scheme, _, rest = base.partition("://")
    bucket, _, folder = rest.partition("/")
    joined = posixpath.normpath(posixpath.join(folder, key))
    if joined == ".." or joined.startswith("../"):
        return f"{base}/{key}"  # above the bucket: it names no object, and is dead-lettered unreadable
    return f"{scheme}://{bucket}/{joined}"


def _same_file(location: str) -> str:
    """A location spelled one way: a local path made absolute (``a/x.jpg`` beside ``/data/a/x.jpg``), a URL as is."""
    return location if "://" in location else os.path.abspath(location)


def _list_rows(path: str, label_key: str) -> Iterator[tuple[int, str | None, Any]]:
    """Yields ``(line number, path, label)`` per row of a list file; the path is None on a line that is no row."""
    with _open(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not part of the first field
    except UnicodeDecodeError as e:
        raise UserError(
            f"--source {path} is not UTF-8 text ({e.reason} at byte {e.start}): save the list file as UTF-8 "
            '(a CSV of path,label or JSONL of {"path", "label"})'
        ) from None
    if path.lower().endswith((".jsonl", ".ndjson")):
        yield from _jsonl_rows(text, label_key)
        return
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        fields = [v.strip() for v in row]
        if not any(fields):
            continue
        header = reader.line_num == 1 and (
            fields[0].lower() in _PATH_HEADERS or (len(fields) > 1 and fields[1].lower() in _LABEL_HEADERS)
        )
        if not header:
            yield reader.line_num, fields[0], fields[1] if len(fields) > 1 else None


def _jsonl_rows(text: str, label_key: str) -> Iterator[tuple[int, str | None, Any]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(p := obj.get("path") or obj.get("file"), str | None):
            yield line, None, None  # bad JSON, an array, or a path that is no string
            continue
        label = obj.get(label_key)
        yield line, (p or "").strip(), label.strip() if isinstance(label, str) else label


SCANNERS = {
    "tfrecord": scan_tfrecord,
    "parquet": scan_parquet,
    "csv": scan_csv_pixels,
    "tar": scan_webdataset,
    "list": scan_list,
}


def _whole(item: Item) -> Item:
    """A whole-number float label is an int (a pandas int column with a gap is float64: 2.0 is 2); NaN is none."""
    label = item.label
    if isinstance(label, str) and _FLOAT_INT.fullmatch(label.strip()):  # "2.0", as pandas writes such a column
        label = float(label)
    if isinstance(label, float):
        label = None if math.isnan(label) else int(label) if label.is_integer() else label
    return replace(item, label=label) if label is not item.label else item


_FLOAT_INT = re.compile(r"-?(0|[1-9][0-9]*)\.0+|nan|NaN")


def list_records(fmt: str, files: list[str], root: str, opts: RecordOptions, class_names: list[str] | None):
    """Scans record files and returns the listing (class names from the source, else from the labels).

    With class names from the source (TFDS ``label.labels.txt``, HF ``ClassLabel``) an integer label is an index
    into them, as TFDS and HF store labels. Otherwise a label's class name is ``str(label)``: non-negative
    integers alone become classes ``"0".."max"`` (the index is the value), anything else sorted names (integers
    in numeric order first). A label that names no class (an index outside the names, HF's ``-1`` "no label", a
    float or a list) is dead-lettered as ``unknown_label`` — never defaulted.
    """
    items = [_whole(item) for path in files for item in SCANNERS[fmt](path, root, opts, with_data=False)]
    by_index = class_names is not None
    if class_names is None:
        class_names = _class_names([it.label for it in items if it.error is None and _is_label(it.label)])
    index = {n: i for i, n in enumerate(class_names)}
    images = []
    for it in items:
        found = _class_of(it.label, class_names, index, by_index)
        blank = it.label is None or (isinstance(it.label, str) and not it.label.strip())
        error = it.error or (None if found else "missing_label" if blank else "unknown_label")  # never defaulted
        label, name = found or (0, NO_LABEL)
        images.append(SourceImage(it.key, label, name, path=it.path, error=error))
    return Listing(class_names, images)


def _is_label(value: Any) -> bool:
    # bool is an int subclass, but True is no class; floats, lists and dicts are not labels either, nor is a blank.
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and bool(value.strip()))


def _class_names(labels: list[int | str]) -> list[str]:
    """Class names of sources that name none: ``"0".."max"`` for non-negative ints, else the sorted names."""
    if labels and all(isinstance(v, int) and v >= 0 for v in labels):
        return [str(i) for i in range(max(labels) + 1)]
    return sorted({str(v) for v in labels}, key=lambda n: (0, int(n), "") if _is_int(n) else (1, 0, n))


def _class_of(label: Any, class_names: list[str], index: dict[str, int], by_index: bool) -> tuple[int, str] | None:
    """Returns (index, name) of a label's class, or None when it names none."""
    if not _is_label(label):
        return None
    if by_index and isinstance(label, int):
        return (label, class_names[label]) if 0 <= label < len(class_names) else None
    name = str(label)
    return (index[name], name) if name in index else None


class ReadRecordsFn(beam.DoFn):
    """Streams one record file and emits a ``SourceImage`` with its bytes for every selected key.

    Args:
        fmt: ``tfrecord``, ``parquet``, ``csv`` or ``tar``.
        root: Common root of the files (keys are relative to it).
        opts: Feature/column names and image shape.
        selected: Key -> (label, label_name, error) from the listing (or that dict ``Staged``).
    """

    def __init__(self, fmt: str, root: str, opts: RecordOptions, selected: dict[str, tuple] | Staged):
        self._fmt, self._root, self._opts, self._selected = fmt, root, opts, selected

    def setup(self):
        """Reads the selection back if it was staged (``beam_jobs.staged``)."""
        self._selected = unstaged(self._selected)

    def process(self, path: str):
        """Yields the selected records of ``path`` (errors found by the listing are passed on)."""
        for it in SCANNERS[self._fmt](path, self._root, self._opts, with_data=True):
            if it.key in self._selected:
                label, name, error = self._selected[it.key]
                yield SourceImage(it.key, label, name, data=it.data or b"", error=error or it.error)


def record_files(source: str, fmt: str) -> tuple[list[str], str]:
    """Returns the files of a record source and their common root, as a run finds them (replay finds them again).

    A list file is one file, wherever it is; any other format goes through ``find_files``.

    Raises:
        UserError: No such files.
    """
    if fmt == "list" and is_object(source):
        return [source], source.rsplit("/", 1)[0] + "/" if "/" in source else ""
    return find_files(source, fmt)


def find_item(fmt: str, files: list[str], root: str, opts: RecordOptions, key: str) -> Item | None:
    """Returns the usable item keyed ``key`` (with its bytes, or its path for a list file), or None.

    Records have no index to seek by, so the files are scanned as a run scans them, up to the record: only those
    whose key prefix (``<file>#``, ``<shard>/``) the key starts with, but a record late in a big file costs reading
    the file up to it. That suits looking one record up (``beam-expand replay``), not many.
    """
    for path in files:
        rel = _rel(path, root)
        if fmt != "list" and not key.startswith((rel + "#", rel + "/")):
            continue  # a list file's keys are the listed paths: they name no file of the source
        for item in SCANNERS[fmt](path, root, opts, with_data=True):
            if item.key == key and item.error is None:
                return item
    return None


def find_files(source: str, fmt: str) -> tuple[list[str], str]:
    """Returns the files of a record source (a file, a glob or a directory) and their common root.

    A path that exists is taken literally (a folder may be named ``shards[1]``); only one that does not is a glob.
    """
    if any(ch in source for ch in "*?[") and not exists(source):
        files = [m.path for m in FileSystems.match([source])[0].metadata_list]
        root = re.split(r"[*?\[]", source, maxsplit=1)[0].rsplit("/", 1)[0] + "/"
    elif is_object(source):
        files, root = [source], source.rsplit("/", 1)[0] + "/" if "/" in source else ""
    else:
        root = source.rstrip("/") + "/"
        pattern = {"tfrecord": "*.tfrecord*", "parquet": "*.parquet*", "csv": "*.csv", "tar": "*.tar"}.get(fmt, "*")
        files = [m.path for m in files_under(root)]
        files = [f for f in files if _matches(posixpath.basename(f), pattern)]
        if exists(root + MANIFEST):
            # A beam-expand dataset: data/ mirrors its Parquet shards for Hugging Face (links, or copies on object
            # stores), so reading it too would read every record twice.
            files = [f for f in files if not f[len(root) :].startswith("data/")]
    files = sorted(files)
    if not files:
        raise UserError(f"no {fmt} files found at {source}; check --source and --source-format")
    for f in files:  # a record's key holds its file's name, and keys are UTF-8 (seeds, manifests, shards)
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"the file name {f!r} is not valid UTF-8; rename it (e.g. with convmv)") from None
    return files, root


def _matches(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern) or (pattern == "*.tar" and name.endswith((".tar", ".tgz", ".tar.gz")))


def detect_format(source: str) -> str:
    """Guesses ``--source-format`` from the source: file suffixes, a TFDS or HF directory, else an image folder."""
    low = source.lower()
    if ".tfrecord" in low:
        return "tfrecord"
    if low.endswith(".parquet") or ".parquet-" in low:
        return "parquet"
    if low.endswith((".jsonl", ".ndjson")):
        return "list"
    if low.endswith(".csv"):
        return "csv"
    if is_dir(source):
        if is_local(source):
            names = (name for _, _, files in os.walk(source) for name in files)
        else:  # the first objects under the prefix tell (listing millions of images would not pay)
            names = (posixpath.basename(m.path) for m in files_under(source, 1000))
        parquet = False
        for name in names:  # TFRecord shards win (an expanded dataset holds both formats)
            if ".tfrecord" in name:
                return "tfrecord"
            parquet = parquet or name.endswith(".parquet") or ".parquet-" in name
        if parquet:
            return "parquet"
    return "imagefolder"


def tfds_class_names(source: str) -> list[str] | None:
    """Returns class names from a TFDS directory's ``label.labels.txt``, if the source is one."""
    base = source if is_dir(source) else source.rsplit("/", 1)[0]
    path = FileSystems.join(base.rstrip("/"), "label.labels.txt")
    if not FileSystems.exists(path):
        return None
    with open_source(path) as f:
        return [line.strip() for line in f.read().decode("utf-8").splitlines() if line.strip()]
