"""The manifest's per-input rows, held compactly, and the manifest written and read as a stream.

``beam_expand.json`` lists every input (key, label, size, modification time, sha256): one row each, millions in a
large run. The rows travel from the launcher to the finalize step inside its arguments packed (``PackedRows``), are
written one at a time, and are read back one at a time (``read_rows``) or skipped (``read_json(rows=False)``), so
they no longer make the job's memory grow with its input.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.packed_rows import PackedRows

MANIFEST = "beam_expand.json"  # the manifest's file name in a dataset directory


class InputRows:
    """The manifest's ``listing.images``: ``{key, label, bytes, mtime}`` per selected input, in listing order.

    Args:
        rows: ``(key, label, size, mtime)`` tuples, or rows already packed.
        sha256: Key -> content digest; when given, each row also gets its ``sha256`` (None for inputs never read).
    """

    FIELDS = ("key", "label", "bytes", "mtime")

    def __init__(
        self,
        rows: Iterable[tuple] | PackedRows,
        sha256: Mapping[str, str] | None = None,
        pixel_sums: Mapping[str, list[int]] | None = None,
    ):
        self._rows = rows if isinstance(rows, PackedRows) else PackedRows(rows)
        self._sha256 = sha256
        self._pixel_sums = pixel_sums or {}

    def with_sha256(self, sha256: Mapping[str, str], pixel_sums: Mapping[str, list[int]] | None = None) -> InputRows:
        """The same rows, each with its ``sha256`` (None for inputs never read), and its ``pixel_sums`` if given.

        Refresh runs keep each source's pixel sums (``transforms.expand.sums_list``): an incremental run adds them to
        its statistics instead of decoding the unchanged sources again.
        """
        return InputRows(self._rows, sha256, pixel_sums)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for values in self._rows:
            row = dict(zip(self.FIELDS, values, strict=True))
            if self._sha256 is not None:
                row["sha256"] = self._sha256.get(row["key"])
            if row["key"] in self._pixel_sums:
                row["pixel_sums"] = self._pixel_sums[row["key"]]
            yield row


_ROWS = "\x00input rows\x00"  # stands for an InputRows while the rest of the manifest is encoded
# Characters written at a time: the pieces, their joined text and its bytes are all held until then.
_WRITE_CHUNK = 1 << 18


def write_json(path: str, value: dict[str, Any]) -> None:
    """Writes ``value`` as indented, key-sorted JSON, in ~256 KB pieces; ``InputRows`` are written row by row.

    ``value["listing"]["images"]`` may be an ``InputRows``: its rows are written one per line, never all held.
    (``json.dumps(..., indent=2)`` also first lists every small piece of text: tens of MB for a large manifest.)
    """
    rows = value.get("listing", {}).get("images")
    if isinstance(rows, InputRows):
        value = {**value, "listing": {**value["listing"], "images": _ROWS}}
    marker = json.dumps(_ROWS)
    pending: list[str] = []
    size = 0
    with FileSystems.create(path) as f:

        def put(text: str) -> None:
            nonlocal pending, size
            pending.append(text)
            size += len(text)
            if size >= _WRITE_CHUNK:
                f.write("".join(pending).encode("utf-8"))
                pending, size = [], 0

        for chunk in json.JSONEncoder(indent=2, sort_keys=True).iterencode(value):
            if chunk != marker:
                put(chunk)
                continue
            put("[")
            for i, row in enumerate(rows):
                put(("\n" if i == 0 else ",\n") + json.dumps(row, sort_keys=True))
            put("\n]")
        put("\n")
        f.write("".join(pending).encode("utf-8"))


def _lines(path: str) -> Iterator[tuple[bool, str]]:
    """Yields ``(is_row, line)`` for a manifest's lines; rows are ``write_json``'s input rows.

    ``write_json`` opens the rows with a line ending in ``"images": [`` and puts each row, then the closing bracket,
    at column 0, where indented JSON has nothing else but the outer braces. A manifest written otherwise (indented
    or on one line) has no row lines.
    """
    in_rows = False
    with FileSystems.open(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            if in_rows and line.startswith('{"'):
                yield True, line
                continue
            if in_rows and line.startswith("]"):
                in_rows = False
            elif line.rstrip().endswith('"images": ['):
                in_rows = True
            yield False, line


def read_json(path: str, rows: bool = True) -> dict[str, Any]:
    """Reads a manifest; with ``rows=False``, without ``listing.images`` (one row per input), streamed past them.

    The rows of a manifest ``write_json`` wrote are skipped as lines, never parsed or held (at a million inputs they
    cost hundreds of MB as Python objects; printing a run's summary needs none of them). Other manifests are
    parsed whole, then the rows are left out.
    """
    if rows:
        with FileSystems.open(path) as raw:
            return json.load(raw)
    kept: list[str] = []
    skipped = False
    for is_row, line in _lines(path):
        if is_row:
            skipped = True
        elif skipped and line.startswith("]"):  # the rows' closing bracket; their opening one ends the line kept last
            kept[-1] = kept[-1].rstrip()[:-1] + "null"
            kept.append(line[1:])
            skipped = False
        else:
            kept.append(line)
    manifest = json.loads("".join(kept))
    manifest.get("listing", {}).pop("images", None)
    return manifest


def read_rows(path: str) -> Iterator[dict[str, Any]]:
    """Yields a manifest's ``listing.images`` rows one at a time; those ``write_json`` wrote are never all held.

    A manifest written otherwise is loaded whole instead.
    """
    found = False
    for is_row, line in _lines(path):
        if is_row:
            found = True
            yield json.loads(line.rstrip().removesuffix(","))
    if not found:
        yield from read_json(path).get("listing", {}).get("images", [])
