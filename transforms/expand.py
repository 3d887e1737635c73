"""Fan-out of one source image into its copies: the pure function and the Beam DoFn around it.

Shape of the data::

    SourceImage(key, label, label_name, path|data)
      -> ExpandFn -> record dicts (schemas.FIELDS), copy_index 0 (original, optional) and 1..K
                  -> 'dead_letter' tag: {source_key, stage, reason, error_type, message, sha256}
                  -> 'source_info' tag: {key, sha256, reused} of every source that produced records
                  -> 'reused' tag: keys whose bytes match the previous version (incremental refresh)
                  -> 'stats' tag: (split, per-channel pixel sums of the decoded source) for dataset statistics

Decode happens once per source, resize once per source, then K augment+encode steps, all fused in one call: no
pixels ever leave the worker. A source yields all of its records from one ``process`` call, or none.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.source import SourceImage
from transforms.codec import DecodeError, decode_image, encode_image, encode_step
from transforms.geometric import Resize
from transforms.policies import Policy
from transforms.quality import QualityGate
from transforms.seeding import assign_split

_INPUT_SPLIT = re.compile(r"(?:^|[/-])(train|validation|test)(?=[-.]|$)")


def split_from_key(key: str) -> str | None:
    """Reads the split from a record key's shard name (``flowers-train.tfrecord-00000-of-00004#7``)."""
    match = _INPUT_SPLIT.search(key.split("#", 1)[0])
    return match.group(1) if match else None


def split_of(key: str, splits, default: str, input_splits: bool, split_map: dict | None = None) -> str:
    """The split of a source: by ``--splits`` key hash, official split, input shard name, or the default."""
    if splits:
        return assign_split(key, [tuple(s) for s in splits], default)
    if split_map and key in split_map:
        return split_map[key]
    if input_splits:
        return split_from_key(key) or default
    return default


DEAD_LETTER = "dead_letter"
SOURCE_INFO = "source_info"
REUSED = "reused"
STATS = "stats"
METRICS_NAMESPACE = "beam_expand"


def expand_image(
    data: bytes,
    key: str,
    label: int,
    label_name: str,
    *,
    policy: Policy,
    copies: int,
    seed: int,
    include_original: bool = False,
    resize: Resize | None = None,
    image_format: str = "jpeg",
    quality: int = 95,
    class_names: list[str] | None = None,
    split: str = "train",
    augment: bool = True,
    stats: list | None = None,
    gate: QualityGate | None = None,
    gate_tally: Counter | None = None,
) -> list[dict[str, Any]]:
    """Decodes one source image and returns its output records.

    Args:
        data: The source's encoded bytes.
        key: Stable source key (seeds every copy).
        label: Class index; copied to every record (changed only by the policy's declared label map).
        label_name: Class name.
        policy: Ops applied to every augmented copy.
        copies: K, the number of augmented copies.
        seed: Job seed.
        include_original: Also emit the unaugmented image as copy 0.
        resize: Optional resize applied once, before the copies.
        image_format: Output encoding.
        quality: JPEG/WebP quality.
        class_names: Class names in label order, to index a label-mapped copy's new class.
        split: The source's split (records carry it; shards are written per split).
        augment: False for evaluation splits: only the original is written (copy_index 0).
        stats: If given, the source's pixel sums (``pixel_sums``) are appended to it.
        gate: If given, degenerate copies are re-drawn (``transforms.quality``).
        gate_tally: Counts of the gate's re-draws and flags, added to when given.

    Returns:
        Records (dicts with every field of ``schemas.FIELDS``), original first then copies 1..K.

    Raises:
        DecodeError: The bytes are not a usable image.
    """
    image, decode_step = decode_image(data)
    base_steps = [decode_step]
    if resize is not None:
        image = resize.apply(image, {})
        base_steps.append(resize.step({}))
    final = encode_step(image_format, quality)
    if stats is not None:
        stats.append(pixel_sums(image))

    def record(pixels, copy_index: int, steps: list[dict[str, Any]], name: str = label_name) -> dict[str, Any]:
        return {
            "image": encode_image(pixels, image_format, quality),
            "label": label if name == label_name else class_names.index(name),
            "label_name": name,
            "source_key": key,
            "copy_index": copy_index,
            "recipe": json.dumps(steps, separators=(",", ":"), sort_keys=True),
            "height": int(pixels.shape[0]),
            "width": int(pixels.shape[1]),
            "split": split,
        }

    records = []
    if include_original or not augment:
        records.append(record(image, 0, [*base_steps, final]))
    n_copies = copies if augment else 0
    augment_copy = gate.for_source(policy, image, gate_tally) if gate and n_copies else policy.augment
    for copy_index in range(1, n_copies + 1):
        pixels, steps, name = augment_copy(image, seed, key, copy_index, label_name)
        records.append(record(pixels, copy_index, [*base_steps, *steps, final], name))
    records[0]["source_start"] = True  # the sink counts sources by this mark
    return records


def pixel_sums(image) -> dict[str, Any]:
    """Per-channel sum and sum of squares of one decoded source (combined into dataset mean and std)."""
    flat = image.reshape(-1, image.shape[2]).astype(np.float64)
    return {"images": 1, "pixels": int(flat.shape[0]), "sum": flat.sum(axis=0).tolist(),
            "sumsq": np.square(flat).sum(axis=0).tolist()}  # fmt: skip


def dead_letter(source: SourceImage, stage: str, reason: str, error: BaseException, data: bytes | None) -> dict:
    """Builds the dead-letter entry for a source that produced no records."""
    return {
        "source_key": source.key,
        "label_name": source.label_name,
        "stage": stage,
        "reason": reason,
        "error_type": type(error).__name__,
        "message": str(error)[:500],
        "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
    }


class ExpandFn(beam.DoFn):
    """Reads (if needed), decodes once and emits K augmented copies per ``SourceImage``.

    Args:
        policy_config: ``Policy.to_config()`` dict; the policy is built in ``setup``.
        copies: K.
        seed: Job seed.
        include_original: Also emit copy 0, the unaugmented image.
        image_size: Optional ``(height, width)`` resize before augmenting.
        image_format: ``jpeg``, ``png`` or ``webp``.
        quality: JPEG/WebP quality.
        class_names: Class names in label order (needed when the policy has a label map).
        reuse: Key -> sha256 of sources whose earlier records may be reused when their bytes are unchanged.
        splits: ``[(name, fraction), ...]`` to split sources by key hash, or None.
        split: The split of every source when ``splits`` is None and the input has none.
        augment_split: The split that is augmented; every other split is written unaugmented.
        input_splits: Take each source's split from its key (TFDS / HF shard names), when ``splits`` is None.
        split_map: Key -> split from the dataset itself (e.g. flowers102's official split).
        copies_per_source: Key -> K from a class-balancing plan (others use ``copies``).
        quality_gate: ``QualityGate.config()`` to re-draw degenerate copies, or None for no gate.
    """

    def __init__(
        self,
        policy_config: dict,
        copies: int,
        seed: int,
        include_original: bool = False,
        image_size: tuple[int, int] | None = None,
        image_format: str = "jpeg",
        quality: int = 95,
        class_names: list[str] | None = None,
        reuse: dict[str, str] | None = None,
        splits: list[tuple[str, float]] | None = None,
        split: str = "train",
        augment_split: str = "train",
        input_splits: bool = False,
        split_map: dict[str, str] | None = None,
        copies_per_source: dict[str, int] | None = None,
        quality_gate: dict | None = None,
    ):
        self._gate_config = quality_gate
        self._split_map = split_map
        self._copies_per_source = copies_per_source or {}
        self._splits = [tuple(s) for s in splits] if splits else None
        self._split = split
        self._augment_split = augment_split
        self._input_splits = input_splits
        self._policy_config = policy_config
        self._reuse = reuse or {}
        self._class_names = list(class_names) if class_names else None
        self._copies = copies
        self._seed = seed
        self._include_original = include_original
        self._image_size = image_size
        self._image_format = image_format
        self._quality = quality
        self._images_ok = Metrics.counter(METRICS_NAMESPACE, "images_ok")
        self._copies_out = Metrics.counter(METRICS_NAMESPACE, "records_out")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letters")
        self._gate_counters = {k: Metrics.counter(METRICS_NAMESPACE, f"quality_gate_{k}")
                               for k in ("redrawn", "redraws", "degenerate")}  # fmt: skip

    def setup(self):
        """Builds the policy once per DoFn instance; one OpenCV thread per worker (Beam parallelizes)."""
        import cv2

        cv2.setNumThreads(1)
        self._policy = Policy.from_config(self._policy_config)
        self._resize = Resize(*self._image_size) if self._image_size else None
        self._gate = QualityGate(**self._gate_config) if self._gate_config else None

    def process(self, source: SourceImage):
        """Yields the source's records, or one tagged dead letter."""
        data = source.data
        if source.error is not None:
            self._dead.inc()
            error = ValueError(f"archive member not usable: {source.error}")
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "read", source.error, error, None))
            return
        if data is None:
            try:
                with FileSystems.open(source.path) as f:
                    data = f.read()
            except OSError as e:
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "read", "unreadable", e, None))
                return
        digest = hashlib.sha256(data).hexdigest()
        if self._reuse.get(source.key) == digest:
            yield beam.pvalue.TaggedOutput(REUSED, source.key)
            yield beam.pvalue.TaggedOutput(SOURCE_INFO, {"key": source.key, "sha256": digest, "reused": True})
            return
        split = split_of(source.key, self._splits, self._split, self._input_splits, self._split_map)
        stats: list = []
        tally: Counter = Counter()
        try:
            records = expand_image(
                data,
                source.key,
                source.label,
                source.label_name,
                policy=self._policy,
                copies=self._copies_per_source.get(source.key, self._copies),
                seed=self._seed,
                include_original=self._include_original,
                resize=self._resize,
                image_format=self._image_format,
                quality=self._quality,
                class_names=self._class_names,
                split=split,
                stats=stats,
                gate=self._gate,
                gate_tally=tally,
                augment=(split == self._augment_split) or not (self._splits or self._input_splits or self._split_map),
            )
        except DecodeError as e:
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "decode", e.reason, e, data))
            return
        self._images_ok.inc()
        self._copies_out.inc(len(records))
        for k, n in tally.items():
            self._gate_counters[k].inc(n)
        yield from records
        yield beam.pvalue.TaggedOutput(SOURCE_INFO, {"key": source.key, "sha256": digest, "reused": False})
        if stats and stats[0]["pixels"] and len(stats[0]["sum"]) == 3:
            yield beam.pvalue.TaggedOutput(STATS, (split, stats[0]))
