"""Oxford 17 and 102 Category Flowers: archives of ``jpg/image_NNNN.jpg`` whose labels come from elsewhere.

* ``flowers17``: 1,360 photos, 80 per class; the class of image n is (n - 1) // 80 in the published class order.
* ``flowers102``: 8,189 photos; labels from ``imagelabels.mat``, the official train / validation / test split from
  ``setid.mat`` (``trnid``, ``valid``, ``tstid``), both downloaded and verified beside the archive.
"""

from __future__ import annotations

import posixpath
import re
from importlib import resources

from beam_jobs.errors import UserError
from beam_jobs.sources.archive import ARCHIVE_ERRORS, damage_note, iter_members
from beam_jobs.sources.listing import Listing
from beam_jobs.sources.matfile import load_mat
from schemas.source import SourceImage

FLOWERS17_CLASSES = [
    "daffodil", "snowdrop", "lily_valley", "bluebell", "crocus", "iris", "tigerlily", "tulip", "fritillary",
    "sunflower", "daisy", "colts_foot", "dandelion", "cowslip", "buttercup", "windflower", "pansy",
]  # fmt: skip
_IMAGE = re.compile(r"image_(\d+)\.jpg$")


def flowers102_classes() -> list[str]:
    """The 102 class names in label order (as TFDS's oxford_flowers102 names them)."""
    text = resources.files("beam_jobs.sources").joinpath("flowers102_classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def list_oxford(path: str, kind: str, extras: dict[str, str]) -> tuple[Listing, str, dict[str, str]]:
    """Lists an Oxford flowers archive.

    A damaged archive keeps the images before the damage and says where it stopped in ``Listing.problems``, as
    ``archive.list_archive`` does.

    Returns:
        The listing (keys ``image_0001.jpg``), the archive's root prefix (``jpg/``) and, for ``flowers102``, the
        official split of every key.

    Raises:
        UserError: The archive or the label files cannot be read.
        SourceReadError: A read failed (no listing is made of the part read before it).
    """
    numbers: dict[str, int] = {}
    prefix = ""
    members = 0
    problems = []
    try:
        for name, _, _ in iter_members(path, with_data=False):
            members += 1
            if name and (m := _IMAGE.search(posixpath.basename(name))):
                prefix = posixpath.dirname(name) + "/" if "/" in name else ""
                numbers[name[len(prefix) :]] = int(m.group(1))
    except ARCHIVE_ERRORS as e:
        if not numbers:
            raise UserError(f"cannot read archive {path}: {e}; pass an intact copy of it as --source") from None
        problems.append(damage_note(members, e))  # the images after the damage are lost: never in silence
    split_of: dict[str, str] = {}
    if kind == "flowers17":
        names = FLOWERS17_CLASSES
        label_of = {k: (n - 1) // 80 for k, n in numbers.items() if 1 <= n <= 80 * len(names)}
    else:
        names = flowers102_classes()
        try:
            labels = load_mat(_read(extras["imagelabels.mat"]))["labels"].ravel().astype(int)
            sets = load_mat(_read(extras["setid.mat"]))
        except (KeyError, ValueError, OSError) as e:
            raise UserError(f"cannot read the flowers102 label files ({e}); they sit beside the archive") from None
        label_of = {k: int(labels[n - 1]) - 1 for k, n in numbers.items() if 1 <= n <= len(labels)}
        by_number = {}
        for var, split in (("trnid", "train"), ("valid", "validation"), ("tstid", "test")):
            for n in sets.get(var, []).ravel().astype(int):
                by_number[int(n)] = split
        split_of = {k: by_number[n] for k, n in numbers.items() if n in by_number}
    images = [
        SourceImage(k, label_of[k], names[label_of[k]])
        if k in label_of
        else SourceImage(k, 0, "(no label)", error="missing_label")
        for k in sorted(numbers)
    ]
    return Listing(list(names), images, problems=problems), prefix, split_of
