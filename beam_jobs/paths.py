"""Small facts about paths on any Beam filesystem."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    """Says whether a path is on the local disk (where directories can be renamed and symlinked)."""
    return FileSystems.get_scheme(path) in (None, "file")


def file_size(path: str) -> int:
    """Returns the size in bytes of one file (no glob matching, so any character in the path is safe)."""
    return FileSystems.get_filesystem(path).size(path)
