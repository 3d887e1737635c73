"""The job's own settings: one frozen, validated config built from the CLI flags (or directly from Python)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from beam_jobs.errors import UserError
from beam_jobs.sinks.writers import FORMATS
from transforms.codec import ENCODINGS
from transforms.mix import PARTNER_MODES, MixSpec
from transforms.quality import DEFAULT_MAX_FILL, DEFAULT_MAX_REDRAWS, DEFAULT_MIN_STD

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class JobConfig:
    """Everything ``beam-expand run`` needs besides Beam's own pipeline options.

    Attributes:
        output: Output directory (any Beam filesystem).
        dataset: Named dataset (``shapes``, ``flowers``) or None.
        source: Folder, archive or URL; overrides the named dataset's download.
        sha256: Expected sha256 of a custom archive.
        name: Dataset name for shard files; default the dataset's or source folder's name.
        split: Split name written.
        copies: K augmented copies per image.
        include_original: Also write each unaugmented image as copy 0.
        seed: Job seed.
        policy: Policy config (``transforms.policies``).
        image_size: Optional (height, width) resize before augmenting.
        image_format: ``jpeg``, ``png`` or ``webp``.
        quality: JPEG/WebP quality.
        formats: Output formats.
        limit: Keep only N images (stable hash sample).
        classes: Keep only these classes.
        dry_run: List, estimate and stop.
        overwrite: Allow a non-empty output directory (its contents are replaced).
        max_shard_mb: Roll shard files over at this size.
        records_per_shard: Roll shard files over at this many records (whichever limit comes first).
        cache_dir: Download and generated-dataset cache.
        progress: Show a progress line on local runs.
        max_bad_fraction: Fail (publishing nothing) when dead letters / inputs exceed this fraction.
        refresh: Versioned outputs under ``output`` with a ``LATEST`` pointer (``beam_jobs.refresh``).
        incremental: With ``refresh``, expand only new or changed sources and reuse the rest.
        keep_versions: With ``refresh``, how many versions to keep.
        source_format: ``imagefolder``, ``list``, ``tfrecord``, ``parquet``, ``csv`` or ``tar`` (WebDataset);
            None detects it from the source.
        image_key: Feature (TFRecord) or column (Parquet) holding the encoded image.
        label_key: Feature or column holding the label.
        image_shape: (H, W, C) of CSV pixel rows.
        splits: ``((name, fraction), ...)`` assigning each source to a split by hashing its key; only the split
            named ``split`` is augmented, the others are written unaugmented.
        balance: Bring every class to the largest class's record count (``beam_jobs.balance``).
        target_per_class: Bring every class to this many records.
        copies_per_class: ``((class, K), ...)`` explicit K per class.
        mixup: MixUp's Beta alpha (``transforms.mix``); None for no MixUp.
        cutmix: CutMix's Beta alpha; None for no CutMix. With both, each mixed copy picks one (p=0.5).
        mix_fraction: Share of augmented copies that are mixed.
        mix_partners: ``any``, ``same-class`` or ``other-class``: whom a source may be mixed with.
        tta: Test-time views of every image outside the augmented split (``transforms.tta.parse_tta``), or None.
        zca: Also compute Keras's ZCA whitening matrix over the augmented split (needs one small image size).
        zca_epsilon: Keras's ``zca_epsilon``.
        quality_gate: Re-draw degenerate copies (``transforms.quality``).
        max_redraws: Re-draws per degenerate copy; a copy still degenerate after them is kept and flagged.
        max_fill_fraction: A copy with a larger share of fill pixels is degenerate.
        min_pixel_std: A copy with a smaller per-channel pixel std (grey levels) is degenerate.
    """

    output: str
    dataset: str | None = None
    source: str | None = None
    sha256: str | None = None
    name: str | None = None
    split: str = "train"
    copies: int = 5
    include_original: bool = False
    seed: int = 0
    policy: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    image_format: str = "jpeg"
    quality: int = 95
    formats: tuple[str, ...] = ("tfrecord", "parquet")
    limit: int | None = None
    classes: tuple[str, ...] | None = None
    dry_run: bool = False
    overwrite: bool = False
    max_shard_mb: int = 256
    records_per_shard: int | None = None
    cache_dir: str | None = None
    progress: bool = True
    max_bad_fraction: float | None = None
    refresh: bool = False
    incremental: bool = False
    keep_versions: int = 3
    source_format: str | None = None
    image_key: str = "image"
    label_key: str = "label"
    image_shape: tuple[int, int, int] | None = None
    splits: tuple[tuple[str, float], ...] | None = None
    balance: bool = False
    target_per_class: int | None = None
    copies_per_class: tuple[tuple[str, int], ...] | None = None
    mixup: float | None = None
    cutmix: float | None = None
    mix_fraction: float = 1.0
    mix_partners: str = "any"
    tta: dict[str, Any] | None = None
    zca: bool = False
    zca_epsilon: float = 1e-6
    quality_gate: bool = True
    max_redraws: int = DEFAULT_MAX_REDRAWS
    max_fill_fraction: float = DEFAULT_MAX_FILL
    min_pixel_std: float = DEFAULT_MIN_STD

    def __post_init__(self):
        """Validates every field, naming the flag and the allowed values."""
        if self.copies < 0:
            raise UserError(f"--copies must be >= 0, got {self.copies}")
        if "://" in self.output and not self.output.startswith("file://") and any(c in self.output for c in "*?["):
            # Beam's GCS filesystem deletes by pattern (even a single path is matched): the run's clean-up and
            # --overwrite would delete other folders' objects ("exp[1]" matches "exp1") and keep their own.
            raise UserError(
                f"--output {self.output}: an object-store output cannot hold '*', '?' or '[' (Beam deletes objects "
                "by pattern there); choose a folder name without them"
            )
        if self.copies == 0 and not self.include_original:
            raise UserError("--copies 0 writes nothing; use --copies >= 1 or add --include-original")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        if self.image_format not in ENCODINGS:
            raise UserError(f"--image-format must be one of {', '.join(ENCODINGS)}, got {self.image_format!r}")
        if not 1 <= self.quality <= 100:
            raise UserError(f"--quality must be in 1..100, got {self.quality}")
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise UserError(f"--formats must be a comma list of {', '.join(FORMATS)}, got {','.join(self.formats)}")
        if len(set(self.formats)) != len(self.formats):
            raise UserError(f"--formats lists a format twice: {','.join(self.formats)}")
        if not {"tfrecord", "parquet"} & set(self.formats):
            raise UserError(
                "--formats needs tfrecord or parquet (the verified dataset); webdataset and imagefolder "
                "are exports beside them"
            )
        if self.image_format == "webp" and "tfrecord" in self.formats:
            raise UserError("--image-format webp is not readable by TFDS: use it with --formats parquet only")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise UserError(f"--image-size must be H,W with positive integers, got {self.image_size}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.max_bad_fraction is not None and not 0 <= self.max_bad_fraction <= 1:
            raise UserError(f"--max-bad-fraction must be in [0, 1], got {self.max_bad_fraction}")
        from beam_jobs.sources.records import FORMATS as SOURCE_FORMATS

        if self.source_format is not None and self.source_format not in SOURCE_FORMATS:
            raise UserError(f"--source-format must be one of {', '.join(SOURCE_FORMATS)}, got {self.source_format!r}")
        if self.source_format == "csv" and not self.image_shape:
            raise UserError("--source-format csv (pixel rows) needs --image-shape H,W,C (e.g. 28,28,1)")
        if self.image_shape is not None and (
            len(self.image_shape) != 3 or min(self.image_shape[:2]) < 1 or self.image_shape[2] not in (1, 3, 4)
        ):
            raise UserError(
                f"--image-shape must be H,W,C with H and W >= 1 and C 1, 3 or 4 (grey, RGB, RGBA), "
                f"got {','.join(map(str, self.image_shape))}"
            )
        if self.splits is not None:
            names = [n for n, _ in self.splits]
            if len(set(names)) != len(names) or any(not _NAME.match(n) for n in names):
                raise UserError(f"--splits needs distinct split names matching {_NAME.pattern}, got {names}")
            if any(f <= 0 for _, f in self.splits) or abs(sum(f for _, f in self.splits) - 1) > 1e-6:
                raise UserError(f"--splits fractions must be > 0 and sum to 1, got {dict(self.splits)}")
            if self.split not in names:
                raise UserError(f"--splits must include the augmented split {self.split!r} (set with --split)")
        if sum([self.balance, self.target_per_class is not None, bool(self.copies_per_class)]) > 1:
            raise UserError("give one of --balance, --target-per-class, --copies-per-class")
        if self.target_per_class is not None and self.target_per_class < 1:
            raise UserError(f"--target-per-class must be >= 1, got {self.target_per_class}")
        if self.copies_per_class and any(k < 0 for _, k in self.copies_per_class):
            raise UserError("--copies-per-class needs class=K with K >= 0")
        if self.max_redraws < 0:
            raise UserError(f"--max-redraws must be >= 0, got {self.max_redraws}")
        if not 0 <= self.max_fill_fraction <= 1:
            raise UserError(f"--max-fill-fraction must be in [0, 1], got {self.max_fill_fraction}")
        if self.min_pixel_std < 0:
            raise UserError(f"--min-pixel-std must be >= 0, got {self.min_pixel_std}")
        if self.incremental and not self.refresh:
            raise UserError("--incremental works with --refresh (it reuses the current version's records)")
        if self.incremental and "parquet" not in self.formats:
            # Records are copied from the Parquet shards: without them every run re-expanded everything, silently.
            raise UserError(
                "--incremental copies unchanged images' records from the current version's Parquet shards: add "
                f"parquet to --formats (e.g. --formats {','.join([*self.formats, 'parquet'])}), or drop --incremental"
            )
        if self.keep_versions < 1:
            raise UserError(f"--keep-versions must be >= 1, got {self.keep_versions}")
        if self.records_per_shard is not None and self.records_per_shard < 1:
            raise UserError(f"--records-per-shard must be >= 1, got {self.records_per_shard}")
        if self.max_shard_mb < 1:
            raise UserError(f"--max-shard-mb must be >= 1, got {self.max_shard_mb}")
        if self.name is not None and not _NAME.match(self.name):
            raise UserError(f"--name must match {_NAME.pattern} (TFDS dataset names), got {self.name!r}")
        if not _NAME.match(self.split):
            raise UserError(f"--split must match {_NAME.pattern}, got {self.split!r}")
        self._check_mix()
        if self.dataset is None and self.source is None:
            raise UserError("give --dataset (e.g. shapes, flowers) or --source <folder|archive|URL>")
        if self.tta is not None:
            self._check_tta()
        if self.zca:
            self._check_zca()

    def _check_tta(self) -> None:
        from transforms.registry import PolicyError
        from transforms.tta import TTA

        try:
            tta = TTA.from_config(self.tta)
        except PolicyError as e:
            raise UserError(str(e)) from None
        size = self.image_size
        if isinstance(tta.crop, list) and size and (tta.crop[0] > size[0] or tta.crop[1] > size[1]):
            raise UserError(f"--tta-crop-size {tta.crop[0]},{tta.crop[1]} is larger than --image-size "
                            f"{self.image_size[0]},{self.image_size[1]}")  # fmt: skip
        if tta.flips and (self.policy.get("label_map") or {}).get("hflip"):
            raise UserError(
                f"--tta {tta.kind} writes flipped views, but the policy's label_map changes labels on hflip: a "
                "flipped view would need another label; use --tta five_crop or a policy without flips"
            )

    @property
    def zca_shape(self) -> tuple[int, int, int] | None:
        """(height, width, 3) of every decoded image when the size is fixed (``--image-size``, CSV pixel rows)."""
        side = self.image_size or (self.image_shape[:2] if self.image_shape else None)
        return (int(side[0]), int(side[1]), 3) if side else None

    def _check_zca(self) -> None:
        from beam_jobs.statistics import ZCA_MAX_FEATURES

        shape = self.zca_shape
        if shape is None:
            raise UserError("--zca needs images of one fixed size: add --image-size H,W (e.g. 32,32)")
        d = shape[0] * shape[1] * shape[2]
        if d > ZCA_MAX_FEATURES:
            raise UserError(
                f"--zca is for small images: {shape[0]}x{shape[1]}x3 = {d:,} values per image, at most "
                f"{ZCA_MAX_FEATURES:,} (32x32x3), because the ZCA matrix is values x values float64 "
                f"({d * d * 8 / 1e6:,.0f} MB here); add --image-size 32,32 or smaller"
            )
        if not self.zca_epsilon > 0:
            raise UserError(f"--zca-epsilon must be > 0, got {self.zca_epsilon}")
        if self.incremental:
            raise UserError("--zca needs every training image; --incremental skips unchanged ones")

    def _check_mix(self) -> None:
        for flag, alpha in (("--mixup", self.mixup), ("--cutmix", self.cutmix)):
            if alpha is not None and not (alpha > 0 and math.isfinite(alpha)):
                raise UserError(f"{flag} ALPHA must be > 0 (the Beta(alpha, alpha) of lambda; 0.2-1.0 is usual), "
                                f"got {alpha}")  # fmt: skip
        if not 0 < self.mix_fraction <= 1:
            raise UserError(f"--mix-fraction must be in (0, 1], got {self.mix_fraction}")
        if self.mix_partners not in PARTNER_MODES:
            raise UserError(f"--mix-partners must be one of {', '.join(PARTNER_MODES)}, got {self.mix_partners!r}")
        if self.mix is None:
            if self.mix_fraction != 1.0 or self.mix_partners != "any":
                raise UserError("--mix-fraction and --mix-partners need --mixup ALPHA and/or --cutmix ALPHA")
            return
        if self.copies == 0 and not (self.balance or self.target_per_class is not None or self.copies_per_class):
            raise UserError("--mixup/--cutmix mix augmented copies; --copies 0 writes none")
        if self.incremental:
            raise UserError("--incremental cannot be combined with --mixup/--cutmix: a mixed copy depends on its "
                            "partner, and partners are reassigned when the inputs change")  # fmt: skip

    @property
    def mix(self) -> MixSpec | None:
        """The MixUp/CutMix settings, or None when the run does not mix."""
        if self.mixup is None and self.cutmix is None:
            return None
        return MixSpec(self.mixup, self.cutmix, self.mix_fraction, self.mix_partners)

    def gate_config(self) -> dict[str, Any] | None:
        """Returns the quality gate's settings (``transforms.quality.QualityGate``), or None when it is off."""
        if not self.quality_gate:
            return None
        return {"max_redraws": self.max_redraws, "max_fill": self.max_fill_fraction, "min_std": self.min_pixel_std}

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a JSON-able dict (for the manifest)."""
        d = asdict(self)
        d["formats"] = list(self.formats)
        d["image_size"] = list(self.image_size) if self.image_size else None
        d["classes"] = list(self.classes) if self.classes else None
        d["image_shape"] = list(self.image_shape) if self.image_shape else None
        d["splits"] = [list(s) for s in self.splits] if self.splits else None
        d["copies_per_class"] = dict(self.copies_per_class) if self.copies_per_class else None
        return d


def dataset_name(raw: str) -> str:
    """Turns a folder or archive name into a valid TFDS-style dataset name (``Flower Photos`` -> ``flower_photos``)."""
    name = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = "ds_" + name
    return name
