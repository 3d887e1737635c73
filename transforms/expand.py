"""Fan-out of one source image into its copies: the pure function and the Beam DoFn around it.

Shape of the data::

    SourceImage(key, label, label_name, path|data)
      -> ExpandFn -> record dicts (schemas.FIELDS), copy_index 0 (original, optional) and 1..K
                  -> 'dead_letter' tag: {source_key, stage, reason, error_type, message, sha256}
                  -> 'source_info' tag: (key, sha256, reused) of every source that produced records, packed in one
                     bytes object (``pack_source_info``: the finalize step holds one per source)
                  -> 'reused' tag: (key, (class, RGB pixel sums or None)) of sources whose bytes match the previous
                     version (incremental); ``ReuseRecords`` emits their records and their 'stats' once it finds them
                  -> 'stats' tag: (split, per-channel pixel sums of the decoded source) for dataset statistics
                  -> 'zca' tag: the decoded source's uint8 bytes (augmented split, with --zca) for the ZCA sums

Decode happens once per source, resize once per source, then K augment+encode steps, all fused in one call: no
pixels ever leave the worker. A source yields all of its records from one ``process`` call, or none. In a run
with MixUp/CutMix the element is a ``transforms.mix.MixInput`` (the source plus its partners' encoded bytes) and a
``Mixer`` mixes each copy with its partner's copy (see ``transforms.mix``).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections import Counter
from typing import Any

import apache_beam as beam
import cv2
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.source import SourceImage
from transforms.codec import DecodeError, decode_image, encode_image, encode_step, to_working
from transforms.functional.geometric import reuse_padding
from transforms.geometric import Resize
from transforms.mix import Mixer, MixInput, MixSpec
from transforms.policies import Policy
from transforms.quality import QualityGate
from transforms.seeding import assign_split
from transforms.tta import TTA

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
ZCA = "zca"
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
    mix: Mixer | None = None,
    tta: TTA | None = None,
    pixels_out: list | None = None,
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
        mix: Mixes the augmented copies with their partners' copies and adds the mix fields (mixed runs).
        tta: Test-time views written after the original of an evaluation split's image (``view_index`` 1..N).
        pixels_out: If given, the decoded (and resized) source is appended to it.
        gate: If given, degenerate copies are re-drawn (``transforms.quality``).
        gate_tally: Counts of the gate's re-draws and flags, added to when given.

    Returns:
        Records (dicts with every field of ``schemas.FIELDS``): the original (copy 0), then its test-time views
        (evaluation splits with ``tta``), then copies 1..K.

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
    if pixels_out is not None:
        pixels_out.append(image)

    # The recipe is the JSON list [*base_steps, *op steps, final]; the fixed parts are serialized once per source.
    head, tail = _json(base_steps)[1:-1], _json(final)

    def record(pixels, copy_index: int, steps, name: str = label_name, bgra: bool = False) -> dict[str, Any]:
        return {
            "image": encode_image(pixels, image_format, quality, bgra=bgra),
            "label": label if name == label_name else class_names.index(name),
            "label_name": name,
            "source_key": key,
            "copy_index": copy_index,
            "view_index": 0,
            "recipe": "[" + ",".join(p for p in (head, _json(steps)[1:-1], tail) if p) + "]",
            "height": int(pixels.shape[0]),
            "width": int(pixels.shape[1]),
            "split": split,
        }

    records = []
    if include_original or not augment:
        records.append(record(image, 0, []))
    if tta is not None and not augment:
        for view, (pixels, steps) in enumerate(tta.views(image, seed, key, label_name), start=1):
            records.append({**record(pixels, 0, steps), "view_index": view})
    copies = copies if augment else 0
    # Copies made only by channel-free ops (pure geometry) are made from a BGRA working copy: same pixels, less work.
    # Mixed copies stay RGB: the mixer blends them with partner copies made in RGB.
    bgra = copies > 0 and mix is None and policy.channel_free(label_name)
    working = to_working(image) if bgra else image
    augment_copy = gate.for_source(policy, working, gate_tally) if gate and copies else policy.augment
    with reuse_padding():  # the K copies' warps share one padded working copy
        for copy_index in range(1, copies + 1):
            pixels, steps, name = augment_copy(working, seed, key, copy_index, label_name)
            if mix is not None:
                pixels, steps, name = mix.apply(pixels, steps, name, copy_index)
            records.append(record(pixels, copy_index, steps, name, bgra))
    records[0]["source_start"] = True  # the sink counts sources by this mark, under the source's own class
    records[0]["source_class"] = label_name  # (a label map or a mix may give the first record another class)
    if mix is not None:
        mix.finish(records)
    return records


def unreadable(error: BaseException) -> bool:
    """Whether a read failed for the file itself (missing, denied, a folder, ...), not for passing trouble.

    Local files and Beam's own errors raise ``OSError``; object stores' clients raise their own "not found" (GCS:
    google.api_core's ``NotFound``, HTTP 404), which are no ``OSError``. Anything else (throttling, expired
    credentials, a server error) fails the bundle so that Beam retries it rather than dropping the image.
    """
    return isinstance(error, OSError) or type(error).__name__ == "NotFound" or getattr(error, "code", None) == 404


def _loaded(value):
    """A staged value's contents (anything with ``load()``, e.g. ``beam_jobs.staged.Staged``), else the value."""
    return value.load() if hasattr(value, "load") else value


def _rgb(sums: dict[str, Any] | None) -> dict[str, Any] | None:
    """A source's pixel sums if it is an RGB image with pixels (the statistics are RGB), else None."""
    return sums if sums and sums["pixels"] and len(sums["sum"]) == 3 else None


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def pixel_sums(image) -> dict[str, Any]:
    """Per-channel sum and sum of squares of one decoded source (combined into dataset mean and std).

    Exact integers, from OpenCV's per-channel sums and squared L2 norms: ~4x cheaper than per-channel histograms and
    ~50x cheaper than float64 sums over the pixels. The norms are accumulated in float64, so they are rounded back to
    the integers they are (exact while a channel's sum of squares stays below 2**53, ~10**11 pixels).
    """
    channels = cv2.split(image)
    sums = cv2.sumElems(image)[: len(channels)]
    return {"images": 1, "pixels": int(image.shape[0] * image.shape[1]), "sum": [float(round(v)) for v in sums],
            "sumsq": [float(round(cv2.norm(c, cv2.NORM_L2SQR))) for c in channels]}  # fmt: skip


_SUMS = struct.Struct("<7d")  # pixels, per-channel sums and sums of squares (exact integers in float64)


def pack_source_info(key: str, sha256: str, reused: bool, sums: dict[str, Any] | None = None) -> bytes:
    """Packs a source's key, content digest (hex), reuse flag and RGB pixel sums into ~40% of a tuple's bytes."""
    packed = _SUMS.pack(sums["pixels"], *sums["sum"], *sums["sumsq"]) if sums else b""
    return bytes.fromhex(sha256) + bytes([reused, len(packed)]) + packed + key.encode("utf-8")


def unpack_source_info(info: bytes) -> tuple[str, str, bool, list[int] | None]:
    """``(key, sha256, reused, sums)`` from ``pack_source_info``'s bytes (``sums_list``'s form, or None)."""
    end = 34 + info[33]
    sums = [int(v) for v in _SUMS.unpack(info[34:end])] if info[33] else None
    return info[end:].decode("utf-8"), info[:32].hex(), info[32] == 1, sums


def sums_list(sums: dict[str, Any]) -> list[int]:
    """``[pixels, sum R, G, B, sum of squares R, G, B]``: RGB pixel sums as the manifest's rows keep them."""
    return [int(v) for v in (sums["pixels"], *sums["sum"], *sums["sumsq"])]


def sums_dict(values: list[int]) -> dict[str, Any]:
    """``pixel_sums``'s dict from ``sums_list``'s form."""
    return {"images": 1, "pixels": values[0], "sum": [float(v) for v in values[1:4]],
            "sumsq": [float(v) for v in values[4:7]]}  # fmt: skip


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
        reuse: Key -> (sha256, label, pixel sums or None) of sources whose earlier records may be reused when
            their bytes and label are unchanged (a list file may relabel an image); the sums (``sums_list``) spare
            decoding them for the split's statistics.
        splits: ``[(name, fraction), ...]`` to split sources by key hash, or None.
        split: The split of every source when ``splits`` is None and the input has none.
        augment_split: The split that is augmented; every other split is written unaugmented.
        input_splits: Take each source's split from its key (TFDS / HF shard names), when ``splits`` is None.
        split_map: Key -> split from the dataset itself (e.g. flowers102's official split).
        copies_per_source: Key -> K from a class-balancing plan (others use ``copies``).
        mix: ``MixSpec.to_config()`` in a MixUp/CutMix run (elements are then ``MixInput``s), else None.
        tta: ``transforms.tta`` config: test-time views of every image outside the augmented split, or None.
        zca: Emit each augmented-split source's decoded pixels on the ``zca`` tag (for the ZCA sums).
        quality_gate: ``QualityGate.config()`` to re-draw degenerate copies, or None for no gate.

    ``reuse``, ``split_map`` and ``copies_per_source`` hold one entry per source: each may be given staged instead
    (anything with a ``load()`` that returns the mapping, as ``beam_jobs.staged.Staged``), read in ``setup``.
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
        reuse: dict[str, tuple] | None = None,
        splits: list[tuple[str, float]] | None = None,
        split: str = "train",
        augment_split: str = "train",
        input_splits: bool = False,
        split_map: dict[str, str] | None = None,
        copies_per_source: dict[str, int] | None = None,
        mix: dict | None = None,
        tta: dict | None = None,
        zca: bool = False,
        quality_gate: dict | None = None,
    ):
        self._mix = mix
        self._tta_config = tta
        self._zca = zca
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
        # Per-source plans may come staged in files (``beam_jobs.staged``): read once per worker process.
        self._reuse, self._split_map, self._copies_per_source = map(
            _loaded, (self._reuse, self._split_map, self._copies_per_source)
        )
        self._policy = Policy.from_config(self._policy_config)
        self._resize = Resize(*self._image_size) if self._image_size else None
        self._mix_spec = MixSpec.from_config(self._mix) if self._mix else None
        self._tta = TTA.from_config(self._tta_config) if self._tta_config else None
        self._gate = QualityGate(**self._gate_config) if self._gate_config else None

    def _partner_augment(self, image, seed, key, copy_index, label_name=None):
        """A mix partner's copy exactly as its own source writes it (through the quality gate, when on)."""
        if self._gate is None:
            return self._policy.augment(image, seed, key, copy_index, label_name)
        return self._gate.for_source(self._policy, image)(image, seed, key, copy_index, label_name)

    def _sums(self, data: bytes) -> dict[str, Any] | None:
        """The pixel sums ``expand_image`` reports for a source (decoded and resized the same way), or None."""
        try:
            image, _ = decode_image(data)
        except DecodeError:
            return None
        return pixel_sums(self._resize.apply(image, {}) if self._resize is not None else image)

    @staticmethod
    def _source_outputs(key: str, digest: str, reused: bool, split: str, sums: dict[str, Any] | None):
        """The source's ``source_info`` and, for an RGB image expanded here, its pixel sums for the statistics.

        A reused source's sums go with its ``reused`` entry instead: whether it has records to count is known only
        once ``ReuseRecords`` has looked for them (one without is a dead letter, and a full run counts no pixels of
        a dead-lettered source).
        """
        rgb = _rgb(sums)
        yield beam.pvalue.TaggedOutput(SOURCE_INFO, pack_source_info(key, digest, reused, rgb))
        if rgb and not reused:
            yield beam.pvalue.TaggedOutput(STATS, (split, rgb))

    def process(self, element: SourceImage | MixInput):
        """Yields the source's records, or one tagged dead letter."""
        item = element if isinstance(element, MixInput) else MixInput(element)
        source = item.source
        data = source.data
        if source.error is not None:
            self._dead.inc()
            error = ValueError(f"not usable as listed: {source.error}")
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "read", source.error, error, None))
            return
        if data is None:
            try:
                with FileSystems.open(source.path) as f:
                    data = f.read()
            except Exception as e:
                if not unreadable(e):
                    raise  # passing trouble (throttling, credentials): the bundle fails and Beam retries it
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "read", "unreadable", e, None))
                return
        digest = hashlib.sha256(data).hexdigest()
        split = split_of(source.key, self._splits, self._split, self._input_splits, self._split_map)
        earlier_digest, earlier_label, earlier_sums = self._reuse.get(source.key, (None, None, None))
        if (earlier_digest, earlier_label) == (digest, source.label):
            # Its records are copied from the previous version; the split's statistics need its pixel sums, which
            # that version's manifest keeps (else, from versions before it did, the source is decoded again).
            sums = sums_dict(earlier_sums) if earlier_sums else self._sums(data)
            if sums is not None:  # else (bytes that no longer decode) it is expanded, and dead-lettered, below
                yield beam.pvalue.TaggedOutput(REUSED, (source.key, (source.label_name, _rgb(sums))))
                yield from self._source_outputs(source.key, digest, True, split, sums)
                return
        stats: list = []
        augment = (split == self._augment_split) or not (self._splits or self._input_splits or self._split_map)
        decoded: list | None = [] if self._zca and augment else None
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
                augment=augment,
                mix=Mixer(self._mix_spec, self._seed, item, self._partner_augment, self._resize, self._class_names)
                if self._mix_spec
                else None,
                tta=self._tta,
                pixels_out=decoded,
                gate=self._gate,
                gate_tally=tally,
            )
        except DecodeError as e:
            self._dead.inc()
            stage = getattr(e, "stage", "decode")
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, stage, e.reason, e, data))
            return
        self._images_ok.inc()
        self._copies_out.inc(len(records))
        for k, n in tally.items():
            self._gate_counters[k].inc(n)
        yield from records
        yield from self._source_outputs(source.key, digest, False, split, stats[0] if stats else None)
        if decoded:
            yield beam.pvalue.TaggedOutput(ZCA, decoded[0].tobytes())
