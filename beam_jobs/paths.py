"""Paths on any Beam filesystem: a local disk, or an object store (GCS, S3), which has no folders.

On an object store a "folder" is a prefix that object names share (sometimes with an empty marker object named
``folder/``): Beam's ``FileSystems.exists`` looks up one object, and its ``delete`` removes a prefix only for a path
ending in ``/``. These helpers give folders one meaning everywhere (``tests/test_object_store.py``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil

from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError

_GLOB = re.compile(r"([*?\[])")
# What gives Beam a filesystem for an object store's scheme (the gcp extra installs apache-beam[gcp]).
_EXTRAS = {"gs": "beam-expand[gcp]", "s3": "apache-beam[aws]", "azfs": "apache-beam[azure]",
           "hdfs": "apache-beam[hadoop]"}  # fmt: skip
# Beam registers its S3 filesystem even without its client library, which it then fails to create (a ValueError).
_CLIENTS = {"s3": "boto3"}


def is_local(path: str) -> bool:
    """Says whether a path is on the local disk (where directories can be renamed and symlinked)."""
    return FileSystems.get_scheme(path) in (None, "file")


def install_hint(scheme: str) -> str:
    """What to install for a Beam filesystem of ``scheme`` (``gs`` -> ``pip install 'beam-expand[gcp]'``)."""
    extra = _EXTRAS.get(scheme)
    return f"pip install '{extra}'" if extra else f"install the Apache Beam extra that reads {scheme}://"


def require_filesystem(path: str, flag: str) -> None:
    """Checks that this installation has a Beam filesystem for ``path`` (local paths always do).

    Without one, Beam raises a ValueError deep in the first call that touches the path, and the user saw its
    traceback; this says which flag named the path and what to install.

    Raises:
        UserError: No filesystem is registered for the path's scheme, or the client library it needs is missing.
    """
    scheme = FileSystems.get_scheme(path)
    try:
        FileSystems.get_filesystem(path)
        usable = scheme not in _CLIENTS or importlib.util.find_spec(_CLIENTS[scheme]) is not None
    except ValueError:
        usable = False
    if not usable:
        raise UserError(
            f"{flag} {path}: this installation cannot read or write {scheme}:// paths; {install_hint(scheme)}"
        )


def files_under(folder: str, limit: int | None = None, dangling_links: bool = False) -> list:
    """``FileMetadata`` of the files under ``folder`` (recursively; at most ``limit``), on any Beam filesystem.

    The folder's name is taken literally (``*?[`` in it are no pattern). Object stores' folder markers (empty
    objects named ``folder/``, made by the GCS console and TensorFlow's gfile) are no files and are left out.
    A local link whose target is gone is no file either, unless ``dangling_links`` (an input listing, where it
    must become a dead letter, not vanish): then it is listed with size 0 and time 0.
    """
    if is_local(folder):  # walked: Beam's local match would read a "[" in the name as a pattern
        found = []
        for parent, _, names in os.walk(folder):
            for name in sorted(names):
                path = os.path.join(parent, name)
                try:
                    info = os.stat(path)
                    size, mtime = info.st_size, info.st_mtime
                except OSError:  # vanished, or a dangling link
                    if not (dangling_links and os.path.islink(path)):
                        continue
                    size, mtime = 0, 0.0
                found.append(FileMetadata(path, size, mtime))
                if limit is not None and len(found) >= limit:
                    return found
        return found
    prefix = folder.rstrip("/") + "/"
    # Beam's patterns cannot quote a character: each of "*?[" matches as "?" (any one character), and the files of
    # other folders that this also matches are dropped by their prefix.
    wild = bool(_GLOB.search(prefix))
    asked = None if wild or limit is None else limit
    while True:
        limits = None if asked is None else [asked]
        listed = FileSystems.match([_GLOB.sub("?", prefix) + "**"], limits=limits)[0].metadata_list
        found = [m for m in listed if m.path.startswith(prefix) and not m.path.endswith("/")]
        if asked is None or len(found) >= limit or len(listed) < asked:
            return found[:limit]
        asked = len(listed) + limit - len(found)  # folder markers took places: ask for as many more


def match_under(base: str, pattern: str) -> list[FileMetadata]:
    """``FileMetadata`` of the files matching ``base + pattern``, sorted by path, on any Beam filesystem.

    ``base`` is taken literally (a ``*?[`` in a user's folder name is no pattern); ``pattern`` is a glob, e.g.
    ``match_under(dataset + "/", "*.parquet-*")`` for a dataset's Parquet shards.
    """
    if is_local(base):
        found = []
        for path in sorted(glob.glob(glob.escape(base) + pattern, recursive=True)):
            if os.path.isfile(path):
                found.append(FileMetadata(path, os.path.getsize(path), os.path.getmtime(path)))
        return found
    listed = FileSystems.match([_GLOB.sub("?", base) + pattern])[0].metadata_list
    # Each "*?[" of the base matched any one character: other names that it matched are dropped by their prefix.
    return sorted((m for m in listed if m.path.startswith(base) and not m.path.endswith("/")), key=lambda m: m.path)


def exists(path: str) -> bool:
    """Whether a file or folder exists, on any Beam filesystem.

    On object stores a folder is a prefix that some object's name starts with (a file or a folder marker): Beam's
    ``FileSystems.exists`` (one object of that name) says False for it.
    """
    if is_local(path):
        return os.path.exists(path)
    if is_object(path):
        return True
    prefix = path.rstrip("/") + "/"
    if _GLOB.search(prefix):
        return is_object(prefix) or bool(files_under(path, limit=1))
    return bool(FileSystems.match([prefix + "**"], limits=[1])[0].metadata_list)  # any object, markers too


def is_dir(path: str) -> bool:
    """Whether ``path`` is a folder: on object stores, a prefix (or a folder marker) that is no file itself."""
    if is_local(path):
        return os.path.isdir(path)
    return not is_object(path.rstrip("/")) and exists(path)


def is_bucket(path: str) -> bool:
    """Whether ``path`` is an object store's bucket itself (``gs://bucket``), which names no object."""
    scheme, _, rest = path.partition("://")
    return not is_local(path) and bool(scheme) and "/" not in rest.strip("/")


def is_object(path: str) -> bool:
    """Whether ``path`` is a file (an object), on any Beam filesystem; a folder or a bucket itself is none."""
    if is_local(path):
        return os.path.isfile(path)
    # GCS refuses to look a bucket root up as an object (ValueError).
    return not is_bucket(path) and FileSystems.exists(path)


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
