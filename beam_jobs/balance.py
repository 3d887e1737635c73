"""Class balancing: choose K per class (and which sources get one copy more) before the run.

* ``--balance``: every class reaches the largest class's record count (its images x (K + original)).
* ``--target-per-class N``: every class reaches N records.
* ``--copies-per-class daisy=5,roses=20``: K per class explicitly (others keep ``--copies``).

A class's copies are spread evenly over its images; when they do not divide, the extra copies go to the images
first in a stable hash order of their keys, so the plan is a pure function of the listing. Inputs are never
dropped: a class already over its target keeps every image with at least one record (its original, or one copy).
"""

from __future__ import annotations

from typing import Any

from schemas.source import SourceImage
from transforms.seeding import stable_fraction


def plan_copies(
    images: list[SourceImage],
    class_names: list[str],
    copies: int,
    include_original: bool,
    balance: bool = False,
    target_per_class: int | None = None,
    copies_per_class: dict[str, int] | None = None,
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Returns K per source key and a per-class summary (images, records planned, copies per image min..max)."""
    by_class: dict[str, list[SourceImage]] = {n: [] for n in class_names}
    for s in images:
        if s.error is None and s.label_name in by_class:
            by_class[s.label_name].append(s)
    orig = int(include_original)
    target = None
    if balance:
        target = max((len(v) for v in by_class.values()), default=0) * (copies + orig)
    elif target_per_class is not None:
        target = target_per_class
    per_source: dict[str, int] = {}
    summary: dict[str, dict[str, Any]] = {}
    for name, members in by_class.items():
        n = len(members)
        if not n:
            summary[name] = {"images": 0, "records": 0, "copies_per_image": [0, 0]}
            continue
        if copies_per_class and name in copies_per_class:
            total = copies_per_class[name] * n
        elif target is not None:
            total = max(target - orig * n, 0)
        else:
            total = copies * n
        base, extra = divmod(total, n)
        ordered = sorted(members, key=lambda s: (stable_fraction(s.key, "balance"), s.key))
        for i, s in enumerate(ordered):
            per_source[s.key] = base + (1 if i < extra else 0)
        if not orig:  # every image keeps at least one record: nothing is silently dropped
            per_source.update({s.key: max(per_source[s.key], 1) for s in members})
        ks = [per_source[s.key] for s in members]
        summary[name] = {"images": n, "records": sum(ks) + orig * n, "copies_per_image": [min(ks), max(ks)]}
    return per_source, summary


def plan_text(summary: dict[str, dict[str, Any]]) -> str:
    """The plan as a table, printed before the run."""
    from beam_jobs.summary import _table

    rows = [
        [n, f"{v['images']:,}", "-".join(str(k) for k in sorted(set(v["copies_per_image"]))), f"{v['records']:,}"]
        for n, v in summary.items()
    ]
    return "copy plan:\n" + _table(rows, ["class", "images", "copies/image", "records"])
