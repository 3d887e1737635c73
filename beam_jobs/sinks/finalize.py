"""The last step of a run: stage the reported shards and the metadata, check them, then publish.

Everything is written into a staging directory beside the output. Each shard was already re-read by the worker
that wrote it (count, CRCs, sha256: ``WriteShardsFn``); here the staged files must still have the sizes that were
verified. When that holds and the dead-letter share is acceptable (some input gave records, and no more than
``--max-bad-fraction`` were dead-lettered: ``beam_jobs.sinks.refusal``), the staging directory replaces the output
(``beam_jobs.sinks.publish``). A failed, refused or killed run never touches the published dataset.

Output directory after a run::

    <name>-train.tfrecord-00000-of-0000N   tf.train.Example shards (TFDS layout)
    <name>-train.parquet-00000-of-0000N    Parquet shards (Hugging Face Image / ClassLabel features)
    dataset_info.json, features.json, label.labels.txt    TFDS metadata (tfds.builder_from_directory;
                                           mixed runs add label_b.labels.txt)
    beam_expand.json                       the job manifest: counts, seed, policy, versions, input listing
    dead_letter.jsonl                      one line per input that produced no records (always present)
    LICENSE.txt                            the source's license, when it has one
    report.html, report/*.png              class counts chart, per-class sample sheets, policy, dead letters
    statistics.json, zca.npz               per split: channel mean/std and class histograms; ZCA (with --zca)
    _SUCCESS                               written last, after verification
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.paths import delete_tree, file_size, is_local
from beam_jobs.sinks.manifest import MANIFEST, write_json
from beam_jobs.sinks.publish import SUCCESS, VerificationError, publish, verify_shard
from beam_jobs.sinks.refusal import message, refused_dir, verdict, write_verdict
from beam_jobs.sinks.shards import ShardReport
from beam_jobs.sinks.writers import WRITERS
from beam_jobs.staged import Staged, unstaged
from beam_jobs.statistics import ZCA_FILE, class_histograms, zca_file
from schemas.arrow import arrow_schema
from schemas.record import record_fields
from schemas.tfds_metadata import dataset_info_json, features_json
from transforms.expand import unpack_source_info
from transforms.mix import MIX_STATES
from transforms.quality import manifest_counts

DEAD_LETTERS = "dead_letter.jsonl"


def shard_name(name: str, split: str, fmt: str, index: int, count: int) -> str:
    """Returns TFDS's shard file name, e.g. ``flowers-train.tfrecord-00000-of-00004``.

    WebDataset shards end in ``.tar`` as WebDataset readers expect: ``flowers-train-00000-of-00004.tar``.
    """
    if fmt == "webdataset":
        return f"{name}-{split}-{index:05d}-of-{count:05d}.tar"
    return f"{name}-{split}.{fmt}-{index:05d}-of-{count:05d}"


def dataset_card(name: str, splits: list[str], class_names: list[str], manifest: dict[str, Any]) -> str:
    """A Hugging Face dataset card whose ``configs`` front matter maps splits to the Parquet shards.

    With it, ``datasets.load_dataset(OUT)`` loads every split without ``data_files``.
    """
    files = "".join(f'  - split: {s}\n    path: "data/{s}-*.parquet"\n' for s in splits)
    names = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        + files.replace("\n  - ", "\n  - ", -1)
        + "---\n\n"
        + f"# {name}\n\n{manifest.get('description', '')}\n\n"
        + f"Written by beam-expand: {manifest.get('copies')} augmented copies per training image"
        + (" plus the original" if manifest.get("include_original") else "")
        + f", seed {manifest.get('seed')}. Classes ({len(class_names)}): {names}. "
        + "Every record carries its `recipe`; see `beam_expand.json` for counts, policy and versions.\n"
    )


def channel_statistics(pixel_sums: list[tuple[str, dict]]) -> dict[str, dict[str, Any]]:
    """Per split: per-channel mean and (population) std of the decoded sources, in 0..255 RGB.

    This is what Keras's ``featurewise_center`` / ``featurewise_std_normalization`` compute with
    ``ImageDataGenerator.fit``, without holding the dataset in memory.
    """
    out = {}
    for split, s in sorted(pixel_sums):
        n = s["pixels"]
        mean = [x / n for x in s["sum"]]
        std = [max(q / n - m * m, 0.0) ** 0.5 for q, m in zip(s["sumsq"], mean, strict=True)]
        out[split] = {"images": s["images"], "pixels": n, "mean": mean, "std": std}
    return out


def write_text(path: str, text: str) -> None:
    """Writes a UTF-8 text file on any Beam filesystem."""
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    """Writes a binary file on any Beam filesystem."""
    with FileSystems.create(path) as f:
        f.write(data)


def sorted_dead_letters(dead_letters: list[dict]) -> list[dict]:
    """The dead letters in the order ``dead_letter.jsonl`` lists them: by key (then stage), whatever the bundles."""
    return sorted(dead_letters, key=lambda d: (d["source_key"], d.get("stage") or ""))


def dead_letter_text(dead_letters: list[dict]) -> str:
    """``dead_letter.jsonl``'s content: one JSON object per line, in the order given."""
    return "".join(json.dumps(d, sort_keys=True) + "\n" for d in dead_letters)


class BadFractionError(Exception):
    """Every input, or more than ``--max-bad-fraction`` of them, was dead-lettered; nothing was published."""


class FinalizeFn(beam.DoFn):
    """Stages the shards reported by successful bundles and all metadata, checks them, publishes (runs once).

    Args:
        output: Output directory (replaced at the end).
        staging: Staging directory where everything is written first.
        temp_dir: Directory holding the temporary shard files; deleted at the end.
        name: Dataset name (shard prefix).
        splits: Split names to write (each gets at least one, possibly empty, shard per format).
        formats: Output formats.
        class_names: Class names in label order.
        image_format: Encoding of the images (for ``features.json``).
        manifest: The launcher's part of the manifest (config, policy, listing, versions), or it ``Staged`` (it
            holds a row per input); counts are added here.
        license_bytes: Content of the source's license file, copied to ``LICENSE.txt``, or None.
        run_id: Unique id of this run (names the staging directory).
        max_bad_fraction: Fail without publishing when dead letters / inputs exceed this, or None (a run whose
            every input was dead-lettered fails all the same).
        images_in: The number of inputs (the manifest's ``listing.per_class`` summed), for that check.
        refused: Where a refused run keeps its dead letters (default ``<output>.refused``); removed by a run that
            publishes.
        report_refusal: Refuse by leaving the message in the staging folder for the launcher
            (``refusal.read_verdict``) rather than by raising ``BadFractionError``: Beam logs an exception raised
            here with its traceback, and the command prints one line. Whoever runs the pipeline must then look.
        mixed: The run mixes images (MixUp/CutMix): the mix fields are in the schema and counted.
        zca: ``{"shape": [h, w, c], "epsilon": e}`` to write ``zca.npz`` from the ZCA sums, or None.
    """

    def __init__(
        self,
        output: str,
        staging: str,
        temp_dir: str,
        name: str,
        splits: list[str],
        formats: tuple[str, ...],
        class_names: list[str],
        image_format: str,
        manifest: dict[str, Any] | Staged,
        license_bytes: bytes | None = None,
        run_id: str = "",
        max_bad_fraction: float | None = None,
        images_in: int = 0,
        mixed: bool = False,
        zca: dict[str, Any] | None = None,
        refused: str | None = None,
        report_refusal: bool = False,
    ):
        self._refused = refused or refused_dir(output)
        self._report_refusal = report_refusal
        self._mixed = mixed
        self._zca = zca
        self._output = output
        self._staging = staging
        self._run_id = run_id
        self._max_bad = max_bad_fraction
        self._images_in = images_in
        self._temp_dir = temp_dir
        self._name = name
        self._splits = list(splits)
        self._formats = tuple(formats)
        self._class_names = list(class_names)
        self._image_format = image_format
        self._manifest = manifest
        self._license = license_bytes

    def _path(self, filename: str) -> str:
        return FileSystems.join(self._staging, filename)

    def _publish(self, split: str, fmt: str, reports: list[ShardReport]) -> list[dict[str, Any]]:
        if fmt == "imagefolder":  # files already sit at their final names under images/<split>/
            expected = sum(r.num_records for r in reports if r.fmt == fmt and r.split == split)
            folder = self._path(f"images/{split}")
            return [{"file": f"images/{split}", "split": split, **verify_shard(folder, fmt, expected=expected)}]
        # Empty files (bundles that saw no record) are dropped; an empty split still gets one valid empty shard.
        kept = sorted(
            (r for r in reports if r.fmt == fmt and r.split == split and r.num_records > 0),
            key=lambda r: (r.first_key, r.temp_path),
        )
        if not kept:
            empty = FileSystems.join(self._temp_dir, f"{split}-{fmt}-empty")
            WRITERS[fmt](empty, arrow_schema(self._class_names, self._mixed)).close()
            check = verify_shard(empty, fmt, expected=0)
            kept = [ShardReport(fmt, split, empty, 0, check["bytes"], "", {}, {}, {}, sha256=check["sha256"])]
        count = len(kept)
        targets = [self._path(shard_name(self._name, split, fmt, i, count)) for i in range(count)]
        FileSystems.rename([r.temp_path for r in kept], targets)
        # Every shard was re-read by the worker that wrote it (count, CRCs, sha256); here the published files must
        # still have the sizes that were verified. `beam-expand verify` re-reads everything again on demand.
        shards = []
        for t, r in zip(targets, kept, strict=True):
            size = file_size(t)
            if size != r.num_bytes:
                raise VerificationError(f"{t}: {size} bytes, but the worker verified {r.num_bytes}")
            entry = {"records": r.num_records, "bytes": r.num_bytes, "sha256": r.sha256}
            shards.append({"file": t.rsplit("/", 1)[-1], "split": split, **entry})
        return shards

    def _hf_layout(self, parquet_shards: list[dict[str, Any]]) -> None:
        """Adds ``data/<split>-NNNNN-of-NNNNN.parquet`` (Hugging Face's layout) pointing at the Parquet shards.

        Symlinks on a local disk (no second copy); copies elsewhere.
        """
        by_split: dict[str, list[str]] = {}
        for shard in parquet_shards:
            by_split.setdefault(shard["split"], []).append(shard["file"])
        for split, files in by_split.items():
            for i, file in enumerate(files):
                link = self._path(f"data/{split}-{i:05d}-of-{len(files):05d}.parquet")
                if is_local(link):
                    os.makedirs(os.path.dirname(link), exist_ok=True)
                    os.symlink(os.path.join("..", file), link)
                else:
                    FileSystems.copy([self._path(file)], [link])

    def _refuse(self, refusal: tuple[str, str], dead_letters: list[dict]):
        """Publishes nothing: keeps the dead letters where the user can read them and says why.

        The staging folder is emptied (a retry of this step refuses the same way); the message goes to the launcher
        through it, or is raised without ``report_refusal``.
        """
        delete_tree(self._staging)
        dead = sorted_dead_letters(dead_letters)
        where = FileSystems.join(self._refused, DEAD_LETTERS)
        delete_tree(self._refused)  # only this run's dead letters: an earlier refusal's may name other inputs
        write_text(where, dead_letter_text(dead))
        text = message(refusal, dead, where)
        if not self._report_refusal:
            raise BadFractionError(text)
        write_verdict(self._staging, text)

    def process(
        self,
        _unused,
        reports: list[ShardReport],
        dead_letters: list[dict],
        source_info: list[bytes] = (),
        pixel_sums: list[tuple[str, dict]] = (),
        zca_sums: list[dict] = (),
    ):
        """Checks the bad share, stages and checks shards and metadata, publishes; yields the manifest."""
        # Judged before anything staged is read: a retry of this step (the staging folder gone) fails the same way.
        # An empty dataset is no result: a run whose every input was dead-lettered is refused without any flag.
        refusal = verdict(self._images_in, len(dead_letters), self._max_bad)
        if refusal is not None:
            self._refuse(refusal, dead_letters)
            return
        base = unstaged(self._manifest)
        splits = [*self._splits, *sorted({r.split for r in reports} - set(self._splits))]
        shards = {fmt: [e for split in splits for e in self._publish(split, fmt, reports)] for fmt in self._formats}
        counted = [r for r in reports if r.fmt == self._formats[0]]
        records = Counter()
        sources = Counter()
        gate = Counter()
        per_split = {split: {"images_ok": 0, "records_out": 0} for split in splits}
        for r in counted:
            records.update(r.records_per_class)
            sources.update(r.sources_per_class)
            gate.update(r.gate_counts)
            per_split[r.split]["images_ok"] += sum(r.sources_per_class.values())
            per_split[r.split]["records_out"] += r.num_records

        dead = sorted_dead_letters(dead_letters)
        write_text(self._path(DEAD_LETTERS), dead_letter_text(dead))
        for f in record_fields(self._mixed):  # TFDS reads a ClassLabel's names from <feature>.labels.txt
            if f.kind == "class_label":
                write_text(self._path(f"{f.name}.labels.txt"), "".join(n + "\n" for n in self._class_names))
        if "tfrecord" in self._formats:
            lengths = {sp: [s["records"] for s in shards["tfrecord"] if s["split"] == sp] for sp in splits}
            num_bytes = {sp: sum(s["bytes"] for s in shards["tfrecord"] if s["split"] == sp) for sp in splits}
            info = dataset_info_json(self._name, base.get("description", ""), lengths, num_bytes)
            write_text(self._path("dataset_info.json"), json.dumps(info, indent=2) + "\n")
            features = features_json(len(self._class_names), self._image_format, self._mixed)
            write_text(self._path("features.json"), json.dumps(features, indent=2) + "\n")
        if self._license is not None:
            write_bytes(self._path("LICENSE.txt"), self._license)
        if "parquet" in self._formats:
            self._hf_layout(shards["parquet"])
            write_text(self._path("README.md"), dataset_card(self._name, splits, self._class_names, base))

        manifest = dict(base)
        images_in = manifest["listing"]["per_class"]
        dead_per_class = Counter(d["label_name"] for d in dead)
        manifest["counts"] = {
            "images_in": sum(images_in.values()),
            "images_ok": sum(sources.values()),
            "dead_letters": len(dead),
            "records_out": sum(records.values()),
            "ignored_files": len(manifest["listing"]["ignored"]),
            "skipped_non_images": len(manifest["listing"]["skipped"]),
            "per_split": per_split,
            "per_class": {
                n: {
                    "images_in": images_in.get(n, 0),
                    "images_ok": sources.get(n, 0),
                    "dead_letters": dead_per_class.get(n, 0),
                    "records_out": records.get(n, 0),
                }
                for n in [*self._class_names, *(k for k in images_in if k not in self._class_names)]
            },
        }
        if self._mixed:  # augmented copies per outcome, from the written records
            mix_states = Counter({state: 0 for state in MIX_STATES})
            for r in counted:
                mix_states.update(r.mix_states or {})
            manifest["counts"]["mix"] = dict(mix_states)
        if manifest.get("quality_gate"):
            manifest["counts"]["quality_gate"] = manifest_counts(gate)
        manifest["shards"] = shards
        manifest["run_id"] = self._run_id
        # Content hashes of every input that could be read (for refresh and incremental runs), and the pinned
        # policy for identical bytes at several paths: each path is a source of its own; they are reported.
        digests, reused, sums = {}, [], {}
        keep_sums = bool(manifest["config"].get("refresh"))  # the next incremental run's statistics need them
        for info in source_info:
            key, digest, was_reused, source_sums = unpack_source_info(info)
            digests[key] = digest
            if was_reused:
                reused.append(key)
            if keep_sums and source_sums:
                sums[key] = source_sums
        digests.update({d["source_key"]: d["sha256"] for d in dead if d.get("sha256")})
        rows = manifest["listing"]["images"].with_sha256(digests, sums)
        manifest["listing"] = {**manifest["listing"], "images": rows}
        # Groups of keys with the same bytes, in key order (only digests seen twice are grouped: one list per input
        # would cost more than the rest of the finalize step).
        seen = Counter(digests.values())
        groups: dict[str, list[str]] = {}
        for key in sorted(k for k, d in digests.items() if seen[d] > 1):
            groups.setdefault(digests[key], []).append(key)
        manifest["duplicate_content"] = list(groups.values())
        dead_keys = {d["source_key"] for d in dead}  # a reused source without previous records (reuse_missing)
        manifest["reused_sources"] = sorted(k for k in reused if k not in dead_keys)
        manifest["statistics"] = channel_statistics(pixel_sums)
        for split, entry in class_histograms(counted, self._class_names).items():
            manifest["statistics"].setdefault(split, {}).update(entry)
        if self._zca and zca_sums and zca_sums[0]["n"]:
            data, note = zca_file(zca_sums[0], tuple(self._zca["shape"]), self._zca["epsilon"])
            write_bytes(self._path(ZCA_FILE), data)
            manifest["statistics"].setdefault(manifest["augment_split"], {})["zca"] = note
        write_text(self._path("statistics.json"), json.dumps(manifest["statistics"], indent=2, sort_keys=True) + "\n")
        write_json(self._path(MANIFEST), manifest)
        delete_tree(self._temp_dir)
        try:
            from beam_jobs.report import write_report

            write_report(self._staging, manifest)
        except Exception as e:  # noqa: BLE001 (the report is a convenience; the dataset is already verified)
            logging.getLogger(__name__).warning("report.html was not written: %s", e)
        write_text(self._path(SUCCESS), "")
        publish(self._staging, self._output, self._run_id)
        delete_tree(self._refused)  # an earlier refused run's dead letters: this output is a result now
        yield manifest
