"""Builds and runs the expansion pipeline; usable from Python as well as from the CLI.

From Python::

    from beam_jobs.config import JobConfig
    from beam_jobs.pipeline import run_job
    manifest = run_job(JobConfig(output="out/shapes", dataset="shapes", copies=3))

or embed the read -> expand -> write chain in your own pipeline with ``plan_job`` + ``build_pipeline``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import re
import shutil
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, WorkerOptions

from beam_jobs import balance, forked_workers, launcher_temp, mixing, refresh, staged, summary
from beam_jobs.config import JobConfig, dataset_name
from beam_jobs.errors import JobFailed, SourceReadError, UserError
from beam_jobs.packaging import is_local, worker_packaging_args
from beam_jobs.paths import delete_tree, files_under, is_bucket, is_dir, require_filesystem
from beam_jobs.paths import is_local as is_local_path
from beam_jobs.progress import ProgressMonitor
from beam_jobs.ptransforms import ExpandImages, ReadImages, ReadRecords, ReuseRecords, WriteDataset
from beam_jobs.sinks import refusal
from beam_jobs.sinks.finalize import DEAD_LETTERS
from beam_jobs.sinks.manifest import MANIFEST, InputRows, read_json
from beam_jobs.sinks.publish import STAGING, VerificationError, clean_stale
from beam_jobs.sources import records
from beam_jobs.sources.archive import list_archive
from beam_jobs.sources.datasets import URL_SCHEMES, ResolvedSource, default_cache_dir, resolve
from beam_jobs.sources.listing import Listing, list_folder, select
from schemas.record import RECIPE_SCHEMA_VERSION
from transforms.expand import DEAD_LETTER, STATS, split_of
from transforms.policies import Policy
from transforms.tta import TTA

LOCAL_RUNNER_NAME = "FnApiRunner (local, pinned by beam-expand)"
_PACKAGES = ("beam-expand", "apache-beam", "numpy", "pillow", "opencv-python-headless", "pyarrow", "protobuf")


@dataclass
class JobPlan:
    """Everything decided before the pipeline starts: what to read, the classes, the name, the manifest base."""

    config: JobConfig
    source: ResolvedSource
    listing: Listing
    archive_prefix: str = ""
    license_bytes: bytes | None = None
    name: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    root: str = ""
    split_map: dict[str, str] = field(default_factory=dict)
    copies_per_source: dict[str, int] = field(default_factory=dict)
    copy_plan: dict[str, dict[str, Any]] = field(default_factory=dict)
    mix_partners: dict[str, tuple[str | None, ...]] = field(default_factory=dict)

    def plan_copies(self) -> JobPlan:
        """Fills ``copies_per_source`` and ``copy_plan`` when a balancing option is set; returns self."""
        c = self.config
        if c.balance or c.target_per_class is not None or c.copies_per_class:
            per_class = dict(c.copies_per_class) if c.copies_per_class else None
            unknown = sorted(set(per_class or {}) - set(self.listing.class_names))
            if unknown:
                raise UserError(f"--copies-per-class names unknown class(es) {unknown}; the source has: "
                                f"{', '.join(self.listing.class_names)}")  # fmt: skip
            # Only the augmented split is balanced: evaluation splits keep their originals (and their class mix).
            augmented = [s for s in self.listing.images if self.augmented(s.key)]
            self.copies_per_source, self.copy_plan = balance.plan_copies(
                augmented, self.listing.class_names, c.copies, c.include_original, c.balance,
                c.target_per_class, per_class,
            )  # fmt: skip
        return self

    @property
    def input_splits(self) -> bool:
        """Sources of TFDS / HF inputs keep the split their shard names give, unless ``--splits`` reassigns them."""
        return self.source.kind in ("tfrecord", "parquet") and not self.config.splits

    def augmented(self, key: str) -> bool:
        """Whether a source is in the augmented split (the rule ``ExpandFn`` applies to each source)."""
        return self.split(key) == self.config.split

    def split(self, key: str) -> str:
        """The split of a source (the rule ``ExpandFn`` applies to each source)."""
        c = self.config
        return split_of(key, c.splits, c.split, self.input_splits, self.split_map or None)

    def plan_mix(self) -> JobPlan:
        """Fills ``mix_partners`` when MixUp/CutMix is on (``beam_jobs.mixing``); returns self."""
        c = self.config
        if c.mix is not None:
            copies = self.copies_per_source
            self.mix_partners = mixing.plan_partners(
                self.listing.images, c.seed, c.mix, lambda k: copies.get(k, c.copies), self.augmented
            )
        return self

    def check_tta(self) -> JobPlan:
        """Checks that ``--tta`` has evaluation images to work on; returns self.

        Raises:
            UserError: Every source is in the augmented split.
        """
        c = self.config
        if c.tta is None:
            return self
        splits = {self.split(s.key) for s in self.listing.images if s.error is None}
        if not splits - {c.split}:
            raise UserError(
                f"--tta writes test-time views of evaluation images, but every source of this run is in the "
                f"augmented split {c.split!r}: add --splits {c.split}=0.8,validation=0.2 (or read an input that "
                "has validation/test splits)"
            )
        return self

    @property
    def records_per_image(self) -> int:
        """Records written per good source image of the augmented split (without a class-balancing plan)."""
        return self.config.copies + int(self.config.include_original)

    @property
    def tta_views(self) -> int:
        """Test-time views written per evaluation image (0 without ``--tta``)."""
        return TTA.from_config(self.config.tta).num_views if self.config.tta else 0

    def planned_records(self) -> dict[str, dict[str, dict[str, int]]]:
        """Records each source will give, as ``ExpandFn`` decides them, summed per split and class.

        An augmented source gives its K (the balancing plan's, else ``--copies``) plus its original if included;
        any other split's source gives its original and its test-time views. Sources the listing already knows to
        be bad give none (they become dead letters). Returns ``{split: {class: {"images", "records", "bytes"}}}``,
        where bytes are the source's size times its records (a rough guide to the output's size). Records are
        counted under their source's class: a mix or a label map gives some copies another class in the run.
        """
        c, views = self.config, self.tta_views
        out: dict[str, dict[str, dict[str, int]]] = {}
        for s in self.listing.images:
            split = self.split(s.key)
            if s.error is not None:
                records = 0
            elif split == c.split:
                records = self.copies_per_source.get(s.key, c.copies) + int(c.include_original)
            else:
                records = 1 + views
            row = out.setdefault(split, {}).setdefault(s.label_name, {"images": 0, "records": 0, "bytes": 0})
            row["images"] += 1
            row["records"] += records
            row["bytes"] += records * self.listing.sizes.get(s.key, 0)
        return out

    def dry_run(self) -> dict[str, Any]:
        """Returns the facts ``--dry-run`` prints."""
        planned = self.planned_records()
        c = self.config
        return {
            "source": self.source.path,
            "kind": self.source.kind,
            "classes": self.listing.class_names,
            "planned": planned,
            "augment_split": c.split,
            "tta_views": self.tta_views,
            "moves_labels": c.mix is not None or bool(Policy.from_config(self.policy).label_map),
            "ignored": len(self.listing.ignored),
            "skipped": len(self.listing.skipped),
            "records_per_image": self.records_per_image,
            "balanced": bool(self.copies_per_source),
            "estimated_bytes": sum(row["bytes"] for split in planned.values() for row in split.values()),
            "formats": list(self.config.formats),
            "policy": self.policy,
        }

    def manifest_base(self, argv: list[str] | None) -> dict[str, Any]:
        """Returns the launcher's part of ``beam_expand.json``; the finalize step adds counts and shards."""
        return {
            "name": self.name,
            "split": self.config.split,
            "augment_split": self.config.split,
            "splits": [list(x) for x in self.config.splits] if self.config.splits else None,
            "description": self.source.description,
            "recipe_schema_version": RECIPE_SCHEMA_VERSION,
            "class_names": self.listing.class_names,
            "seed": self.config.seed,
            "copies": self.config.copies,
            "include_original": self.config.include_original,
            "policy": self.policy,
            "config": self.config.to_dict(),
            "command": argv,
            "source": {"kind": self.source.kind, "path": self.source.path, "archive_prefix": self.archive_prefix},
            "packages": package_versions(),
            "listing": {
                "per_class": self.listing.per_class(),
                "ignored": self.listing.ignored,
                "skipped": self.listing.skipped,
                "problems": self.listing.problems,
                "images": self.input_rows(),
            },
            "fingerprints": self.fingerprints(),
            "copy_plan": self.copy_plan or None,
            "copies_per_source": self.copies_per_source or None,
            "mix": self.config.mix.to_config() if self.config.mix else None,
            "tta": TTA.from_config(self.config.tta).describe() if self.config.tta else None,
            "quality_gate": self.config.gate_config(),
        }

    def input_rows(self) -> InputRows:
        """The selected inputs as the manifest's rows (key, label, size, modification time), held compactly."""
        return InputRows(self._input_tuples())

    def _input_tuples(self):
        sizes, mtimes = self.listing.sizes, self.listing.mtimes
        return ((s.key, s.label, sizes.get(s.key), mtimes.get(s.key)) for s in self.listing.images)

    def _file_tuples(self):
        # Record sources list their records by position in a file, with no size or time of their own: the files'
        # sizes and times stand for their content (a rewritten shard with the same labels is new input).
        for path in sorted(self.files):
            meta = FileSystems.get_filesystem(path).metadata(path)  # one request per file on an object store
            yield (path[len(self.root) :] if path.startswith(self.root) else path, None, meta.size_in_bytes,
                   meta.last_updated_in_seconds)  # fmt: skip

    def fingerprints(self) -> dict[str, str]:
        """Returns the config and inputs fingerprints (refresh mode compares them with the current version's)."""
        return {
            "config": refresh.config_fingerprint(
                self.config.to_dict(), self.listing.class_names, package_versions(), output_versions()
            ),
            "inputs": refresh.inputs_fingerprint(itertools.chain(self._input_tuples(), self._file_tuples())),
        }


def package_versions() -> dict[str, str]:
    """Returns the versions of the packages that determine the output bytes."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def output_versions() -> dict[str, Any]:
    """Returns the versions of this code's steps that determine the output bytes (for the refresh fingerprint).

    beam-expand's package version does not change when an op's pixels do (the op's ``version`` is bumped then), nor
    when decoding, encoding, the quality gate or mixing change: an incremental refresh across such a change would
    reuse records the new code would not write. Every registered op counts, not only the policy's: composites,
    per-class rules, test-time views and resizing use ops too, and a version bumped once re-expands once.
    """
    from transforms import codec, mix, quality
    from transforms.registry import registered

    return {
        "ops": {name: op.version for name, op in sorted(registered().items())},
        "decode": codec.DECODE_VERSION,
        "encode": codec.encode_step("png", 0)["version"],
        "quality_gate": quality.GATE_VERSION,
        "mix": mix.MIX_VERSION,
        "recipe_schema": RECIPE_SCHEMA_VERSION,
    }


def plan_job(config: JobConfig) -> JobPlan:
    """Resolves the source, lists and selects its images and fixes the policy (no pipeline yet).

    Raises:
        UserError: Anything the user must fix (missing dataset, unreachable URL, unknown class, bad policy).
    """
    cache_dir = config.cache_dir or default_cache_dir()
    fmt = config.source_format or (records.detect_format(config.source) if config.source else "imagefolder")
    if config.source and fmt not in ("imagefolder",) and not (fmt == "tar" and config.source_format is None):
        return _plan_records(config, fmt)
    source = resolve(config.dataset, config.source, config.sha256, cache_dir)
    prefix, license_bytes, split_map = "", None, {}
    if source.kind == "archive" and source.labels != "folders":
        from beam_jobs.sources.oxford import list_oxford

        listing, prefix, split_map = list_oxford(source.path, source.labels, source.extras or {})
    elif source.kind == "archive":
        listing, prefix, license_bytes = list_archive(source.path)
    else:
        listing = list_folder(source.path)
        if source.license_path:
            with FileSystems.open(source.license_path) as f:
                license_bytes = f.read()
    listing = select(listing, list(config.classes) if config.classes else None, config.limit)
    # Validated again here for configs built in Python; per-class rules must name classes that exist.
    Policy.from_config(config.policy).check_classes(listing.class_names)
    name = config.name or dataset_name(source.name)
    plan = JobPlan(config, source, listing, prefix, license_bytes, name, config.policy)
    plan.split_map = {k: v for k, v in split_map.items() if not config.splits}
    return plan.plan_copies().plan_mix().check_tta()


def staging_dir(output: str, run_id: str) -> str:
    """Returns where a run writes before it publishes: a sibling of the output."""
    return f"{output.rstrip('/')}{STAGING}{run_id}"


def _stat_listed_images(listing: Listing) -> dict[str, str]:
    """Fills the sizes and modification times of the local images a list file names (for refresh and --dry-run).

    On an object store that would cost one request per image before the run, so there they stay unknown: a
    changed image under an unchanged path and label is then found only by a run that reads it.

    Returns the key and path of each local image that is no file (gone, a folder): the run dead-letters it
    ``unreadable``, and a list file naming nothing else is refused before the run.
    """
    missing = {}
    for s in listing.images:
        if s.error is None and s.path and is_local_path(s.path):
            try:
                info = os.stat(s.path)
            except OSError:
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):
                missing[s.key] = s.path  # the run dead-letters it
                continue
            listing.sizes[s.key], listing.mtimes[s.key] = info.st_size, info.st_mtime
    return missing


def _nothing_usable(config: JobConfig, fmt: str, files: list[str], listing: Listing, missing: dict[str, str]) -> str:
    """Says why a record source has no usable record: the dead letters' reasons, and for a list file examples."""
    reasons = collections.Counter("unreadable" if s.key in missing else s.error for s in listing.images).most_common()
    found = f"all {len(listing.images)} would be dead letters (" if listing.images else "none found ("
    text = (
        f"no usable {fmt} records in {config.source}: {found}"
        + (", ".join(f"{n} {r}" for r, n in reasons) or f"{len(files)} file(s) without records")
        + ")"
    )
    if fmt != "list":
        return text + "; check --source-format, --image-key, --label-key, --image-shape, --classes and --limit"
    # A list file's paths are where it goes wrong most often (written relative to another folder): show two.
    examples = [f"{k} (no file at {path})" for k, path in itertools.islice(missing.items(), 2)]
    examples += [f"{s.key} ({s.error})" for s in listing.images if s.error][: 2 - len(examples)]
    text += f", e.g. {', '.join(examples)}" if examples else ""
    if not missing:
        return text + "; check the list's rows, --label-key (JSONL), --classes and --limit"
    folder = records.list_file_folder(config.source)
    folder = os.path.abspath(folder) if is_local_path(folder) else folder
    return text + (
        f"; listed paths are relative to the list file's folder {folder} (absolute paths and URLs are read as "
        "they are): fix the paths, or put the list file in the folder they start from"
    )


def _plan_records(config: JobConfig, fmt: str) -> JobPlan:
    """Plans a run over record files (TFRecord, Parquet, CSV pixel rows, WebDataset tars, list files)."""
    opts = records.RecordOptions(config.image_key, config.label_key, config.image_shape)
    if fmt == "csv" and not config.image_shape:  # detected from the suffix: JobConfig only checks an explicit format
        raise UserError(
            f"{config.source} is read as CSV pixel rows (label,pixel1,...,pixelN), which needs --image-shape H,W,C "
            "(e.g. 28,28,1); for a CSV of path,label add --source-format list"
        )
    if fmt == "list" and is_dir(config.source):
        raise UserError(
            f"--source-format list needs a CSV or JSONL file (path,label per line), got the folder {config.source}: "
            "give the list file itself, or drop --source-format for a folder of class folders"
        )
    files, root = records.record_files(config.source, fmt)
    names = None
    if fmt == "tfrecord":
        names = records.tfds_class_names(config.source)
    elif fmt == "parquet":
        names = records.parquet_shards_class_names(files, config.label_key)
    listing = records.list_records(fmt, files, root, opts, names)
    listing = select(listing, list(config.classes) if config.classes else None, config.limit)
    # A local list file's images are looked at now (for refresh and --dry-run): those not there count as dead.
    missing = _stat_listed_images(listing) if fmt == "list" else {}
    if not any(s.error is None and s.key not in missing for s in listing.images):
        # As an image folder with no image is refused: an empty dataset is no result (a wrong column, key or shape,
        # or a list file whose paths lead nowhere).
        raise UserError(_nothing_usable(config, fmt, files, listing, missing))
    Policy.from_config(config.policy).check_classes(listing.class_names)
    base = config.source.rstrip("/").rsplit("/", 1)[-1].split("*")[0] or "records"
    source = ResolvedSource(fmt, config.source, base, f"Expanded from {base} ({fmt}).")
    name = config.name or dataset_name(base.split(".")[0])
    return (
        JobPlan(config, source, listing, "", None, name, config.policy, files, root)
        .plan_copies()
        .plan_mix()
        .check_tta()
    )


def build_pipeline(
    p: beam.Pipeline,
    plan: JobPlan,
    run_id: str | None = None,
    progress_dir: str | None = None,
    argv=None,
    reuse: dict[str, tuple] | None = None,
    reuse_from: list[str] | None = None,
    refused: str | None = None,
    report_refusal: bool = False,
):
    """Adds read -> expand -> write (staged, verified, published) to ``p``; returns the manifest PCollection.

    With ``reuse`` (key -> (sha256, label, pixel sums)) and ``reuse_from`` (a previous version's Parquet shards),
    sources whose bytes and label are unchanged are not expanded again: their records are copied from those shards.

    A run whose every input, or more than ``--max-bad-fraction`` of them, was dead-lettered publishes nothing and
    keeps its dead letters in ``refused`` (default ``<output>.refused/``). It fails the pipeline with
    ``BadFractionError``, or with ``report_refusal`` ends it without an error and leaves the message for
    ``refusal.read_verdict(staging_dir(output, run_id))`` (what ``run_job`` does: see ``FinalizeFn``).

    Writes the per-input plan to ``<output>.staging-<run_id>/.tmp/plan/`` (``beam_jobs.staged``); the run removes
    it, and a pipeline built but never run leaves it for the next run's ``clean_stale``.
    """
    c = plan.config
    run_id = run_id or uuid.uuid4().hex[:12]
    input_splits = plan.input_splits
    staging = staging_dir(c.output, run_id)
    temp_dir = FileSystems.join(staging, ".tmp")
    # What holds an entry per input goes to files the workers read (beam_jobs.staged), not into the pipeline: its
    # size would grow with the dataset, and Dataflow and Flink refuse large job graphs. Removed with .tmp.
    stage_dir = FileSystems.join(temp_dir, "plan")

    def stage(name: str, value):
        return staged.Staged.write(stage_dir, name, value) if value else None

    split_map = stage("split_map", plan.split_map)
    split_args = {"splits": c.splits, "split": c.split, "augment_split": c.split, "input_splits": input_splits,
                  "split_map": split_map}  # fmt: skip
    if plan.source.kind in ("folder", "archive", "list"):
        sources = p | "ReadImages" >> ReadImages(
            "folder" if plan.source.kind == "list" else plan.source.kind,
            plan.listing.images,
            plan.source.path,
            plan.archive_prefix,
            stage_dir,
        )
    else:
        opts = records.RecordOptions(c.image_key, c.label_key, c.image_shape)
        read = ReadRecords(plan.source.kind, plan.files, plan.root, opts, plan.listing.images, stage_dir)
        sources = p | "ReadRecords" >> read
    outputs = sources | "ExpandImages" >> ExpandImages(
        policy_config=plan.policy,
        copies=c.copies,
        seed=c.seed,
        include_original=c.include_original,
        image_size=tuple(c.image_size) if c.image_size else None,
        image_format=c.image_format,
        quality=c.quality,
        class_names=plan.listing.class_names,
        reuse=stage("reuse", reuse),
        copies_per_source=stage("copies_per_source", plan.copies_per_source),
        mix=c.mix.to_config() if c.mix else None,
        mix_partners=stage("mix_partners", plan.mix_partners),
        tta=c.tta,
        zca=c.zca,
        quality_gate=c.gate_config(),
        **split_args,
    )
    expanded, dead, stats = outputs.records, outputs.dead_letter, outputs.stats
    if reuse and reuse_from:
        reused = outputs.reused | "ReuseRecords" >> ReuseRecords(
            reuse_from, (c.splits, c.split, input_splits, split_map)
        )
        expanded = (expanded, reused.records) | "AllRecords" >> beam.Flatten()
        dead = (dead, reused[DEAD_LETTER]) | "AllDeadLetters" >> beam.Flatten()
        stats = (stats, reused[STATS]) | "AllPixelSums" >> beam.Flatten()  # of the reused sources found with records
    streams = {"records": expanded, "dead_letter": dead, "source_info": outputs.source_info,
               "stats": stats, "zca": outputs.zca}  # fmt: skip
    return streams | "WriteDataset" >> WriteDataset(
        write_args={
            "temp_dir": temp_dir,
            "formats": c.formats,
            "class_names": plan.listing.class_names,
            "max_shard_bytes": c.max_shard_mb * 1024 * 1024,
            "max_shard_records": c.records_per_shard,
            "progress_dir": progress_dir,
            "mixed": c.mix is not None,
        },
        finalize_args={
            "output": c.output,
            "staging": staging,
            "temp_dir": temp_dir,
            "run_id": run_id,
            "max_bad_fraction": c.max_bad_fraction,
            "images_in": len(plan.listing.images),
            "name": plan.name,
            "splits": [n for n, _ in c.splits]
            if c.splits
            else [s for s in ("train", "validation", "test") if s in set(plan.split_map.values())] or [c.split],
            "formats": c.formats,
            "class_names": plan.listing.class_names,
            "image_format": c.image_format,
            "manifest": stage("manifest", plan.manifest_base(argv)),
            "license_bytes": plan.license_bytes,
            "mixed": c.mix is not None,
            "zca": {"shape": list(c.zca_shape), "epsilon": c.zca_epsilon} if c.zca else None,
            "refused": refused,
            "report_refusal": report_refusal,
        },
    )


_OUR_FILES = re.compile(
    r"^(README\.md|.+\.(tfrecord|parquet)-\d{5}-of-\d{5}|.+-\d{5}-of-\d{5}\.tar|dataset_info\.json|features\.json|label(_b)?\.labels\.txt|"
    r"beam_expand\.json|dead_letter\.jsonl|LICENSE\.txt|_SUCCESS|images|data|statistics\.json|zca\.npz|report\.html|report)$"
)


def prepare_output(output: str, overwrite: bool) -> None:
    """Refuses a non-empty output unless ``overwrite``, and any output holding files beam-expand did not write.

    Nothing is deleted here: the previous dataset stays readable until the new one is verified and published.

    Raises:
        UserError: The directory is not empty (without ``--overwrite``) or holds files beam-expand did not write,
            or it is a bucket itself (the run stages beside its output).
    """
    if is_bucket(output):
        raise UserError(f"--output {output} is a whole bucket: give a folder in it, e.g. {output.rstrip('/')}/expanded")
    metas = files_under(output)  # none when it does not exist
    rel = [m.path[len(output.rstrip("/")) :].lstrip("/") for m in metas]
    if not rel:
        return
    if not overwrite:
        raise UserError(f"--output {output} is not empty; pass --overwrite (OVERWRITE via ARGS) or another --output")
    foreign = [r for r in rel if not _OUR_FILES.match(r.split("/")[0])]
    if foreign:
        raise UserError(
            f"--output {output} holds files beam-expand did not write (e.g. {foreign[0]}); "
            "refusing to overwrite it: choose an empty or new directory"
        )


def make_pipeline_options(
    pipeline_args: list[str], fork_workers: bool = False
) -> tuple[PipelineOptions, Any, str, int]:
    """Returns Beam options, the runner to use, its display name and how many workers to fork (``ForkedWorkers``).

    With no ``--runner``, the job pins the FnApiRunner (Beam 2.77's DirectRunner first tries to download a
    Prism binary, which fails offline); any ``--runner`` given is passed to Beam untouched. With ``fork_workers``,
    multi-process workers are started by ``beam_jobs.forked_workers``'s relay (forked by ``_run_once``).
    """
    options = PipelineOptions(pipeline_args)
    runner_name = options.view_as(StandardOptions).runner
    if runner_name is not None:
        return options, None, runner_name, 0
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    worker = options.view_as(WorkerOptions)
    if worker.default_sdk_harness_log_level is None:
        # Local workers log at INFO by default, dozens of lines per run over the progress line; like the command,
        # they show errors only unless asked (--default_sdk_harness_log_level=INFO).
        worker.default_sdk_harness_log_level = "ERROR"
    direct = options.view_as(DirectOptions)
    workers, mode = direct.direct_num_workers, direct.direct_running_mode
    name = LOCAL_RUNNER_NAME + (f", {workers} workers ({mode})" if workers and workers != 1 else "")
    forks = forked_worker_count(options) if fork_workers else 0
    environment, forks = None, forks if forks and forked_workers.can_fork(forks) else 0
    if forks:
        # FnApiRunner replaces its environment in multi_processing mode; in "in_memory" mode with several workers
        # it keeps the one given, and runs one worker process of it per worker all the same.
        direct.direct_running_mode = "in_memory"
        environment = SubprocessSDKEnvironment.from_command_string(forked_workers.COMMAND)
        name += ", forked"
    # As SwitchingDirectRunner does: hand the options to the workers (needed by multi-process workers).
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return options, fn_runner.FnApiRunner(default_environment=environment, provision_info=info), name, forks


def forked_worker_count(options: PipelineOptions) -> int:
    """Worker processes to fork for a local multi-process run (0: none; ``--direct_num_workers=0`` is one per core)."""
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return 0
    workers = direct.direct_num_workers
    if workers == 0:  # FnApiRunner's "one per core"
        workers = os.cpu_count() or 1
    return workers if workers and workers > 1 else 0


def run_job(
    config: JobConfig,
    pipeline_args: list[str] | None = None,
    argv: list[str] | None = None,
    out=None,
    listing_rows: bool = True,
    fork_workers: bool = False,
) -> dict[str, Any] | None:
    """Runs the whole job: plan, (dry run or) pipeline, summary.

    Args:
        config: The job config.
        pipeline_args: Beam pipeline options, e.g. ``["--direct_num_workers=2"]``.
        argv: The command line, recorded in the manifest.
        out: Where to print the plan and summary (stdout).
        listing_rows: Whether the returned manifest keeps ``listing.images``, one row per input (the CLI returns
            nothing, so it leaves them in the file: at a million inputs they are hundreds of MB as Python objects).
        fork_workers: Whether local multi-process workers are forked from this process rather than started afresh
            (``beam_jobs.forked_workers``; only for a fresh command-line process, which the CLI is).

    Returns:
        The manifest written to ``beam_expand.json``, or None for a dry run.

    Raises:
        UserError: Problems the user can fix, raised before the pipeline starts.
    """
    out = out or sys.stdout
    _require_filesystems(config)
    plan = plan_job(config)
    if plan.copy_plan:
        print(balance.plan_text(plan.copy_plan), file=out)
    if config.mix is not None:
        planned = sum(p is not None for partners in plan.mix_partners.values() for p in partners)
        print(f"mixing: {config.mix.text()}; {planned:,} copies planned with a partner", file=out)
    if config.dry_run:
        print(summary.dry_run_text(plan.dry_run()), file=out)
        return None
    run = _run_refresh if config.refresh else _run_once
    path, manifest = run(plan, pipeline_args, argv, out, fork_workers=fork_workers)
    return read_json(path) if listing_rows else manifest


def _require_filesystems(config: JobConfig) -> None:
    """Refuses a ``--source`` or ``--output`` on a store this installation has no Beam filesystem for.

    Raises:
        UserError: Saying what to install (``gs://`` without the gcp extra was a traceback from Beam).
    """
    if config.source and not config.source.startswith(URL_SCHEMES):  # downloaded, not read through Beam
        require_filesystem(config.source, "--source")
    # A refresh root is checked by refresh.read_latest, which first refuses stores without an atomic pointer swap
    # (nothing to install would help there).
    if config.output and not (config.dry_run or config.refresh):
        require_filesystem(config.output, "--output")


def _run_refresh(plan: JobPlan, pipeline_args, argv, out, fork_workers=False) -> tuple[str, dict[str, Any]]:
    """Publishes a new version under ``output/versions`` and swaps ``LATEST`` (see ``beam_jobs.refresh``).

    A damaged current version is never copied from, nor kept as up to date: the run says so and expands every
    source afresh, so that a scheduled refresh heals the dataset rather than failing the same way every night.

    Returns the path of the current version's manifest and that manifest without its per-input rows.
    """
    root = plan.config.output
    current, token = refresh.read_latest(root)
    _clean_abandoned(root, out)
    previous = _previous_manifest(root, current, out)
    fingerprints = plan.fingerprints()
    if previous and previous.get("fingerprints") == fingerprints:
        stale = refresh.stale_reason(root, current, previous)
        if stale is None:
            return _up_to_date(plan, root, current, previous, out)
        print(f"beam-expand: version {current} has the same inputs and config, but {stale}: publishing a new "
              "version", file=out)  # fmt: skip
    version = refresh.new_version(refresh._digest(fingerprints))
    reuse, reuse_from = None, None
    if plan.config.incremental and previous and previous["fingerprints"]["config"] == fingerprints["config"]:
        reuse, reuse_from = _reuse_plan(plan, root, current, previous, out)
    target = refresh.version_dir(root, version)
    plan.config = dataclasses.replace(plan.config, output=target, overwrite=False)
    refused = refusal.refused_dir(root, refresh=True)  # in the root: a refused run has no version
    try:
        path, manifest = _run_once(plan, pipeline_args, argv, out, reuse=reuse, reuse_from=reuse_from,
                                   fork_workers=fork_workers, refused=refused)  # fmt: skip
    except JobFailed as e:  # a scheduled job's log should say what readers still get
        raise JobFailed(f"{e}; LATEST stays at version {current}" if current else str(e)) from None
    try:
        refresh.swap_latest(root, version, token)
    except JobFailed:
        delete_tree(target)
        raise
    pruned = refresh.prune(root, plan.config.keep_versions, {version})
    reused = len(manifest.get("reused_sources", []))
    note = f" ({reused} unchanged sources reused from {current})" if reuse else ""
    note += f"; pruned {len(pruned)} old version(s)" if pruned else ""
    print(f"beam-expand: LATEST -> {version}{note}", file=out)
    return path, manifest


def _clean_abandoned(root: str, out) -> None:
    """Removes killed refreshes' staging folders, of every version, and says so (``refresh.clean_abandoned``).

    At every run's start, an up-to-date one's too: a scheduled job may publish nothing for weeks.
    """
    removed = refresh.clean_abandoned(root)
    if removed:
        names = ", ".join(path.rstrip("/").rsplit("/", 1)[-1] for path in removed[:3])
        print(f"beam-expand: removed {len(removed)} abandoned staging folder(s) of killed runs ({names}"
              f"{', ...' if len(removed) > 3 else ''})", file=out)  # fmt: skip


def _afresh(out, why: str) -> None:
    print(f"beam-expand: {why}: expanding every source afresh", file=out)


def _previous_manifest(root: str, current: str | None, out) -> dict[str, Any] | None:
    """The current version's manifest, or None when there is none or it is unreadable (said: nothing is reused)."""
    if not current:
        return None
    try:
        return refresh.read_manifest(root, current)
    except refresh.DamagedVersion as e:
        _afresh(out, f"version {current}'s {e}")
        return None


def _up_to_date(plan: JobPlan, root: str, current: str, previous: dict[str, Any], out):
    """Says that nothing is published, or fails as a run over the same inputs would (``_refuse_current``).

    Only for a whole current version (``refresh.stale_reason`` found nothing to heal). Returns ``_run_refresh``'s
    result: the current version's manifest path and manifest.
    """
    _refuse_current(plan, root, current, previous)
    print(f"beam-expand: {root} is up to date (version {current}: same inputs and config); nothing published",
          file=out)  # fmt: skip
    return refresh.manifest_path(root, current), previous


def _refuse_current(plan: JobPlan, root: str, current: str, previous: dict[str, Any]) -> None:
    """Fails an up-to-date refresh as its run would fail over the current version's counts (or returns).

    ``--max-bad-fraction`` is no part of the fingerprint (it changes no record), but a run asked for it fails over
    the same inputs whether or not it publishes anything; so does one over a version whose every input was
    dead-lettered (published before such runs were refused).

    Raises:
        JobFailed: The current version's dead letters would refuse a run over the same inputs.
    """
    counts = previous["counts"]
    refused = refusal.verdict(counts["images_in"], counts["dead_letters"], plan.config.max_bad_fraction)
    if refused is None:
        return
    where = FileSystems.join(refresh.version_dir(root, current), DEAD_LETTERS)
    # Streamed (``refresh.stale_reason`` has just read the file through whole: it is no DamagedVersion here).
    text = refusal.message(refused, refresh.read_dead_letters(root, current, previous), where)
    raise JobFailed(f"{root} is up to date (version {current}), but {text}")


def _reuse_plan(plan: JobPlan, root: str, current: str, previous: dict[str, Any], out):
    """``(reuse, reuse_from)`` for an incremental run over a version of the same config, or ``(None, None)``.

    The version's Parquet shards are read through against its manifest's sha256 first (``refresh.altered_shards``):
    records copied from a damaged shard would be published, and verified, as new. Once per run that publishes; here,
    and not in the reuse step, because a damaged version can then still turn into a full re-expansion.
    """
    if "parquet" not in previous.get("shards", {}):
        return None, None
    damaged = refresh.damaged_shards(root, current, previous) or refresh.altered_shards(root, current, previous)
    if damaged:
        _afresh(out, f"version {current} has {len(damaged)} missing or altered Parquet shard(s) "
                     f"({', '.join(damaged[:3])}{', ...' if len(damaged) > 3 else ''})")  # fmt: skip
        return None, None
    try:
        reuse = refresh.reusable_sources(root, current, previous, plan.copies_per_source)
    except refresh.DamagedVersion as e:
        _afresh(out, f"version {current}'s {e}")
        return None, None
    shards = previous["shards"]["parquet"]
    return reuse, [FileSystems.join(refresh.version_dir(root, current), s["file"]) for s in shards]


def _records_text(plan: JobPlan) -> str:
    images, c = len(plan.listing.images), plan.config
    if not (plan.copies_per_source or c.splits or plan.input_splits or plan.split_map):
        return f"{images:,} images x {plan.records_per_image} records each"
    planned = sum(row["records"] for split in plan.planned_records().values() for row in split.values())
    how = "K per source from the balancing plan" if plan.copies_per_source else f"K={c.copies} in {c.split}"
    return f"{images:,} images -> {planned:,} records ({how})"


def _tta_text(tta: dict | None) -> str:
    if not tta:
        return ""
    t = TTA.from_config(tta)
    return f" (evaluation images: {1 + t.num_views} test-time views each, --tta {t.kind})"


def _run_once(
    plan: JobPlan, pipeline_args, argv, out, reuse=None, reuse_from=None, fork_workers=False, refused=None
) -> tuple[str, dict[str, Any]]:
    """Runs the pipeline once into ``plan.config.output`` and prints its summary.

    A refused run (its dead letters kept in ``refused``, by default ``<output>.refused/``) raises ``JobFailed``.

    Returns the manifest's path and the manifest without its per-input rows (read once, for the summary).

    Raises:
        JobFailed: The result was refused for its dead letters, or a written shard failed verification.
    """
    config = plan.config
    prepare_output(config.output, config.overwrite)
    args = worker_packaging_args(list(pipeline_args or []))
    options, runner, runner_name, forks = make_pipeline_options(args, fork_workers)
    # Progress files live on this machine's disk: only workers on this machine can write them.
    local = runner is not None or is_local(options)
    print(f"beam-expand: {_records_text(plan)}{_tta_text(config.tta)} -> {config.output} (runner: {runner_name})",
          file=out)  # fmt: skip
    print("policy:\n" + summary.policy_text(plan.policy), file=out)
    clean_stale(config.output)
    run_id = uuid.uuid4().hex[:12]
    staging = staging_dir(config.output, run_id)
    progress_dir = launcher_temp.make("beam-expand-progress-") if (local and config.progress) else None
    start = time.monotonic()
    try:
        p = beam.Pipeline(runner=runner, options=options)
        build_pipeline(p, plan, run_id, progress_dir, argv, reuse=reuse, reuse_from=reuse_from, refused=refused,
                       report_refusal=True)  # fmt: skip
        images = len(plan.listing.images)
        # The staged plan holds the inputs packed now: free the launcher's objects for them (~400 bytes per input).
        plan.listing = dataclasses.replace(plan.listing, images=[], sizes={}, mtimes={})
        # Forked now: everything the workers run is imported, and no thread exists yet (the progress monitor's).
        with _quiet_read_errors(), forked_workers.ForkedWorkers(forks):
            if progress_dir:
                with ProgressMonitor(progress_dir, images):
                    p.run().wait_until_finish()
            else:
                p.run().wait_until_finish()
    except Exception as e:
        delete_tree(staging)  # a failed run leaves nothing behind; killed ones: clean_stale
        if (message := _worker_error(e, VerificationError)) is not None:
            raise JobFailed(f"a written shard failed verification: {message}; nothing was published") from None
        if (message := _worker_error(e, SourceReadError)) is not None:  # the CLI's one line, as in the launcher
            raise SourceReadError(message) from None
        raise
    finally:
        staged.forget(staging)  # what an in-process runner read of this run's plan
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    _raise_if_refused(staging)
    wall = time.monotonic() - start
    path = FileSystems.join(config.output, MANIFEST)
    manifest = read_json(path, rows=False)
    print(summary.run_summary_text(manifest, wall, runner_name, config.output), file=out)
    return path, manifest


class _DropReadErrors(logging.Filter):
    """Drops Beam's record of a step that failed with a ``SourceReadError`` (its message and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record of a ``SourceReadError``."""
        return not (record.exc_info and isinstance(record.exc_info[1], SourceReadError))


@contextlib.contextmanager
def _quiet_read_errors():
    """Keeps Beam from logging a failed read's traceback at ERROR while the pipeline runs here.

    The run ends with the read's message as the command's one line (``_run_once``); the traceback says nothing
    more (the message names the file and the storage's error). Forked workers inherit the filter. Beam's other
    logs of the failed bundle (a worker process prints it, and its harness logs it) stay: they log every error.
    """
    logger, quiet = logging.getLogger("apache_beam.runners.common"), _DropReadErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _worker_error(e: Exception, error: type[Exception]) -> str | None:
    """The message of a worker's ``error`` that ended the run in ``e``; None if ``e`` does not carry one.

    An in-process runner re-raises the worker's exception itself (its message tagged ``[while running <step>]``);
    with worker processes, FnApiRunner raises a ``RuntimeError`` holding the worker's whole traceback as text, so
    the error is found by its name, and its last mention is the exception that failed the bundle.
    """
    text, tag = f"{type(e).__name__}: {e}", f"{error.__name__}: "
    if tag not in text:
        return None
    return text.split(tag)[-1].split("\n")[0].split(" [while running")[0]


def _raise_if_refused(staging: str) -> None:
    """Raises the finalize step's refusal (it published nothing and emptied ``staging``) as ``JobFailed``.

    The finalize step leaves its message in the staging folder rather than raising it: Beam logs an exception from
    a DoFn with its traceback before the runner re-raises it, and a refused run is an expected outcome.
    """
    text = refusal.read_verdict(staging)
    if text is not None:
        delete_tree(staging)
        raise JobFailed(text)


def run(argv: list[str] | None = None) -> int:
    """Runs ``beam-expand run`` with ``argv`` (as Beam examples' ``run(argv)``); returns the exit code."""
    from beam_jobs.cli import main

    return main(["run", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(run())
