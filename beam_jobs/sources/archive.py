"""Tar archives (``.tar``, ``.tgz``, ``.tar.gz``, ...) read by streaming, member by member; never extracted.

Member paths are never trusted: absolute names, ``..`` components, links, devices and other non-regular members
are ignored and reported, so nothing is ever written anywhere because of an archive. When every member sits
under one top-level folder (``flower_photos/...``), that folder is the dataset root and keys are relative to it;
junk beside it (``__MACOSX/``, a README) is ignored and listed.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterator

import apache_beam as beam

from beam_jobs.errors import UserError
from beam_jobs.sources.listing import Listing, build_listing, classify_key, is_text
from beam_jobs.sources.reads import open_source
from beam_jobs.staged import Staged, unstaged
from schemas.source import SourceImage

ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAX_MEMBER_BYTES = 256 * 1024 * 1024
LICENSE_NAMES = ("LICENSE.txt", "LICENSE", "LICENSE.md")


def is_archive(path: str) -> bool:
    """Says whether a path names a tar archive by its suffix."""
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def safe_name(name: str) -> str | None:
    """Returns the normalized POSIX member name, or None if it is absolute, escapes the archive or is not UTF-8."""
    if not is_text(name):  # tarfile keeps undecodable bytes as surrogates; keys must be real text
        return None
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class ArchiveDamaged(tarfile.ReadError):
    """Damage that tarfile passes over in silence: it ends the iteration early, as if the archive ended there."""


# Damage: what tarfile and the decompressors raise for an archive that is cut short or corrupt. A failed read of
# the archive itself is a SourceReadError (``sources.reads``), none of these: it propagates, never "damage".
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


class _NotedHeader(tarfile.TarInfo):
    """A ``TarInfo`` that notes on its ``TarFile`` why the last header could not be read (``_check_end`` asks).

    After the first member, tarfile ends the iteration without an error at any header it cannot read: the zero
    block of the end-of-archive marker, but just as well a corrupt header or the end of the data (an archive cut
    short between members), and all that follows is lost unseen. Only the error it swallows tells them apart.
    """

    @classmethod
    def fromtarfile(cls, tar):
        """Reads the next header, as ``TarInfo`` does, noting the error when there is none to read."""
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as e:
            tar.header_error = e
            raise


def _check_end(tar: tarfile.TarFile) -> None:
    """Checks that an iteration that ended stopped at the end-of-archive marker.

    The archive is whole once a zero block is read where a header would be, as for GNU tar and tarfile: nothing
    after it is read. Writers put more there that is no damage: pixz its file index, xz and bzip2 streams padding
    or other data after them (a decompressor fed that raises), tapes and downloads zeros; GNU tar ignores it all.

    Raises:
        ArchiveDamaged: A corrupt member header, or an archive cut short between members (no marker). Byte
            offsets count in the tar (decompressed, for a ``.tgz``).
    """
    stop, at = getattr(tar, "header_error", None), tar.offset
    if isinstance(stop, tarfile.EOFHeaderError):  # the marker's (first) zero block: a lone one is a marker too
        return
    if isinstance(stop, (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)):
        raise ArchiveDamaged(f"cut short at byte {at}, without its end-of-archive marker")
    raise ArchiveDamaged(f"corrupt member header at byte {at}")  # a block that is no header and not zeros either


def damage_note(members: int, error: BaseException) -> str:
    """The listing's problem note for an archive that breaks off after ``members`` members (summary, manifest)."""
    return f"archive damaged after {members} members ({type(error).__name__}: {error}); the rest is lost"


def iter_members(
    path: str, with_data: bool | Callable[[str], bool]
) -> Iterator[tuple[str | None, tarfile.TarInfo, bytes | None]]:
    """Streams an archive, yielding ``(safe name or None, member, data or None)`` for every non-directory member.

    Data is read only for regular files of at most ``MAX_MEMBER_BYTES``, and only when ``with_data`` is True or,
    given a predicate, true for the member's safe name; only one member is ever held in memory, so a gzip bomb
    costs time, not memory.

    Raises:
        tarfile.TarError, OSError, EOFError, zlib.error: The archive is truncated or corrupt at this point.
        ArchiveDamaged: (a ``TarError``) Damage that tarfile ends the iteration at in silence; found after the
            last member, so only by a caller that reads on to the end.
        SourceReadError: A read of the archive failed: no verdict on the members (a retry may read them).
    """
    with open_source(path) as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|*", tarinfo=_NotedHeader) as tar:
                for member in tar:
                    if member.isdir():
                        continue  # structure only; files carry their full paths
                    name = safe_name(member.name) if member.isreg() else None
                    data = None
                    wanted = with_data(name) if callable(with_data) and name is not None else with_data
                    if wanted and name is not None and member.size <= MAX_MEMBER_BYTES:
                        f = tar.extractfile(member)
                        data = f.read() if f is not None else None
                    yield name, member, data
                _check_end(tar)
        except ARCHIVE_ERRORS:
            raw.check()  # a failed read is no damage, whatever tarfile made of it
            raise


def list_archive(path: str) -> tuple[Listing, str, bytes | None]:
    """Lists an archive's images in one streaming pass.

    Unsafe names (absolute, ``..``, links, devices, non-UTF-8) are ignored and reported; a repeated member name
    keeps its first occurrence; members over ``MAX_MEMBER_BYTES`` stay listed and are dead-lettered as
    ``too_large``; a truncated or corrupt archive keeps the members before the damage and says where it stopped.

    Returns:
        The listing (image keys relative to the root folder), the root prefix (e.g. ``flower_photos/``) and the
        bytes of a ``LICENSE.txt`` found at the root, if any.

    Raises:
        UserError: The archive cannot be read at all or holds no class folders with images.
        SourceReadError: A read failed (no listing is made of the part read before it).
    """
    names, unsafe, duplicates, problems = [], [], [], []
    sizes: dict[str, int] = {}
    mtimes: dict[str, float] = {}
    licenses: dict[str, bytes] = {}  # read in the same pass: the root folder is known only at the end

    def is_license(name: str) -> bool:
        return name.count("/") <= 1 and posixpath.basename(name) in LICENSE_NAMES

    try:
        for name, member, data in iter_members(path, with_data=is_license):
            if data is not None:
                licenses[name] = data
            if name is None:
                unsafe.append(member.name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))
            elif name in sizes:
                duplicates.append(name)
            else:
                names.append(name)
                sizes[name] = member.size
                mtimes[name] = float(member.mtime)
    except ARCHIVE_ERRORS as e:
        if not names:
            raise UserError(
                f"cannot read archive {path}: {e}; pass a valid .tar/.tgz or a folder as --source"
            ) from None
        problems.append(damage_note(len(names), e))
    prefix = _root_prefix(names)
    entries = [(n[len(prefix) :], None, sizes[n], mtimes[n]) for n in names if n.startswith(prefix)]
    listing = build_listing(entries)
    listing.ignored.extend(sorted(n for n in names if not n.startswith(prefix)))  # beside the root folder: junk
    listing.ignored.extend(sorted(unsafe))
    listing.ignored.extend(f"{d} (duplicate member name)" for d in duplicates)
    listing.problems.extend(problems)
    if not listing.images:
        raise UserError(f"archive {path} holds no images in class folders (<class>/<image>.jpg)")
    license_bytes = next((licenses[prefix + n] for n in LICENSE_NAMES if prefix + n in licenses), None)
    return listing, prefix, license_bytes


def _root_prefix(names: list[str]) -> str:
    """The root folder (``flower_photos/``) when every member that would be used sits under one; else ``""``.

    Members that are ignored anyway (``__MACOSX/``, ``.DS_Store``, a README beside the folder) do not count: they
    would otherwise make the root folder the only class. A folder is a root only with class folders beneath it
    (``root/class/file``): an archive of one class folder (``cats/*.jpg``) is that class.
    """
    used = [n for n in names if classify_key(n) != "ignored"]  # such keys always hold a "/"
    tops = {n.split("/")[0] for n in used}
    return f"{tops.pop()}/" if len(tops) == 1 and any(n.count("/") >= 2 for n in used) else ""


def read_members(path: str, names: set[str]) -> dict[str, bytes]:
    """Returns the bytes of the named members (safe names), in one streaming pass that stops once all are found.

    Raises:
        UserError: The archive breaks off before all are found (what lies after the damage cannot be read).
    """
    found: dict[str, bytes] = {}
    try:
        for name, _, data in iter_members(path, with_data=lambda n: n in names):
            if data is not None:
                found[name] = data
                if len(found) == len(names):
                    break
    except ARCHIVE_ERRORS as e:
        raise UserError(
            f"archive {path} is damaged ({type(e).__name__}: {e}) before {len(names) - len(found)} of the members "
            "asked for could be found; pass an intact copy of the archive"
        ) from None
    return found


class ReadArchiveFn(beam.DoFn):
    """Streams one archive and emits a ``SourceImage`` (with its bytes) for every selected member.

    Args:
        prefix: Root folder inside the archive (``flower_photos/``), stripped from keys.
        selected: Key -> (label, label_name[, error]) of the members to emit (or that dict ``Staged``).
    """

    def __init__(self, prefix: str, selected: dict[str, tuple[int, str]] | Staged):
        self._prefix = prefix
        self._selected = selected

    def setup(self):
        """Reads the selection back if it was staged (``beam_jobs.staged``)."""
        self._selected = unstaged(self._selected)

    def process(self, path: str):
        """Yields ``SourceImage``s in archive order; the pipeline reshuffles them before decoding.

        Every selected key is emitted exactly once: with its bytes, or with an ``error`` (``too_large``, or
        ``archive_damaged`` for members at or after the point where the archive breaks off). A failed read raises
        ``SourceReadError`` instead: the runner retries the bundle.
        """
        emitted: set[str] = set()
        selected = {self._prefix + key for key in self._selected}
        try:
            for name, member, data in iter_members(path, with_data=lambda n: n in selected):
                if name is None or not name.startswith(self._prefix):
                    continue
                key = name[len(self._prefix) :]
                if key not in self._selected or key in emitted:
                    continue
                emitted.add(key)
                label, label_name, *known = self._selected[key]
                error = (known[0] if known else None) or ("too_large" if member.size > MAX_MEMBER_BYTES else None)
                yield SourceImage(key=key, label=label, label_name=label_name, data=data or b"", error=error)
        except ARCHIVE_ERRORS:
            pass
        for key in sorted(set(self._selected) - emitted):
            label, label_name, *_ = self._selected[key]
            yield SourceImage(key=key, label=label, label_name=label_name, error="archive_damaged")
