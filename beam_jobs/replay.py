"""``beam-expand replay``: re-derive one copy from a dataset directory (or a recipe and an image), bit for bit.

The source image is found again the way the run read it (the manifest names the source, its kind and the run's
record options): every kind the job reads replays, record files included, with the sources' own readers.

beam-expand replay out/flowers --source-key daisy/5547758_eea9edfd54_n.jpg --copy-index 3 --out copy.jpg
beam-expand replay --recipe recipe.json --image daisy.jpg --out copy.jpg
"""

from __future__ import annotations

import pyarrow.dataset as pads
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import SourceReadError, UserError
from beam_jobs.paths import match_under
from beam_jobs.sinks.manifest import MANIFEST, read_json
from beam_jobs.sources import records
from beam_jobs.sources.archive import ARCHIVE_ERRORS, is_archive, read_members
from transforms.expand import unreadable


def find_record(out_dir: str, source_key: str, copy_index: int, view_index: int = 0) -> dict:
    """Returns the stored record (from the Parquet shards) of one copy, or of one test-time view (``--tta``).

    Raises:
        UserError: No Parquet shards, or no such copy.
    """
    files = [m.path for m in match_under(out_dir.rstrip("/") + "/", "*.parquet-*")]
    if not files:
        raise UserError(f"{out_dir} has no Parquet shards (replay reads them); was it written with --formats parquet?")
    wanted = (pads.field("source_key") == source_key) & (pads.field("copy_index") == copy_index)
    for path in sorted(files):  # opened through Beam: any filesystem Beam reads (pyarrow's own URIs cover fewer)
        with FileSystems.open(path) as f:
            shard = pq.ParquetFile(f)
            has_views = "view_index" in shard.schema_arrow.names  # written before it existed: view 0 only
            if not has_views and view_index:
                continue
            f.seek(0)
            table = pq.read_table(f, filters=wanted & (pads.field("view_index") == view_index) if has_views else wanted)
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]
    raise UserError(f"no record with source_key={source_key!r}, copy_index={copy_index} and "
                    f"view_index={view_index} in {out_dir}")  # fmt: skip


def source_bytes(out_dir: str, source_key: str, source: str | None = None) -> bytes:
    """Reads a source image's bytes: from ``source`` if given, else from where the manifest says the run read.

    The key is looked up the way the run read the source's kind: a file under an image folder, a member of an
    archive, a path in a list file, or a record of record files (TFRecord, Parquet, CSV pixel rows, WebDataset).

    Raises:
        UserError: The source is gone or does not hold the key.
    """
    manifest = read_json(FileSystems.join(out_dir, MANIFEST), rows=False)
    kind = manifest["source"]["kind"]
    path = source or manifest["source"]["path"]
    if kind in records.SCANNERS:
        return _record_bytes(kind, path, source_key, _record_options(manifest.get("config") or {}))
    if kind == "folder" and not is_archive(path):
        return _file_bytes(FileSystems.join(path.rstrip("/"), source_key), "pass --source <dataset root>")
    return _member_bytes(path, manifest["source"].get("archive_prefix", "") + source_key, source_key)


def _record_options(config: dict) -> records.RecordOptions:
    """The run's feature/column names and pixel-row shape (the manifest's config): records are read as it read them."""
    shape = config.get("image_shape")
    return records.RecordOptions(
        config.get("image_key") or "image", config.get("label_key") or "label", tuple(shape) if shape else None
    )


def _record_bytes(fmt: str, path: str, source_key: str, opts: records.RecordOptions) -> bytes:
    """Finds the record ``source_key`` in a record source with the run's own scanner; a list file's image is read.

    Raises:
        UserError: The source's files are gone, or none holds a usable record with that key.
    """
    hint = f"pass --source <where the {fmt} source is now>"
    try:
        files, root = records.record_files(path, fmt)
    except UserError:  # the run found files there, so they moved or were deleted since
        gone = f"the {fmt} source {path} that the run read is gone (no {fmt} files there now)"
        raise UserError(f"{gone}; {hint}") from None
    try:
        item = records.find_item(fmt, files, root, opts, source_key)
    except Exception as e:  # noqa: BLE001 (the file itself failed: gone, denied; passing trouble is raised)
        if not (isinstance(e, SourceReadError) or unreadable(e)):
            raise
        raise UserError(f"cannot read the {fmt} source {path} ({_why(e)}); {hint}") from None
    if item is None:
        raise UserError(f"no usable record {source_key!r} in the {fmt} source {path}: it changed since the run, or "
                        f"is not the one the run read; {hint}")  # fmt: skip
    if item.path is None:
        return item.data or b""
    listed = f"the list file {path} names it, relative to itself; if the images moved, pass --source <the list file>"
    return _file_bytes(item.path, listed)


def _file_bytes(target: str, hint: str) -> bytes:
    """Reads one image file (any Beam filesystem).

    Raises:
        UserError: It is gone or cannot be read (``hint`` says what to do).
    """
    try:
        with FileSystems.open(target) as f:
            return f.read()
    except Exception as e:  # noqa: BLE001 (object stores raise their own "not found", no OSError)
        if not unreadable(e):
            raise
        raise UserError(f"source image {target} is gone or unreadable ({type(e).__name__}); {hint}") from None


def _member_bytes(path: str, name: str, source_key: str) -> bytes:
    """Reads one archive member in a streaming pass that stops at it.

    Raises:
        UserError: The archive is gone or damaged before the member, or does not hold it.
    """
    hint = "pass --source <archive or dataset root>"
    try:
        data = read_members(path, {name}).get(name)
    except Exception as e:  # noqa: BLE001 (gone, damaged; object stores raise their own "not found")
        # A failed read (SourceReadError) or damage: either way this archive cannot give the member back.
        if not (isinstance(e, (SourceReadError, *ARCHIVE_ERRORS)) or unreadable(e)):
            raise
        raise UserError(f"cannot read archive {path} ({_why(e)}); {hint}") from None
    if data is None:
        raise UserError(f"{source_key} not found in archive {path}; {hint}")
    return data


def _why(error: BaseException) -> str:
    """``Type: message`` of what failed; for a failed read, of the storage's own error (its advice is the job's)."""
    if isinstance(error, SourceReadError) and error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"
