"""Source files opened so that a failed read is never taken for a damaged file.

A decoder (pyarrow, tarfile) raises for damage: bad magic bytes, a corrupt footer or page, a failed decompression,
an archive cut short. That is a fact about the bytes, the same on every attempt, and becomes dead letters. A read
that fails (a reset connection, a timeout, a denied or vanished file) says nothing about the bytes and may succeed
on a retry: dead-lettering its records would publish a dataset missing them, unlike the one a retry gives. The
type of the error cannot tell the two apart (pyarrow 25 reports a corrupt page as a bare ``OSError``, as a reset
connection is one); where it was raised can.

``open_source`` wraps the file: whatever the file itself raises (opening, reading, seeking) becomes a
``SourceReadError``, which is no ``OSError`` and no decoder error, so handlers of damage let it pass (pyarrow and
tarfile re-raise a Python file's own exception unchanged); and the file remembers it, so that ``SourceFile.check``
re-raises it should a decoder ever report the failed read as damage of its own.
"""

from __future__ import annotations

import io

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import SourceReadError


def open_source(path: str) -> SourceFile:
    """Opens a source file on any Beam filesystem, as stored (no decompression by suffix).

    Raises:
        SourceReadError: The file cannot be opened (gone, denied, the store unreachable).
    """
    try:
        f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 (each filesystem raises its own errors: GCS's NotFound is no OSError)
        raise failed_read(path, e) from e
    return SourceFile(path, f)


def failed_read(path: str, error: BaseException) -> SourceReadError:
    """The ``SourceReadError`` for ``error``, raised reading ``path``."""
    return SourceReadError(
        f"cannot read {path} ({type(error).__name__}: {error}); a failed read is no damage, so nothing of it is "
        "dead-lettered: check the storage and access to it, and run again"
    )


class SourceFile:
    """An open source file whose failing calls raise ``SourceReadError`` and are remembered (module docstring)."""

    def __init__(self, path: str, file):
        self._path, self._file = path, file
        self.failure: SourceReadError | None = None

    def __getattr__(self, name: str):
        attr = getattr(self._file, name)
        if not callable(attr):
            return attr  # e.g. ``closed``: looked up afresh each time

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except io.UnsupportedOperation:
                raise  # a probe's answer (``fileno``, ``seek`` on a stream), which callers handle: no failed read
            except Exception as e:
                self.failure = failed_read(self._path, e)
                raise self.failure from e

        self.__dict__[name] = call  # the next call skips ``__getattr__`` (tarfile reads 10 KB at a time)
        return call

    def check(self) -> None:
        """Raises the ``SourceReadError`` of a call that failed, if one did: whatever a decoder made of it."""
        if self.failure is not None:
            raise self.failure

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()
