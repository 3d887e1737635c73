"""An in-memory object store for tests, with the semantics of Beam's GCS filesystem (``objstore://bucket/key``).

Object stores have no folders: ``exists`` is true only for an object, a "folder" is a prefix some objects share,
``delete`` removes a prefix only for a path ending in ``/`` (else the objects its glob matches), nothing can be
renamed but object by object, reading a missing object raises the client's own ``NotFound`` (no ``OSError``), and
``exists`` refuses a bucket root (``ValueError``), as Beam's GCS filesystem does. Importing this module registers
the scheme with Beam (plugin discovery by subclass); objects live in ``OBJECTS`` for the process (an in-process
runner's workers share them).

``FAILURES`` injects storage trouble: a read that reaches the byte range given for an object raises the error given
(a connection reset mid-download), on every attempt, while reads elsewhere in the object succeed.
"""

from __future__ import annotations

import fnmatch
import io
import time

from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem

SCHEME = "objstore"
OBJECTS: dict[str, tuple[bytes, float]] = {}  # path -> (bytes, time written)
FAILURES: dict[str, tuple[int, int, BaseException]] = {}  # path -> (start, end, error) of reads that fail


class NotFound(Exception):
    """What reading a missing object raises (as google.api_core's NotFound: not an OSError)."""


class _FailingDownload(io.BytesIO):
    """An object's bytes whose reads raise ``error`` when they reach ``[start, end)``."""

    def __init__(self, data: bytes, start: int, end: int, error: BaseException):
        super().__init__(data)
        self._start, self._end, self._error = start, end, error

    def read(self, size: int | None = -1) -> bytes:
        position = self.tell()
        stop = len(self.getbuffer()) if size is None or size < 0 else position + size
        if position < self._end and stop > self._start:
            raise self._error
        return super().read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Upload(io.BytesIO):
    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            OBJECTS[self._path] = (self.getvalue(), time.time())  # visible once the upload completes, as on GCS
        super().close()


class ObjectStoreFileSystem(FileSystem):
    """Beam ``FileSystem`` over ``OBJECTS`` (see the module docstring)."""

    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, (data, written) in sorted(OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), written)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._wrap(_Upload(path), path, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if path not in OBJECTS:
            raise NotFound(f"404 GET {path}: No such object")
        if path in FAILURES:
            return self._wrap(_FailingDownload(OBJECTS[path][0], *FAILURES[path]), path, compression_type)
        return self._wrap(io.BytesIO(OBJECTS[path][0]), path, compression_type)

    def _wrap(self, raw, path, compression_type):
        kind = self._get_compression_type(path, compression_type)
        return raw if kind == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type=kind)

    def copy(self, source_file_names, destination_file_names):
        missing = {s: BeamIOError(f"Not found: {s}") for s in source_file_names if s not in OBJECTS}
        if missing:
            raise BeamIOError("Copy operation failed", missing)
        for s, d in zip(source_file_names, destination_file_names, strict=True):
            OBJECTS[d] = OBJECTS[s]

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        for s in source_file_names:
            del OBJECTS[s]

    def exists(self, path):
        if "/" not in path[len(SCHEME) + 3 :].rstrip("/"):
            raise ValueError(f"path must be in the form {SCHEME}://<bucket>/<object>: {path}")  # as GCS's
        return path in OBJECTS

    def size(self, path):
        return len(OBJECTS[path][0])

    def last_updated(self, path):
        return OBJECTS[path][1]

    def checksum(self, path):
        return str(hash(OBJECTS[path][0]))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            if path.endswith("/"):
                doomed = [p for p in OBJECTS if p.startswith(path)]
            else:
                doomed = [p for p in OBJECTS if fnmatch.fnmatchcase(p, path)]
            for p in doomed:
                del OBJECTS[p]


def upload_folder(local, url: str) -> None:
    """Copies every file under the local folder ``local`` to objects under ``url``."""
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        OBJECTS[f"{url.rstrip('/')}/{f.relative_to(local).as_posix()}"] = (f.read_bytes(), time.time())


def download_folder(url: str, local) -> list[str]:
    """Copies the objects under ``url/`` to files under ``local``; returns their keys relative to ``url``."""
    prefix = url.rstrip("/") + "/"
    keys = sorted(p[len(prefix) :] for p in OBJECTS if p.startswith(prefix))
    for key in keys:
        target = local / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(OBJECTS[prefix + key][0])
    return keys
