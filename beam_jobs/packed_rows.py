"""Many small rows held as one compressed block: what the launcher hands to the pipeline, per input image.

A list of 1,000,000 tuples costs ~400 MB as Python objects, and Beam pickles a transform's arguments into the
pipeline and unpickles them on every worker (twice for a DoFn). As zlib'd JSON lines they cost ~15-30 bytes per
row, and are unpacked one row at a time where they are used.
"""

from __future__ import annotations

import io
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
        if not self._count:
            return
        for line in io.BytesIO(zlib.decompress(self._blob)):
            yield json.loads(line)
