"""Downloads into a cache, verified by size and sha256 before use.

A download goes to a temporary name, is checked, then renamed into place, so the cache never holds a partial or
wrong file; a cached file is re-verified on every use.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from beam_jobs.errors import UserError

CHUNK = 1 << 20


def sha256_of(path: str) -> str:
    """Returns the hex sha256 of a local file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str, sha256: str | None, size: int | None) -> str | None:
    """Returns None if the file matches, else a sentence saying what differs."""
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != size:
        return f"size is {actual_size:,} bytes, expected {size:,}"
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            return f"sha256 is {actual}, expected {sha256.lower()}"
    return None


def fetch(url: str, cache_dir: str, filename: str, sha256: str | None, size: int | None, hint: str) -> str:
    """Returns a verified local copy of ``url`` (``http(s)://`` or ``file://``), downloading it once.

    Args:
        url: Where to get the file.
        cache_dir: Cache directory (created if needed).
        filename: Name of the file in the cache.
        sha256: Expected hex digest, or None to skip the check.
        size: Expected size in bytes, or None.
        hint: What the user can do instead (e.g. "pass SOURCE=<local .tgz or folder>"), put in every error.

    Raises:
        UserError: Unreachable URL, HTTP error, or a checksum/size mismatch (nothing is cached then).
    """
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, filename)
    if os.path.exists(target):
        problem = verify(target, sha256, size)
        if problem is None:
            return target
        print(f"beam-expand: cached {target} is invalid ({problem}); downloading again", file=sys.stderr)
        os.remove(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, size, hint)
        problem = verify(tmp, sha256, size)
        if problem is not None:
            raise UserError(f"download from {url} failed verification: {problem}; nothing was cached; {hint}")
        os.replace(tmp, target)
        return target
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _download(url: str, out, expected: int | None, hint: str) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=30)  # noqa: S310 (http(s) and file URLs on purpose)
    except urllib.error.HTTPError as e:
        raise UserError(f"cannot download {url}: HTTP {e.code} {e.reason}; {hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach {url} ({reason}); {hint}") from None
    total = expected or int(response.headers.get("Content-Length") or 0) or None
    done, last = 0, 0.0
    interactive = sys.stderr.isatty()
    with response:
        while True:
            try:
                chunk = response.read(CHUNK)
            except OSError as e:
                raise UserError(f"download from {url} broke off after {done:,} bytes ({e}); {hint}") from None
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            now = time.monotonic()
            if interactive and now - last > 0.5:
                pct = f" {100 * done / total:5.1f}%" if total else ""
                print(f"\rdownloading {url}: {done / 1e6:,.1f} MB{pct}", end="", file=sys.stderr)
                last = now
    if interactive:
        print(file=sys.stderr)
    out.flush()
    os.fsync(out.fileno())
