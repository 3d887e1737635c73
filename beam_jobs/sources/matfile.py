"""A reader for the numeric arrays of MATLAB v5 ``.mat`` files (Oxford Flowers' ``imagelabels.mat``, ``setid.mat``).

Only what those files use: top-level real numeric matrices, optionally zlib-compressed. No SciPy at run time.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15


def _element(buf: bytes, pos: int, endian: str) -> tuple[int, bytes, int]:
    (tag,) = struct.unpack_from(endian + "I", buf, pos)
    if tag >> 16:  # small data element: size in the upper 16 bits, data in the next 4 bytes
        kind, size = tag & 0xFFFF, tag >> 16
        return kind, buf[pos + 4 : pos + 4 + size], pos + 8
    kind, size = struct.unpack_from(endian + "II", buf, pos)
    data = buf[pos + 8 : pos + 8 + size]
    return kind, data, pos + 8 + size + (-size % 8 if kind != _MI_COMPRESSED else 0)


def _matrix(data: bytes, endian: str) -> tuple[str, np.ndarray] | None:
    pos = 0
    _, flags, pos = _element(data, pos, endian)
    _, dims_raw, pos = _element(data, pos, endian)
    _, name, pos = _element(data, pos, endian)
    kind, real, pos = _element(data, pos, endian)
    if kind not in _NUMERIC:
        return None
    dims = struct.unpack(endian + f"{len(dims_raw) // 4}i", dims_raw)
    values = np.frombuffer(real, dtype=np.dtype(_NUMERIC[kind]).newbyteorder(endian))
    return name.decode("ascii"), values.reshape(dims, order="F")


def load_mat(raw: bytes) -> dict[str, np.ndarray]:
    """Returns the numeric matrices of a MATLAB v5 file, by variable name.

    Raises:
        ValueError: Not a MATLAB v5 file.
    """
    if len(raw) < 128 or raw[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB v5 .mat file")
    endian = "<" if raw[126:128] == b"IM" else ">"
    out, pos = {}, 128
    while pos + 8 <= len(raw):
        kind, data, pos = _element(raw, pos, endian)
        if kind == _MI_COMPRESSED:
            kind, data, _ = _element(zlib.decompress(data), 0, endian)
        if kind == _MI_MATRIX and (found := _matrix(data, endian)) is not None:
            out[found[0]] = found[1]
    return out
