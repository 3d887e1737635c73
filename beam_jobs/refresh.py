"""Refresh mode for scheduled jobs: versioned outputs and a ``LATEST`` pointer swapped atomically.

Layout of ``--output ROOT`` with ``--refresh``::

    ROOT/versions/<UTC time>-<fingerprint>/   one complete dataset per published run (staged and verified)
    ROOT/LATEST                               the name of the current version (a one-line text file)
    ROOT/current -> versions/<...>            a symlink to it, on local disks (point readers here)

* A rerun whose inputs (keys, sizes, modification times) and config (policy, seed, K, formats, class names,
  library versions and the versions of the code's steps) are unchanged publishes nothing new, unless the current
  version is incomplete (``stale_reason``: a shard missing or of another size, dead letters unreadable, or sources
  without records).
* ``--incremental`` expands only new or changed sources (content hashes in the manifest) and copies the records of
  unchanged ones from the current version; with the same config they would be byte-identical anyway. Its Parquet
  shards are first read through against their sha256 (``altered_shards``): a damaged version is not copied from.
* The pointer is swapped with compare-and-swap: locally under an exclusive lock file, then ``os.replace``; on
  ``gs://`` with a generation precondition. Of two refreshes racing, only the first to swap publishes; the other
  fails and removes its version.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import JobFailed, UserError
from beam_jobs.paths import delete_tree, file_size, install_hint, is_local, match_under, require_filesystem
from beam_jobs.ptransforms import REUSE_MISSING
from beam_jobs.sinks.finalize import DEAD_LETTERS
from beam_jobs.sinks.manifest import MANIFEST, read_json, read_rows
from beam_jobs.sinks.publish import VerificationError, clean_stale_in, is_run_folder, verify_shard
from transforms.expand import unreadable

LATEST = "LATEST"
CURRENT = "current"
VERSIONS = "versions"
_NOT_FINGERPRINTED = {"output", "overwrite", "progress", "dry_run", "cache_dir", "refresh", "incremental",
                      "keep_versions", "max_shard_mb", "max_bad_fraction"}  # fmt: skip
_READERS = 4  # shards read through at a time (object stores serve several reads in parallel)


class DamagedVersion(Exception):
    """A file of the current version is unreadable or not what its manifest recorded; the message says which."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_fingerprint(
    config: dict[str, Any], class_names: list[str], packages: dict[str, str], code: dict[str, Any]
) -> str:
    """Fingerprint of everything besides the inputs that determines the records' bytes.

    ``code`` holds the versions of this code's own steps (ops, decode, encode, ...): beam-expand's package version
    does not change with them, and records made before an op changed its pixels must not be reused after.
    """
    kept = {k: v for k, v in config.items() if k not in _NOT_FINGERPRINTED}
    return _digest({"config": kept, "classes": class_names, "packages": packages, "code": code})


def inputs_fingerprint(rows: Iterable[Sequence]) -> str:
    """Fingerprint of the selected inputs from ``(key, label, size, mtime)`` rows.

    Hashed as it is streamed: the same digest as ``_digest`` of the list of rows (the JSON text of a list of lists
    is its rows' texts joined by ", " in brackets), without building that text for millions of inputs.
    """
    digest = hashlib.sha256(b"[")
    for i, row in enumerate(rows):
        digest.update(((", " if i else "") + json.dumps(list(row), sort_keys=True, default=str)).encode())
    digest.update(b"]")
    return digest.hexdigest()


def version_dir(root: str, version: str) -> str:
    """Returns the directory of one version."""
    return FileSystems.join(root.rstrip("/"), VERSIONS, version)


def new_version(fingerprint: str) -> str:
    """Names a new version: UTC time to the microsecond (names sort by age) plus the start of the fingerprint."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z-" + fingerprint[:8]


def _gcs_blob(path: str):
    try:
        from google.cloud import storage
    except ImportError:
        raise UserError(f"--refresh on gs:// needs the gcp extra: {install_hint('gs')}") from None
    bucket, _, name = path[len("gs://") :].partition("/")
    return storage.Client().bucket(bucket).blob(name)


def read_latest(root: str) -> tuple[str | None, Any]:
    """Returns the current version name (or None) and a token for compare-and-swap.

    Raises:
        UserError: The root is on a store without an atomic pointer swap, or this installation has no filesystem
            for it (Beam's own error was a traceback from the first path joined).
    """
    scheme = FileSystems.get_scheme(root)  # from the text alone: no filesystem needed
    if not (is_local(root) or scheme == "gs"):
        raise UserError(f"--refresh supports local paths and gs:// (not {scheme}://): it needs an atomic pointer swap")
    require_filesystem(root, "--output")
    path = FileSystems.join(root.rstrip("/"), LATEST)
    if path.startswith("gs://"):
        blob = _gcs_blob(path)
        if not blob.exists():
            return None, 0
        blob.reload()
        return blob.download_as_text().strip(), blob.generation
    try:
        with open(path, encoding="utf-8") as f:
            version = f.read().strip()
    except FileNotFoundError:
        return None, None
    return version, version


def manifest_path(root: str, version: str) -> str:
    """Returns the path of a version's manifest."""
    return FileSystems.join(version_dir(root, version), MANIFEST)


def read_manifest(root: str, version: str) -> dict[str, Any] | None:
    """Returns a version's manifest without its per-input rows (``read_rows`` streams those), or None if missing.

    Raises:
        DamagedVersion: The manifest is no JSON (cut short, garbled): nothing of the version can be trusted.
    """
    path = manifest_path(root, version)
    if not FileSystems.exists(path):
        return None
    try:
        return read_json(path, rows=False)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedVersion(f"{MANIFEST} is unreadable ({type(e).__name__}: {e})") from None


def _size_matches(path: str, fmt: str, shard: dict[str, Any]) -> bool:
    if fmt == "imagefolder":  # a split's folder: its listing (names and sizes), as `verify` checks it
        try:
            verify_shard(path, fmt, expected=shard.get("records"), sha256=shard.get("sha256"))
        except VerificationError:
            return False
        return True
    try:
        return file_size(path) == shard["bytes"]
    except Exception as e:  # noqa: BLE001 (each filesystem raises its own "not found")
        if not unreadable(e):
            raise  # throttling, credentials: no verdict on the shard (it would re-expand everything)
        return False


def damaged_shards(
    root: str, version: str, manifest: dict[str, Any], formats: Iterable[str] = ("parquet",)
) -> list[str]:
    """Returns a version's shards (of ``formats``) that are missing or no longer have the size the manifest recorded.

    An incremental run copies unchanged sources' records from the Parquet shards: a shard deleted or cut short
    since would leave those sources without records. One size lookup per shard (one listing per imagefolder split):
    cheap enough for every scheduled run, even one with nothing to do. ``altered_shards`` reads them through.
    """
    damaged = []
    for fmt in formats:
        for shard in manifest.get("shards", {}).get(fmt, []):
            if not _size_matches(FileSystems.join(version_dir(root, version), shard["file"]), fmt, shard):
                damaged.append(shard["file"])
    return damaged


def _damage(error: BaseException) -> bool:
    """Whether a failed read says the file is damaged (not found, unreadable, not Parquet), not passing trouble."""
    import pyarrow as pa

    return isinstance(error, VerificationError | pa.ArrowException) or unreadable(error)


def _reads_back(path: str, shard: dict[str, Any]) -> bool:
    try:
        verify_shard(path, "parquet", expected=shard.get("records"), sha256=shard.get("sha256"))
    except VerificationError as e:
        # verify_shard words every failure alike; the error it caught tells a damaged file from passing trouble.
        caught = e.__context__
        if caught is not None and not _damage(caught):
            raise caught from None  # throttling, credentials: no verdict on the shard (it would re-expand everything)
        return False
    return True


def altered_shards(root: str, version: str, manifest: dict[str, Any]) -> list[str]:
    """Returns a version's Parquet shards that do not read back as its manifest recorded (footer, count, sha256).

    An incremental run copies records from them, and its new version's own checksums would be taken over whatever
    bytes it copied: a shard altered in place (same size) would pass into every later version, and `verify`. Each
    shard is streamed once (memory: one chunk), a few at a time: about what `beam-expand verify` costs for them,
    once per incremental run that publishes (a run with nothing to do reads none).
    """
    shards = manifest.get("shards", {}).get("parquet", [])
    paths = [FileSystems.join(version_dir(root, version), shard["file"]) for shard in shards]
    with ThreadPoolExecutor(max(1, min(_READERS, len(shards)))) as pool:
        intact = list(pool.map(_reads_back, paths, shards))
    return [shard["file"] for shard, ok in zip(shards, intact, strict=True) if not ok]


def reusable(
    rows: Iterable[dict[str, Any]],
    failed: set[str],
    planned_k: dict[str, int],
    earlier_k: dict[str, int],
) -> dict[str, tuple[str, int, list[int] | None]]:
    """Key -> (sha256, label, pixel sums) of the previous version's sources an incremental run may copy records from.

    Args:
        rows: The previous manifest's input rows.
        failed: Keys the previous version dead-lettered (no records to copy).
        planned_k: K per source of the current balancing plan (empty without one).
        earlier_k: K per source of the previous version's plan.

    A balancing plan gives each source its K from its class's size: a source is reused only with the K it had (a
    class that grew or shrank re-plans its sources). A key in two rows (versions before list files dead-lettered a
    path listed again) is expanded afresh: its previous records cannot be told apart per listing.
    """
    reuse: dict[str, tuple[str, int, list[int] | None]] = {}
    seen: set[str] = set()
    for row in rows:
        key = row["key"]
        if key in seen:
            reuse.pop(key, None)
            continue
        seen.add(key)
        same_k = planned_k.get(key) == earlier_k.get(key)
        if row.get("sha256") and same_k and key not in failed:
            reuse[key] = (row["sha256"], row["label"], row.get("pixel_sums"))
    return reuse


def read_dead_letters(root: str, version: str, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yields a version's dead letters one at a time (none when its file is missing), in the file's order.

    Streamed: a version may hold millions of them, and each reader needs only a pass (the keys not to reuse, the
    ``reuse_missing`` count, a refusal's reasons). An unchanged dead-lettered input has no records to reuse: it is
    read and dead-lettered again, so the new version's counts add up.

    Raises:
        DamagedVersion: A line is no dead letter (cut short, garbled), or, once the file is read to its end, it
            lists another number of inputs than the manifest counts (lines lost whole): the inputs without records
            are then unknown. Raised while streaming: the dead letters yielded before it are no whole list.
    """
    path = FileSystems.join(version_dir(root, version), DEAD_LETTERS)
    listed = 0
    if FileSystems.exists(path):
        with FileSystems.open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError as e:  # JSONDecodeError, UnicodeDecodeError: cut short, garbled
                    raise DamagedVersion(f"{DEAD_LETTERS} is unreadable ({type(e).__name__}: {e})") from None
                if not (isinstance(entry, dict) and "source_key" in entry and "reason" in entry):
                    raise DamagedVersion(f"{DEAD_LETTERS} is unreadable (a line is no dead letter: {line[:80]!r})")
                listed += 1
                yield entry
    counted = manifest.get("counts", {}).get("dead_letters")
    if counted is not None and counted != listed:
        raise DamagedVersion(f"{DEAD_LETTERS} lists {listed} inputs, where its manifest counts {counted}")


def stale_reason(root: str, version: str, manifest: dict[str, Any]) -> str | None:
    """Why a version made from the same inputs and config is no reason to publish nothing; None when there is none.

    A refresh with nothing new to do heals the current version instead when one of its shards is missing or of
    another size, its dead letters are unreadable, or sources it lists have no records (``reuse_missing``, which
    only the next run expands afresh). Cheap checks only (``damaged_shards``, one pass over the dead letters):
    `beam-expand verify` reads the shards through.
    """
    damaged = damaged_shards(root, version, manifest, list(manifest.get("shards", {})))
    if damaged:
        return f"{len(damaged)} missing or altered shard(s) ({_some(damaged)})"
    try:
        missing = sum(d["reason"] == REUSE_MISSING for d in read_dead_letters(root, version, manifest))
    except DamagedVersion as e:
        return f"its {e}"
    if missing:
        return f"{missing} unchanged source(s) without records (dead letters {REUSE_MISSING})"
    return None


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def reusable_sources(
    root: str, version: str, manifest: dict[str, Any], planned_k: dict[str, int]
) -> dict[str, tuple[str, int, list[int] | None]]:
    """``reusable`` over a version's manifest rows and dead letters (see there).

    Raises:
        DamagedVersion: Its dead letters or a manifest row are unreadable (``read_manifest`` skipped the rows).
    """
    failed = {d["source_key"] for d in read_dead_letters(root, version, manifest)}
    try:
        return reusable(read_rows(manifest_path(root, version)), failed, planned_k,
                        manifest.get("copies_per_source") or {})  # fmt: skip
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError, a row that is no input row
        raise DamagedVersion(f"{MANIFEST} has an unreadable input row ({type(e).__name__}: {e})") from None


def swap_latest(root: str, version: str, expected: Any) -> None:
    """Points ``LATEST`` (and locally ``current``) at ``version`` if nobody else moved it since ``expected``.

    Raises:
        JobFailed: Another refresh published first.
    """
    path = FileSystems.join(root.rstrip("/"), LATEST)
    if path.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed

        try:
            _gcs_blob(path).upload_from_string(version + "\n", if_generation_match=expected)
        except PreconditionFailed:
            raise JobFailed(f"another refresh moved {path} while this run ran; {version} was not published") from None
        return
    lock = path + ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if time.time() - os.path.getmtime(lock) < 600:
            raise JobFailed(
                f"another refresh is publishing into {root} right now; {version} was not published"
            ) from None
        os.remove(lock)  # left by a killed publisher
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    try:
        current, _ = read_latest(root)
        if current != expected:
            raise JobFailed(f"another refresh published {current} while this run ran; {version} was not published")
        tmp = f"{path}.tmp-{version}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        link = os.path.join(root, CURRENT)
        tmp_link = f"{link}.tmp-{version}"
        os.symlink(os.path.join(VERSIONS, version), tmp_link)
        os.replace(tmp_link, link)
    finally:
        os.close(fd)
        os.remove(lock)


def clean_abandoned(root: str) -> list[str]:
    """Deletes the staging folders killed refreshes left in ``ROOT/versions``, of any version; returns them.

    Each run stages into ``versions/<its new version>.staging-<run id>``: the cleanup of one run's own output would
    never meet another version's. A folder is abandoned by the rule of every run (``publish.clean_stale_in``: nothing
    written into it for hours), so a refresh running alongside keeps its own. ``ROOT/refused`` needs none: a refused
    run writes its dead letters there directly, and its staging folder is in ``versions`` too. On an object store
    this lists every object under ``versions`` (a listing cannot stop at one level), as ``prune`` does.
    """
    return clean_stale_in(FileSystems.join(root.rstrip("/"), VERSIONS))


def prune(root: str, keep: int, protect: set[str]) -> list[str]:
    """Deletes all but the newest ``keep`` versions (never one in ``protect``); returns what was deleted.

    A run's staging folder is no version, though it may hold a manifest (a run finalizing, or one killed while
    publishing): counted, it would take a real version's place, and deleting it would break a run in progress.
    """
    manifests = match_under(FileSystems.join(root.rstrip("/"), VERSIONS) + "/", "*/" + MANIFEST)
    names = {m.path.rstrip("/").split("/")[-2] for m in manifests}
    versions = sorted(name for name in names if not is_run_folder(name))
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protect]
    for v in doomed:
        delete_tree(version_dir(root, v))
    return doomed
