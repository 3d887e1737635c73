"""The element that flows from a source into the expansion step."""

from __future__ import annotations

from typing import NamedTuple


class SourceImage(NamedTuple):
    """One labelled input image, before decoding.

    Attributes:
        key: Stable id (POSIX path relative to the dataset root, archive member key, ...); never absolute.
        label: Class index into the job's sorted class names.
        label_name: Class name.
        path: Where to read the bytes (any Beam filesystem path), when ``data`` is None.
        data: The encoded bytes, for sources that already hold them (archive members).
        error: Why the source cannot be read (e.g. an oversized or truncated archive member), as a reason code;
            the expansion step dead-letters it.
    """

    key: str
    label: int
    label_name: str
    path: str | None = None
    data: bytes | None = None
    error: str | None = None
