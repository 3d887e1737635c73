"""Small facts about paths on any Beam filesystem."""

from __future__ import annotations

import os
import re
import shutil

from apache_beam.io.filesystems import FileSystems

_GLOB = re.compile(r"([*?\[])")


def is_local(path: str) -> bool:
    """Says whether a path is on the local disk (where directories can be renamed and symlinked)."""
    return FileSystems.get_scheme(path) in (None, "file")


def files_under(folder: str, limit: int | None = None) -> list:
    """``FileMetadata`` of every file under ``folder`` (recursively), on any Beam filesystem.

    The folder's name is matched literally (``*?[`` in it are no pattern). Object stores' folder markers (empty
    objects named ``folder/``, made by the GCS console and TensorFlow's gfile) are no files and are left out.
    """
    prefix = folder.rstrip("/") + "/"
    # Beam's patterns cannot quote a character: each of "*?[" matches as "?" (any one character), and the files of
    # other folders that this also matches are dropped by their prefix.
    wild = bool(_GLOB.search(prefix))
    limits = None if limit is None or wild else [limit]
    metas = FileSystems.match([_GLOB.sub("?", prefix) + "**"], limits=limits)[0].metadata_list
    return [m for m in metas if m.path.startswith(prefix) and not m.path.endswith("/")][:limit]


def exists(path: str) -> bool:
    """Whether a file or folder exists, on any Beam filesystem.

    On object stores a folder is a prefix that some object's name starts with (or a folder marker): Beam's
    ``FileSystems.exists`` (one object of that name) says False for it.
    """
    if FileSystems.exists(path):
        return True
    if is_local(path):
        return False
    return FileSystems.exists(path.rstrip("/") + "/") or bool(files_under(path, limit=1))


def is_dir(path: str) -> bool:
    """Whether ``path`` is a folder: on object stores, a prefix (or a folder marker) that is no file itself."""
    if is_local(path):
        return os.path.isdir(path)
    return not FileSystems.exists(path.rstrip("/")) and exists(path)


def delete_tree(path: str) -> None:
    """Deletes a folder and everything under it (or a file), on any Beam filesystem; nothing if it does not exist.

    Object stores have no folders: Beam's GCS and S3 filesystems delete a prefix only when the path ends with
    ``/`` (without it, they look for one object of that name and delete nothing).
    """
    if is_local(path):
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        return
    FileSystems.delete([path.rstrip("/") + "/"])


def file_size(path: str) -> int:
    """Returns the size in bytes of one file (no glob matching, so any character in the path is safe)."""
    return FileSystems.get_filesystem(path).size(path)
