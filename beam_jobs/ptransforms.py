"""The job's composite PTransforms: read -> expand -> write (plus dead letters).

Shapes between steps::

    ReadImages:    PBegin -> SourceImage (path for folders, bytes for archive members), reshuffled so that
                   decoding spreads over workers even when the input is one archive or a few files (folder
                   sources cross the shuffle in packed batches of up to 16)
    ExpandImages:  SourceImage -> {"records": record dict, "dead_letter": dict, "source_info": packed key+sha256}
                   (with MixUp/CutMix, sources are first joined with their partners' bytes: beam_jobs.mixing)
    WriteDataset:  {"records", "dead_letter", "source_info"} -> manifest dict (one element, once published)
"""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.mixing import PairWithPartners
from beam_jobs.packed_rows import PackedRows
from beam_jobs.sinks.finalize import FinalizeFn
from beam_jobs.sinks.shards import WriteShardsFn
from beam_jobs.sources.archive import ReadArchiveFn
from beam_jobs.sources.records import ReadRecordsFn
from beam_jobs.staged import Staged, unstaged
from beam_jobs.statistics import ZcaSumsFn
from schemas.source import SourceImage
from transforms.expand import DEAD_LETTER, REUSED, SOURCE_INFO, STATS, ZCA, ExpandFn, dead_letter, split_of

REUSE_MISSING = "reuse_missing"  # the dead letter of a reused source whose previous records are not there


class ReadImages(beam.PTransform):
    """Emits the selected source images, reshuffled before any decoding.

    Args:
        kind: ``folder`` (elements carry paths) or ``archive`` (one reader streams the members' bytes).
        images: The selected ``SourceImage``s (from the listing).
        archive_path: The archive, for ``archive``.
        archive_prefix: Root folder inside the archive.
        stage_dir: Where the packed listing is written for the workers (``beam_jobs.staged``: the pipeline
            then holds its path, not the listing); None keeps it in the pipeline.
    """

    def __init__(self, kind: str, images: list, archive_path: str | None = None, archive_prefix: str = "",
                 stage_dir: str | None = None):  # fmt: skip
        super().__init__()
        self._kind = kind
        # Packed here, so that neither this transform nor the pipeline holds a Python object per image.
        packed = PackedRows((s.key, s.label, s.label_name, s.path, s.error) for s in images)
        self._count = len(packed)
        if kind != "folder":  # the archive's reader looks its members up by key
            packed = {key: (label, name, error) for key, label, name, _, error in packed}
        self._rows = Staged.write(stage_dir, "listing", packed) if stage_dir else packed
        self._archive_path = archive_path
        self._prefix = archive_prefix

    def expand(self, pbegin):
        """Builds the read steps."""
        if self._kind == "folder":
            # One element, split into packed batches for the shuffle (FnApiRunner holds a shuffle in memory, more
            # than once: packed, a source costs ~30 bytes there, not ~120); the worker that expands a batch makes
            # its SourceImages.
            return (
                pbegin
                | "ListedImages" >> beam.Create([self._rows], reshuffle=False)
                | "SpreadSources" >> _SpreadBatches(_batch_size(self._count))
            )
        items = (
            pbegin
            | "Archive" >> beam.Create([self._archive_path], reshuffle=False)
            | "StreamMembers" >> beam.ParDo(ReadArchiveFn(self._prefix, self._rows)).with_output_types(Any)
        )
        # Fusion break: spread sources (paths or encoded bytes, never pixels) over workers.
        return items | "SpreadSources" >> beam.Reshuffle().with_output_types(Any)


def _batch_size(images: int) -> int:
    # Up to 16 sources per shuffled element, but at least ~64 elements, so that small runs still spread.
    return max(1, min(16, images // 64))


def _batches(rows: PackedRows | Staged, size: int):
    batch = []
    for row in unstaged(rows):
        batch.append(row)
        if len(batch) == size:
            yield PackedRows(batch)
            batch = []
    if batch:
        yield PackedRows(batch)


def _sources(batch: PackedRows):
    for key, label, label_name, path, error in batch:
        yield SourceImage(key, label, label_name, path, error=error)


class _SpreadBatches(beam.PTransform):
    """Packed listing -> packed batches of ``size`` sources -> Reshuffle (fusion break) -> ``SourceImage``s."""

    def __init__(self, size: int):
        super().__init__()
        self._size = size

    def expand(self, packed):
        """Builds the batch, shuffle and unbatch steps."""
        return (
            packed
            | "Batch" >> beam.FlatMap(_batches, self._size).with_output_types(Any)
            | "Reshuffle" >> beam.Reshuffle().with_output_types(Any)
            | "Unbatch" >> beam.FlatMap(_sources).with_output_types(Any)
        )


class ReadRecords(beam.PTransform):
    """Streams record files (TFRecord, Parquet, CSV pixel rows, WebDataset tars) into ``SourceImage``s.

    Files are spread over workers; the records (encoded bytes, never pixels) are reshuffled before decoding.

    Args:
        fmt: The record format.
        files: The files, in order.
        root: Their common root (keys are relative to it).
        opts: Feature/column names and image shape.
        images: The selected ``SourceImage``s from the listing (labels and listing-time errors).
        stage_dir: Where they are written for the workers (``beam_jobs.staged``), or None to keep them in the
            pipeline.
    """

    def __init__(self, fmt: str, files: list[str], root: str, opts, images: list, stage_dir: str | None = None):
        super().__init__()
        self._fmt, self._files, self._root, self._opts = fmt, files, root, opts
        selected = {s.key: (s.label, s.label_name, s.error) for s in images}
        self._selected = Staged.write(stage_dir, "listing", selected) if stage_dir else selected

    def expand(self, pbegin):
        """Builds the read steps."""
        return (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "StreamRecords"
            >> beam.ParDo(ReadRecordsFn(self._fmt, self._root, self._opts, self._selected)).with_output_types(Any)
            | "SpreadSources" >> beam.Reshuffle().with_output_types(Any)
        )


class ExpandImages(beam.PTransform):
    """Decodes each source once and emits its K copies; bad inputs go to the ``dead_letter`` output.

    Args:
        mix_partners: In a MixUp/CutMix run (``mix`` among ``expand_args``), the partner plan of
            ``beam_jobs.mixing.plan_partners`` (or it ``Staged``).
        **expand_args: Arguments of ``transforms.expand.ExpandFn``.
    """

    def __init__(self, mix_partners: dict | None = None, **expand_args):
        super().__init__()
        self._mix_partners = mix_partners
        self._args = expand_args

    def expand(self, sources):
        """Returns ``DoOutputsTuple`` with ``records``, ``dead_letter`` and ``source_info``."""
        if self._args.get("mix"):
            sources = sources | "PairWithPartners" >> PairWithPartners(self._mix_partners or {})
        return sources | "DecodeAugmentEncode" >> beam.ParDo(ExpandFn(**self._args)).with_outputs(
            DEAD_LETTER, SOURCE_INFO, REUSED, STATS, ZCA, main="records"
        )


def _parquet_rows(path: str, batch: int = 64):
    """Yields a Parquet file's rows as dicts (``ReadFromParquet``'s), a few at a time: images need not all be held."""
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        for rows in pq.ParquetFile(f).iter_batches(batch):
            yield from rows.to_pylist()


def _reused_records(rows: list[dict], split: str, source_class: str) -> list[dict]:
    records = [{**row, "image": row["image"]["bytes"], "split": split} for row in rows]
    records.sort(key=lambda r: (r["copy_index"], r.get("view_index", 0)))  # the order expand_image writes
    if records:  # counted as expand_image marks a source: under its own class, whatever its first record's is
        records[0]["source_start"] = True
        records[0]["source_class"] = source_class
    return records


class PixelSumsFn(beam.CombineFn):
    """Adds per-channel pixel sums; the finalize step turns them into mean and std."""

    def create_accumulator(self):
        """An empty sum."""
        return {"images": 0, "pixels": 0, "sum": [0.0, 0.0, 0.0], "sumsq": [0.0, 0.0, 0.0]}

    def add_input(self, acc, item):
        """Adds one source's sums."""
        return self.merge_accumulators([acc, item])

    def merge_accumulators(self, accumulators):
        """Adds sums."""
        out = self.create_accumulator()
        for a in accumulators:
            out["images"] += a["images"]
            out["pixels"] += a["pixels"]
            out["sum"] = [x + y for x, y in zip(out["sum"], a["sum"], strict=True)]
            out["sumsq"] = [x + y for x, y in zip(out["sumsq"], a["sumsq"], strict=True)]
        return out

    def extract_output(self, acc):
        """The sums."""
        return acc


class ReuseRecords(beam.PTransform):
    """Copies the previous version's records of unchanged sources (incremental refresh).

    Shape: reused sources as (key, (class, RGB pixel sums or None)); previous Parquet rows -> (source_key, record);
    CoGroupByKey; the records of reused keys, and their sources' pixel sums for the statistics. Only encoded bytes
    cross the shuffle, never pixels.

    Args:
        shards: The previous version's Parquet shards (as its manifest lists them: no glob, so no stray file and
            no pattern character in the user's folder names).
        split_args: ``(splits, default split, input_splits, split_map)`` (``split_map`` may be ``Staged``), to put
            reused records in their split again.
    """

    def __init__(self, shards: list[str], split_args: tuple):
        super().__init__()
        self._shards = shards
        self._split_args = split_args

    def expand(self, reused):
        """Takes ``(key, (class, sums))`` of the reused sources; returns records (main), dead letters and stats.

        The ``stats`` output holds ``(split, sums)`` of each reused source whose records were found.
        A reused source without previous records (written by a version of beam-expand that lost them) is a dead
        letter ``reuse_missing``: counted, never dropped, and read afresh by the next refresh (dead-lettered sources
        are not reused, and a version with such dead letters is never "up to date"). Its pixel sums are left out of
        the statistics, as a full run leaves out a source without records: they are emitted here, once the records
        are found, not by ``ExpandFn``.
        """
        previous = (
            reused.pipeline
            | "PreviousShards" >> beam.Create(self._shards)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadPrevious" >> beam.FlatMap(_parquet_rows)
            | "KeyPrevious" >> beam.Map(lambda row: (row["source_key"], row))
        )
        splits, default, input_splits, split_map = self._split_args

        def keep(kv):
            key, groups = kv
            if not groups["wanted"]:
                return
            source_class, sums = groups["wanted"][0]
            rows = list(groups["previous"])
            if not rows:
                error = LookupError("the current version holds no records of this unchanged source; the next "
                                    "refresh expands it afresh")  # fmt: skip
                source = SourceImage(key, 0, source_class)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(source, "reuse", REUSE_MISSING, error, None))
                return
            split = split_of(key, splits, default, input_splits, unstaged(split_map))
            yield from _reused_records(rows, split, source_class)
            if sums:
                yield beam.pvalue.TaggedOutput(STATS, (split, sums))

        joined = {"previous": previous, "wanted": reused} | "Join" >> beam.CoGroupByKey()
        return joined | "Keep" >> beam.FlatMap(keep).with_outputs(DEAD_LETTER, STATS, main="records")


class WriteDataset(beam.PTransform):
    """Writes shards from the expanding workers, then finalizes the dataset directory once.

    Args:
        write_args: Arguments of ``WriteShardsFn``.
        finalize_args: Arguments of ``FinalizeFn``.
    """

    def __init__(self, write_args: dict, finalize_args: dict):
        super().__init__()
        self._write_args = write_args
        self._finalize_args = finalize_args

    def expand(self, outputs):
        """Takes ``{"records", "dead_letter", "source_info"}``; returns the manifest as a one-element PCollection.

        Empty when the run's result is refused for its dead letters (``FinalizeFn``'s ``report_refusal``).
        """
        records, dead, info = outputs["records"], outputs[DEAD_LETTER], outputs[SOURCE_INFO]
        stats = outputs[STATS] | "PixelSums" >> beam.CombinePerKey(PixelSumsFn())
        zca_shape = (self._finalize_args.get("zca") or {}).get("shape", [0])
        zca = outputs[ZCA] | "ZcaSums" >> beam.CombineGlobally(ZcaSumsFn(math.prod(zca_shape))).without_defaults()
        reports = records | "WriteShards" >> beam.ParDo(WriteShardsFn(**self._write_args)).with_output_types(Any)
        # Side inputs taken straight from one ParDo's tagged outputs are merged into one list by Beam's
        # BundleBasedDirectRunner (2.77); an identity step per stream keeps them apart on every runner.
        dead = dead | "DeadLetterList" >> beam.Map(lambda d: d)
        info = info | "SourceInfoList" >> beam.Map(lambda d: d)
        return (
            records.pipeline
            | "Once" >> beam.Create([None])
            | "Finalize"
            >> beam.ParDo(
                FinalizeFn(**self._finalize_args),
                beam.pvalue.AsList(reports),
                beam.pvalue.AsList(dead),
                beam.pvalue.AsList(info),
                beam.pvalue.AsList(stats),
                beam.pvalue.AsList(zca),
            )
        )
