"""Small facts about paths on any Beam filesystem."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    """Says whether a path is on the local disk (where directories can be renamed and symlinked)."""
    return FileSystems.get_scheme(path) in (None, "file")
