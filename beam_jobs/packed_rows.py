"""Many small rows held as one compressed block: what the launcher hands to the pipeline, per input image.

A list of 1,000,000 tuples costs ~400 MB as Python objects, held by the launcher and by every worker that reads
it back (``beam_jobs.staged``). As zlib'd JSON lines they cost ~15-30 bytes per row, and are unpacked one row at a
time where they are used.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator


class PackedRows:
    """Rows of JSON values (tuples of str, int, float, None), packed; iterating yields them as lists, in order.

    Args:
        rows: The rows.
    """

    def __init__(self, rows: Iterable[tuple | list]):
        # Compressed as the rows come: the JSON text of millions of rows is never held whole.
        compressor = zlib.compressobj(1)
        parts, self._count = [], 0
        for row in rows:
            line = ("\n" if self._count else "") + json.dumps(list(row), separators=(",", ":"))
            self._count += 1
            if chunk := compressor.compress(line.encode("utf-8")):
                parts.append(chunk)
        parts.append(compressor.flush())
        self._blob = b"".join(parts)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[list]:
        # Decompressed piece by piece too: a row is made only when it is asked for.
        decompressor = zlib.decompressobj()
        tail = b""
        for start in range(0, len(self._blob), _PIECE):
            *lines, tail = (tail + decompressor.decompress(self._blob[start : start + _PIECE])).split(b"\n")
            yield from map(json.loads, lines)
        tail += decompressor.flush()
        if tail:
            yield json.loads(tail)


_PIECE = 1 << 14  # compressed bytes decompressed at a time (~50 KB of text)
