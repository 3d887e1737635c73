"""MixUp/CutMix partners across the whole dataset: who mixes with whom (planned), and the join that delivers them.

The plan (``plan_partners``, on the launcher, which already knows every source key and label) is a pure function
of the listing, the seed and the flags. The augmented split's sources are put in a seeded order (sha256 of seed
and key); for copy index ``c`` every source in a group takes the source ``s_c`` places further on in its
candidate list, with a per-copy, per-group shift ``s_c`` (seeded too):

* ``any``: one group, every source of the split; the shift is in 1..n-1, so the assignment is a permutation
  without fixed points: each source is a partner exactly once per copy index (balanced fan-out).
* ``same-class``: the same within each class (a class with one source has no partner: ``no_partner``).
* ``other-class``: the sources of each class take partners among the other classes' sources; fan-out is even
  within each pair of classes (exactly once per copy index when classes are equal in size).

Only copies that ``transforms.mix.is_mixed`` selects get a partner; evaluation splits are never mixed.

Pipeline shape (only when mixing is on; partners travel as encoded bytes, never pixels)::

    SourceImage -> OfferPartnerBytesFn -> (key, (SourceImage with its bytes, planned partners))      main
                                       -> (requester key, (partner key, partner class, bytes))     'offers'
    CoGroupByKey -> MixInput(source, planned partners, {partner key: (class, bytes)}) -> ExpandFn

A partner that cannot be read sends no offer, and one that does not decode is found out by the requester: either
way the requester's copy is written unmixed, with a skipped ``mix`` step in its recipe, and counted as
``partner_unusable`` in the manifest (the partner itself is a dead letter as usual). Counts still add up:
every source yields its K copies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.staged import Staged, unstaged
from schemas.source import SourceImage
from transforms.expand import unreadable
from transforms.mix import MixInput, MixSpec, is_mixed
from transforms.seeding import stable_fraction

OFFERS = "offers"


def _shift(seed: int, copy_index: int, group: str, low: int, high: int) -> int:
    """A seeded integer in ``low..high`` for one copy index and group."""
    u = stable_fraction(f"{seed}\0{copy_index}\0{group}", "mix-shift")
    return low + min(int(u * (high - low + 1)), high - low)


def plan_partners(
    images: list[SourceImage],
    seed: int,
    spec: MixSpec,
    copies_of: Callable[[str], int],
    augmented: Callable[[str], bool],
) -> dict[str, tuple[str | None, ...]]:
    """Assigns a partner to every mixed copy of the augmented split.

    Args:
        images: The listing's sources (those with a listing error are never requesters or partners).
        seed: Job seed.
        spec: Mix flags.
        copies_of: K of a source key (``--copies`` or the balancing plan's).
        augmented: Whether a source key is in the augmented split.

    Returns:
        Key -> partner key per copy index 1..K (None where the copy is not mixed or has no partner); sources
        without any partner are left out.

    Raises:
        UserError: The split has no possible pair for the requested partners.
    """
    labels = {s.key: s.label for s in images if s.error is None and augmented(s.key)}
    order = sorted(labels, key=lambda k: (stable_fraction(k, f"mix-order\0{seed}"), k))
    by_class: dict[int, list[str]] = defaultdict(list)
    for key in order:
        by_class[labels[key]].append(key)
    if spec.partners == "any":
        groups = [("", order, order, 1)]  # (group name, requesters, candidates, smallest shift)
    elif spec.partners == "same-class":
        groups = [(str(label), keys, keys, 1) for label, keys in sorted(by_class.items())]
    else:
        groups = [(str(label), keys, [k for k in order if labels[k] != label], 0)
                  for label, keys in sorted(by_class.items())]  # fmt: skip
    if not any(len(candidates) > low for _, _, candidates, low in groups):
        need = {"any": "two images", "same-class": "a class with two images", "other-class": "two classes"}
        raise UserError(f"--mix-partners {spec.partners} needs {need[spec.partners]} in the augmented split")
    plan: dict[str, list[str | None]] = {k: [None] * copies_of(k) for k in order}
    for name, requesters, candidates, low in groups:
        n = len(candidates)
        if n <= low:
            continue  # e.g. a class of one image with same-class partners
        for c in range(1, max((copies_of(k) for k in requesters), default=0) + 1):
            shift = _shift(seed, c, name, low, n - 1)
            for j, key in enumerate(requesters):
                if c <= len(plan[key]) and is_mixed(seed, key, c, spec.fraction):
                    plan[key][c - 1] = candidates[(j + shift) % n]
    return {k: tuple(v) for k, v in plan.items() if any(p is not None for p in v)}


class OfferPartnerBytesFn(beam.DoFn):
    """Reads each source's bytes once and offers them to every source that mixes with it.

    Args:
        partners: The plan of ``plan_partners`` (or it ``Staged``; requesters are derived from it in ``setup``).
    """

    def __init__(self, partners: dict[str, tuple[str | None, ...]] | Staged):
        self._plan = partners

    def setup(self):
        """Inverts the plan: partner key -> the keys that mix with it (each once)."""
        self._plan = unstaged(self._plan)
        requesters: dict[str, set[str]] = defaultdict(set)
        for key, partners in self._plan.items():
            for p in partners:
                if p is not None:
                    requesters[p].add(key)
        self._requesters = {k: sorted(v) for k, v in requesters.items()}

    def process(self, source: SourceImage):
        """Yields ``(key, (source, partners))`` and tagged ``(requester, (key, class, bytes))`` offers."""
        wanted = self._requesters.get(source.key, ())
        if wanted and source.error is None and source.data is None:
            try:
                with FileSystems.open(source.path) as f:
                    source = source._replace(data=f.read())  # read once here; ExpandFn then uses these bytes
            except Exception as e:
                if not unreadable(e):
                    raise
                # ExpandFn reads again and dead-letters it; its requesters get no offer
        yield source.key, (source, self._plan.get(source.key, ()))
        if source.error is None and source.data is not None:
            for requester in wanted:
                yield beam.pvalue.TaggedOutput(OFFERS, (requester, (source.key, source.label_name, source.data)))


def mix_inputs(joined: tuple[str, dict[str, list]]):
    """Turns one CoGroupByKey group into the ``MixInput`` of its source (offers to unknown keys are dropped)."""
    _, groups = joined
    offers: dict[str, tuple[str, bytes]] = {key: (label_name, data) for key, label_name, data in groups[OFFERS]}
    for source, partners in groups["sources"]:
        yield MixInput(source, tuple(partners), offers)


class PairWithPartners(beam.PTransform):
    """SourceImage -> ``MixInput``: each source joined with its planned partners' encoded bytes.

    Args:
        partners: The plan of ``plan_partners`` (or it ``Staged``).
    """

    def __init__(self, partners: dict[str, tuple[str | None, ...]] | Staged):
        super().__init__()
        self._partners = partners

    def expand(self, sources):
        """Builds offer -> join -> MixInput."""
        tagged = sources | "OfferPartnerBytes" >> beam.ParDo(OfferPartnerBytesFn(self._partners)).with_outputs(
            OFFERS, main="sources"
        )
        return (
            {"sources": tagged.sources, OFFERS: tagged[OFFERS]}
            | "JoinPartners" >> beam.CoGroupByKey()
            | "MixInputs" >> beam.FlatMap(mix_inputs).with_output_types(Any)
        )
