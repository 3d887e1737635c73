"""Refresh mode for scheduled jobs: versioned outputs and a ``LATEST`` pointer swapped atomically.

Layout of ``--output ROOT`` with ``--refresh``::

    ROOT/versions/<UTC time>-<fingerprint>/   one complete dataset per published run (staged and verified)
    ROOT/LATEST                               the name of the current version (a one-line text file)
    ROOT/current -> versions/<...>            a symlink to it, on local disks (point readers here)

* A rerun whose inputs (keys, sizes, modification times) and config (policy, seed, K, formats, class names and
  library versions) are unchanged publishes nothing new.
* ``--incremental`` expands only new or changed sources (content hashes in the manifest) and copies the records of
  unchanged ones from the current version; with the same config they would be byte-identical anyway.
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
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import JobFailed, UserError
from beam_jobs.paths import delete_tree, file_size, is_local, match_under
from beam_jobs.sinks.finalize import DEAD_LETTERS
from beam_jobs.sinks.manifest import MANIFEST, read_json
from transforms.expand import unreadable

LATEST = "LATEST"
CURRENT = "current"
VERSIONS = "versions"
_NOT_FINGERPRINTED = {"output", "overwrite", "progress", "dry_run", "cache_dir", "refresh", "incremental",
                      "keep_versions", "max_shard_mb", "max_bad_fraction"}  # fmt: skip


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_fingerprint(config: dict[str, Any], class_names: list[str], packages: dict[str, str]) -> str:
    """Fingerprint of everything besides the inputs that determines the records' bytes."""
    kept = {k: v for k, v in config.items() if k not in _NOT_FINGERPRINTED}
    return _digest({"config": kept, "classes": class_names, "packages": packages})


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
        raise UserError("--refresh on gs:// needs the gcp extra: pip install 'beam-expand[gcp]'") from None
    bucket, _, name = path[len("gs://") :].partition("/")
    return storage.Client().bucket(bucket).blob(name)


def read_latest(root: str) -> tuple[str | None, Any]:
    """Returns the current version name (or None) and a token for compare-and-swap."""
    path = FileSystems.join(root.rstrip("/"), LATEST)
    if path.startswith("gs://"):
        blob = _gcs_blob(path)
        if not blob.exists():
            return None, 0
        blob.reload()
        return blob.download_as_text().strip(), blob.generation
    if not is_local(path):
        scheme = FileSystems.get_scheme(path)
        raise UserError(f"--refresh supports local paths and gs:// (not {scheme}://): it needs an atomic pointer swap")
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
    """Returns a version's manifest without its per-input rows (``read_rows`` streams those), or None if missing."""
    path = manifest_path(root, version)
    if not FileSystems.exists(path):
        return None
    return read_json(path, rows=False)


def damaged_shards(root: str, version: str, manifest: dict[str, Any], fmt: str = "parquet") -> list[str]:
    """Returns a version's ``fmt`` shards that are missing or no longer have the size the manifest recorded.

    An incremental run copies unchanged sources' records from these shards: a shard deleted or cut short since
    would leave those sources without records. One size lookup per shard.
    """
    damaged = []
    for shard in manifest.get("shards", {}).get(fmt, []):
        path = FileSystems.join(version_dir(root, version), shard["file"])
        try:
            size = file_size(path)
        except Exception as e:  # noqa: BLE001 (each filesystem raises its own "not found")
            if not unreadable(e):
                raise  # throttling, credentials: no verdict on the shard (it would re-expand everything)
            size = None
        if size != shard["bytes"]:
            damaged.append(shard["file"])
    return damaged


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


def read_dead_letters(root: str, version: str) -> Iterator[dict[str, Any]]:
    """Yields a version's dead letters one at a time (none when its file is missing), in the file's order."""
    path = FileSystems.join(version_dir(root, version), DEAD_LETTERS)
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as f:
        yield from (json.loads(line) for line in f if line.strip())


def dead_letter_keys(root: str, version: str) -> set[str]:
    """Returns the keys of a version's dead-lettered inputs.

    An unchanged one has no records to reuse: it is read and dead-lettered again, so the new version's counts add up.
    """
    return {d["source_key"] for d in read_dead_letters(root, version)}


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


def prune(root: str, keep: int, protect: set[str]) -> list[str]:
    """Deletes all but the newest ``keep`` versions (never one in ``protect``); returns what was deleted."""
    manifests = match_under(FileSystems.join(root.rstrip("/"), VERSIONS) + "/", "*/" + MANIFEST)
    versions = sorted({m.path.rstrip("/").split("/")[-2] for m in manifests})
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protect]
    for v in doomed:
        delete_tree(version_dir(root, v))
    return doomed
