"""What a source holds, found before the pipeline starts (for ``--dry-run``, progress and the manifest).

Layout (``flow_from_directory`` / tf_flowers ``flower_photos``): one sub-folder per class under the dataset root;
class names are the sorted folder names and a label is the index into them. Files directly at the root, junk and
names that are not UTF-8 are ignored and reported; files with a non-image extension inside class folders are
skipped and counted.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from beam_jobs.errors import UserError
from beam_jobs.paths import files_under
from schemas.source import SourceImage

# Keras's flow_from_directory white list, plus webp and gif.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".gif"})
_JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db")
NO_LABEL = "(no label)"  # class column of records that are dead before their label is known


@dataclass
class Listing:
    """The inputs of one run.

    Attributes:
        class_names: Sorted class names; ``label`` indexes into them.
        images: Selected inputs (path or archive key), sorted by key.
        ignored: Keys of files outside class folders or of junk entries (reported, not read).
        skipped: Keys of files in class folders without an image extension (counted).
        sizes: Bytes per selected key, where known (for the dry-run estimate).
        problems: Source-level problems (e.g. an archive that breaks off), reported in the summary and manifest.
        mtimes: Modification time per selected key, where known (refresh mode's change detection).
    """

    class_names: list[str]
    images: list[SourceImage]
    ignored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    mtimes: dict[str, float] = field(default_factory=dict)

    def per_class(self) -> dict[str, int]:
        """Returns the number of selected images per class name, in class order."""
        counts = dict.fromkeys(self.class_names, 0)
        for item in self.images:
            counts[item.label_name] = counts.get(item.label_name, 0) + 1  # NO_LABEL for unlabelled bad records
        return counts


def is_text(name: str) -> bool:
    """Whether a name is real text: a file system hands names that are not UTF-8 over as lone surrogates."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def classify_key(key: str) -> str:
    """Says what a relative key is: ``image``, ``skipped`` (non-image in a class folder) or ``ignored``.

    A key that is not UTF-8 is ``ignored``: keys are text (in records, seeds and the manifest).
    """
    parts = key.split("/")
    if not is_text(key) or any(p in _JUNK or p.startswith(".") for p in parts):
        return "ignored"
    if len(parts) < 2:
        return "ignored"
    return "image" if posixpath.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS else "skipped"


def build_listing(entries: list[tuple]) -> Listing:
    """Builds a listing from ``(key, path, size[, mtime])`` entries with keys relative to the dataset root."""
    images, ignored, skipped, sizes, mtimes = [], [], [], {}, {}
    names = sorted({e[0].split("/")[0] for e in entries if classify_key(e[0]) == "image"})
    index = {name: i for i, name in enumerate(names)}
    for key, path, size, *rest in sorted(entries, key=lambda e: e[0]):
        kind = classify_key(key)
        if kind == "ignored":
            ignored.append(key if is_text(key) else key.encode("utf-8", "backslashreplace").decode())  # printable
        elif kind == "skipped":
            skipped.append(key)
        else:
            name = key.split("/")[0]
            images.append(SourceImage(key=key, label=index[name], label_name=name, path=path))
            sizes[key] = size
            if rest:
                mtimes[key] = rest[0]
    return Listing(names, images, ignored, skipped, sizes, mtimes=mtimes)


def list_folder(root: str) -> Listing:
    """Lists an image folder on any Beam filesystem (local path, ``gs://``, ...).

    Raises:
        UserError: The folder does not exist or holds no class folders with images.
    """
    root = root.rstrip("/")
    try:
        matches = files_under(root, dangling_links=True)  # a dangling link is read, and dead-lettered
    except Exception as e:  # BeamIOError wraps the filesystem's own error
        raise UserError(f"cannot list {root}: {e}") from None
    entries = []
    while matches:  # emptied as it is read: a file's metadata object costs more than its entry (~8 MB per 20,000)
        meta = matches.pop()
        rel = meta.path[len(root) :].lstrip("/").replace("\\", "/")
        entries.append((rel, meta.path, meta.size_in_bytes, meta.last_updated_in_seconds))
    listing = build_listing(entries)
    if not listing.images:
        raise UserError(
            f"no images found in class sub-folders of {root} (expected {root}/<class>/<image>.jpg); "
            "check --source / SOURCE="
        )
    return listing


def select(listing: Listing, classes: list[str] | None, limit: int | None) -> Listing:
    """Applies ``--classes`` and ``--limit``.

    ``--classes`` keeps the named classes (labels re-indexed over the kept names). ``--limit N`` keeps N images
    chosen by a stable hash of their keys, so the sample spreads over classes and never depends on listing order.

    Raises:
        UserError: A named class does not exist.
    """
    from transforms.seeding import stable_fraction

    images = listing.images
    names = listing.class_names
    if classes:
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise UserError(f"--classes: unknown class(es) {unknown}; the source has: {', '.join(names)}")
        names = sorted(classes)
        index = {n: i for i, n in enumerate(names)}
        images = [s._replace(label=index[s.label_name]) for s in images if s.label_name in index]
    if limit is not None:
        images = sorted(sorted(images, key=lambda s: stable_fraction(s.key, "limit"))[:limit], key=lambda s: s.key)
    sizes = {s.key: listing.sizes.get(s.key, 0) for s in images}
    mtimes = {s.key: listing.mtimes[s.key] for s in images if s.key in listing.mtimes}
    return Listing(names, images, listing.ignored, listing.skipped, sizes, listing.problems, mtimes)
