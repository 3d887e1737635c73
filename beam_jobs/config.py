"""The job's own settings: one frozen, validated config built from the CLI flags (or directly from Python)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from beam_jobs.errors import UserError
from beam_jobs.sinks.writers import FORMATS
from transforms.codec import ENCODINGS
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
    quality_gate: bool = True
    max_redraws: int = DEFAULT_MAX_REDRAWS
    max_fill_fraction: float = DEFAULT_MAX_FILL
    min_pixel_std: float = DEFAULT_MIN_STD

    def __post_init__(self):
        """Validates every field, naming the flag and the allowed values."""
        if self.copies < 0:
            raise UserError(f"--copies must be >= 0, got {self.copies}")
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
        if self.image_shape is not None and (len(self.image_shape) != 3 or self.image_shape[2] not in (1, 3)):
            raise UserError(f"--image-shape must be H,W,C with C 1 or 3, got {self.image_shape}")
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
        if self.dataset is None and self.source is None:
            raise UserError("give --dataset (e.g. shapes, flowers) or --source <folder|archive|URL>")

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
