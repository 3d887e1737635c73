"""Small facts about paths on any Beam filesystem."""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    """Says whether a path is on the local disk (where directories can be renamed and symlinked)."""
    return FileSystems.get_scheme(path) in (None, "file")


def exists(path: str) -> bool:
    """Whether a file or folder exists, on any Beam filesystem.

    On object stores a folder is a prefix that some object's name starts with: Beam's ``FileSystems.exists``
    (one object of that name) says False for it.
    """
    if FileSystems.exists(path):
        return True
    if is_local(path):
        return False
    return bool(FileSystems.match([path.rstrip("/") + "/**"], limits=[1])[0].metadata_list)


def is_dir(path: str) -> bool:
    """Whether ``path`` is a folder: on object stores, a prefix some object starts with that is no object itself."""
    if is_local(path):
        return os.path.isdir(path)
    return not FileSystems.exists(path) and exists(path)


def delete_tree(path: str) -> None:
    """Deletes a folder and everything under it, on any Beam filesystem; nothing if it does not exist.

    Object stores have no folders: Beam's GCS and S3 filesystems delete a prefix only when the path ends with
    ``/`` (without it, they look for one object of that name and delete nothing).
    """
    if is_local(path):
        if os.path.lexists(path):
            FileSystems.delete([path])
        return
    FileSystems.delete([path.rstrip("/") + "/"])


def file_size(path: str) -> int:
    """Returns the size in bytes of one file (no glob matching, so any character in the path is safe)."""
    return FileSystems.get_filesystem(path).size(path)
