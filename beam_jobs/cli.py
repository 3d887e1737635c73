r"""``beam-expand``: the command line.

    beam-expand run --dataset shapes --copies 5 --output out/shapes
    beam-expand run --dataset flowers --source flower_photos.tgz --copies 3 --output out/flowers \\
        --rotation-range 20 --horizontal-flip --direct_num_workers=2 --direct_running_mode=multi_processing
    beam-expand datasets

Job flags are parsed into one frozen ``JobConfig``; every other flag must be a Beam pipeline option and is passed
to Beam untouched (a typo such as ``--copys 3`` is an error, never a silent default).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from beam_jobs.errors import JobFailed, SourceReadError, UserError
from transforms.functional.geometric import FILL_MODES
from transforms.mix import PARTNER_MODES
from transforms.quality import DEFAULT_MAX_FILL, DEFAULT_MAX_REDRAWS, DEFAULT_MIN_STD
from transforms.registry import PolicyError

KERAS_FLAGS = (
    "rotation_range",
    "width_shift_range",
    "height_shift_range",
    "shear_range",
    "zoom_range",
    "horizontal_flip",
    "vertical_flip",
    "fill_mode",
    "cval",
    "brightness_range",
    "channel_shift_range",
    "interpolation_order",
)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _shift(text: str) -> int | float | list:
    """Keras's shift ranges: ``10`` (int pixels), ``0.1`` (fraction), ``2.5`` (pixels), ``1,2,3`` (choices)."""
    try:
        return [_number(t) for t in text.split(",")] if "," in text else _number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma list of numbers, got {text!r}") from None


def _zoom(text: str) -> float | list[float]:
    try:
        parts = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float or lo,hi, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts
    raise argparse.ArgumentTypeError(f"expected a float or lo,hi, got {text!r}")


def _pair(kind):
    def parse(text: str):
        try:
            parts = [kind(t) for t in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}") from None
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
        return parts

    return parse


def _shape(parts: list[str] | None) -> tuple[int, int, int] | None:
    if not parts:
        return None
    try:
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise UserError(f"--image-shape must be H,W,C integers, got {','.join(parts)}") from None


def _splits(text: str) -> tuple[tuple[str, float], ...]:
    try:
        pairs = [part.split("=", 1) for part in text.split(",")]
        return tuple((name.strip(), float(value)) for name, value in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected name=fraction,... (e.g. train=0.8,validation=0.2), got {text!r}"
        ) from None


def _class_counts(text: str) -> tuple[tuple[str, int], ...]:
    try:
        return tuple((name.strip(), int(k)) for name, k in (part.split("=", 1) for part in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class=K,... (e.g. daisy=5,roses=20), got {text!r}") from None


def _crop_size(text: str) -> list[int] | float:
    """``224,224`` or ``224`` (pixels) or ``0.875`` (a fraction of each side)."""
    try:
        if "," in text:
            return [int(t) for t in text.split(",", 1)]
        return float(text) if "." in text else [int(text), int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W pixels, an int or a fraction (0.875), got {text!r}") from None


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_gate_flags(p: argparse.ArgumentParser) -> None:
    gate = p.add_argument_group("quality gate (re-draws degenerate copies; see README)")
    gate.add_argument("--no-quality-gate", action="store_true", help="keep every first draw, degenerate or not")
    for flag, kind, default, text in (
        ("--max-redraws", int, DEFAULT_MAX_REDRAWS, "re-draws per degenerate copy"),
        ("--max-fill-fraction", float, DEFAULT_MAX_FILL, "degenerate above this share of fill pixels"),
        ("--min-pixel-std", float, DEFAULT_MIN_STD, "degenerate below this per-channel pixel std"),
    ):
        gate.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("input")
    src.add_argument("--dataset", help="named dataset: shapes (built in, offline) or flowers (tf_flowers)")
    src.add_argument("--source", help="image folder (one sub-folder per class), .tar/.tgz archive, or URL")
    src.add_argument("--sha256", help="expected sha256 of a custom --source archive")
    src.add_argument(
        "--source-format",
        help="imagefolder, list (CSV/JSONL of path,label), tfrecord, parquet, csv (pixel rows) or tar (WebDataset); "
        "detected when unambiguous",
    )
    src.add_argument("--image-key", "--image-column", default="image", help="image feature/column (default image)")
    src.add_argument("--label-key", "--label-column", default="label", help="label feature/column (default label)")
    src.add_argument("--image-shape", type=_csv, help="H,W,C of CSV pixel rows, e.g. 28,28,1")
    src.add_argument("--classes", type=_csv, help="only these classes (comma list)")
    src.add_argument("--limit", type=int, help="only N images (a stable sample across classes)")
    src.add_argument("--cache-dir", help="download cache (default $BEAM_EXPAND_CACHE or ~/.cache/beam-expand)")

    job = p.add_argument_group("expansion")
    job.add_argument("--copies", type=int, default=5, help="K augmented copies per image (default 5)")
    job.add_argument("--include-original", action="store_true", help="also write each original as copy 0")
    job.add_argument("--seed", type=int, default=0, help="job seed; same seed, inputs and versions = same bytes")
    job.add_argument("--policy", help="policy preset, YAML/JSON file or inline mapping (see README)")
    job.add_argument("--image-size", type=_pair(int), help="resize to H,W before augmenting")
    job.add_argument("--balance", action="store_true", help="bring every class to the largest class's count")
    job.add_argument("--target-per-class", type=int, help="bring every class to N records")
    job.add_argument("--copies-per-class", type=_class_counts, help="K per class, e.g. daisy=5,roses=20")
    job.add_argument(
        "--tta",
        help="test-time views of every evaluation image: flip, five_crop, ten_crop or POLICY:M (e.g. light:4)",
    )
    job.add_argument("--tta-crop-size", type=_crop_size, help="five/ten_crop size: H,W pixels or a fraction (0.875)")
    job.add_argument("--zca", action="store_true", help="also write Keras's ZCA whitening matrix (zca.npz)")
    job.add_argument("--zca-epsilon", type=float, default=1e-6, help="Keras's zca_epsilon (default 1e-6)")

    mix = p.add_argument_group("MixUp / CutMix (partners from the whole split; records get soft labels)")
    mix.add_argument("--mixup", type=float, metavar="ALPHA", help="MixUp with lambda ~ Beta(ALPHA, ALPHA), e.g. 0.2")
    mix.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with lambda ~ Beta(ALPHA, ALPHA), e.g. 1.0")
    mix.add_argument("--mix-fraction", type=float, default=1.0, metavar="F",
                     help="share of augmented copies that are mixed (default 1.0)")  # fmt: skip
    mix.add_argument("--mix-partners", default="any", choices=PARTNER_MODES,
                     help="whom an image is mixed with (default any)")  # fmt: skip

    _add_gate_flags(p)

    keras = p.add_argument_group("Keras ImageDataGenerator flags (any of these replaces the default policy)")
    keras.add_argument("--rotation-range", type=float, help="degrees")
    keras.add_argument("--width-shift-range", type=_shift, help="fraction (<1), pixels (>=1), int or list")
    keras.add_argument("--height-shift-range", type=_shift, help="fraction (<1), pixels (>=1), int or list")
    keras.add_argument("--shear-range", type=float, help="shear angle in degrees")
    keras.add_argument("--zoom-range", type=_zoom, help="z for [1-z, 1+z], or lo,hi")
    keras.add_argument("--horizontal-flip", action="store_true", default=None)
    keras.add_argument("--vertical-flip", action="store_true", default=None)
    keras.add_argument("--fill-mode", choices=FILL_MODES)
    keras.add_argument("--cval", type=float, help="fill value for --fill-mode constant")
    keras.add_argument("--brightness-range", type=_pair(float), help="lo,hi brightness factors")
    keras.add_argument("--channel-shift-range", type=float)
    keras.add_argument("--interpolation-order", type=int, choices=(0, 1))

    outp = p.add_argument_group("output")
    outp.add_argument("--output", help="output directory (refused if not empty, unless --overwrite)")
    outp.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run")
    outp.add_argument("--name", help="dataset name for shard files (default: the dataset's or folder's name)")
    outp.add_argument("--split", default="train", help="the (augmented) split's name (default train)")
    outp.add_argument(
        "--splits",
        type=_splits,
        help="e.g. train=0.8,validation=0.2: split sources by key hash; only --split is augmented",
    )
    outp.add_argument("--formats", type=_csv, default=["tfrecord", "parquet"], help="tfrecord,parquet (default)")
    outp.add_argument("--image-format", default="jpeg", help="jpeg (default), png or webp (parquet only)")
    outp.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    outp.add_argument("--max-shard-mb", type=int, default=256, help="roll shard files over at this size")
    outp.add_argument("--records-per-shard", type=int, help="roll shard files over at this many records")
    outp.add_argument("--dry-run", action="store_true", help="print images per class and estimates, then stop")
    outp.add_argument("--refresh", action="store_true", help="versioned outputs + LATEST pointer (scheduled jobs)")
    outp.add_argument("--incremental", action="store_true", help="with --refresh: expand only new/changed images")
    outp.add_argument("--keep-versions", type=int, default=3, help="with --refresh: versions to keep (default 3)")
    outp.add_argument(
        "--max-bad-fraction", type=float, help="fail, publishing nothing, if more than this share of inputs is bad"
    )
    outp.add_argument("--no-progress", action="store_true", help="no progress line")


def build_parser() -> argparse.ArgumentParser:
    """Returns the ``beam-expand`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="beam-expand",
        description="Expand a labelled image dataset into K augmented copies per image (Apache Beam).",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the expansion job",
        description="Run the expansion job. Flags not listed here must be Beam pipeline options "
        "(--runner, --direct_num_workers, --project, ...) and are passed to Beam untouched.",
        allow_abbrev=False,
    )
    _add_run_flags(run)
    sub.add_parser("datasets", help="list the named datasets", allow_abbrev=False)

    ops = sub.add_parser("ops", help="list every op and preset with its parameters", allow_abbrev=False)
    ops.add_argument("--json", action="store_true", help="print as JSON")
    ops.add_argument("--markdown", action="store_true", help="print as Markdown tables (as in the README)")

    prev = sub.add_parser("preview", help="contact sheet: originals and N captioned copies", allow_abbrev=False)
    prev.add_argument("--image", help="one image file")
    prev.add_argument("--source", help="a class folder / archive / list file: one sample per class")
    prev.add_argument("--source-format", help="as for run: e.g. list for a CSV of path,label (detected otherwise)")
    prev.add_argument("--dataset", help="a named dataset: one sample per class")
    prev.add_argument("-n", "--copies", type=int, default=8, help="copies per row (default 8)")
    prev.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    prev.add_argument("--policy", help="policy preset, file, string or mapping (default: the job's default)")
    prev.add_argument("--seed", type=int, default=0)
    prev.add_argument("--cache-dir")
    _add_gate_flags(prev)  # the copies shown are the ones a run with the same flags writes

    for name, text in (("verify", "re-check a dataset against its manifest (exit 0 ok, 1 damaged, 2 not a dataset)"),
                       ("info", "describe a dataset directory"),
                       ("report", "(re)write report.html and its pictures in a dataset directory")):  # fmt: skip
        cmd = sub.add_parser(name, help=text, allow_abbrev=False)
        cmd.add_argument("dataset_dir")

    rep = sub.add_parser(
        "replay",
        help="re-derive one copy bit for bit from its recipe",
        description="Re-derive one copy bit for bit from its recipe and its source image, found again the way the "
        "run read it: a file of an image folder or a named dataset, an archive member, a list file's path, or a "
        "record of TFRecord, Parquet, CSV pixel-row or WebDataset files (local or on an object store). Records have "
        "no index: their file is scanned up to the record (a big file takes a while).",
        allow_abbrev=False,
    )
    rep.add_argument("dataset_dir", nargs="?", help="output directory of a run")
    rep.add_argument("--source-key", help="the copy's source_key")
    rep.add_argument("--copy-index", type=int, help="the copy's copy_index")
    rep.add_argument("--view-index", type=int, default=0, help="the test-time view's view_index (--tta; default 0)")
    rep.add_argument("--source", help="where the run's source is now, if it moved: dataset root, archive, list file, "
                     "or record file, folder or glob")  # fmt: skip
    rep.add_argument("--recipe", help="a recipe (JSON text or file) instead of a dataset directory")
    rep.add_argument("--image", help="the source image, with --recipe")
    rep.add_argument("--partner-image", help="with --recipe of a mixed copy: the partner's source image")
    rep.add_argument("--out", help="write the replayed image here")
    return parser


def check_beam_args(args: Sequence[str]) -> None:
    """Raises UserError for flags that are neither job flags nor Beam pipeline options."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    try:  # runner-specific options register themselves on import
        import apache_beam.runners.portability.flink_runner  # noqa: F401
        import apache_beam.runners.portability.spark_runner  # noqa: F401
    except ImportError:
        pass
    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = set()
    stack = list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            pass  # an option declared by two classes
    _, unknown = parser.parse_known_args(list(args))
    flags = [a for a in unknown if a.startswith("-")]
    if flags or unknown:
        shown = " ".join(flags or unknown)
        raise UserError(
            f"unknown argument(s): {shown} (not a beam-expand flag nor a Beam pipeline option; "
            "see beam-expand run --help)"
        )


def config_from_args(ns: argparse.Namespace):
    """Builds the validated ``JobConfig`` from parsed flags (policy resolved here)."""
    from beam_jobs.config import JobConfig
    from transforms.policies import DEFAULT_PRESET, load_policy

    keras = {f: getattr(ns, f) for f in KERAS_FLAGS if getattr(ns, f) is not None}
    if keras and ns.policy:
        raise UserError("give either --policy or Keras ImageDataGenerator flags (--rotation-range, ...), not both")
    if keras:
        policy = {"version": 1, "ops": [{"op": "image_data_generator", **keras}]}
        from transforms.policies import Policy

        Policy.from_config(policy)
    else:
        policy = load_policy(ns.policy or DEFAULT_PRESET)
    if not ns.output and not ns.dry_run:
        raise UserError("--output DIR is required (or use --dry-run)")
    if ns.tta_crop_size is not None and not ns.tta:
        raise UserError("--tta-crop-size goes with --tta five_crop or ten_crop")
    from transforms.tta import parse_tta

    tta = parse_tta(ns.tta, ns.tta_crop_size) if ns.tta else None
    return JobConfig(
        output=ns.output or "",
        dataset=ns.dataset,
        source=ns.source,
        sha256=ns.sha256,
        name=ns.name,
        split=ns.split,
        copies=ns.copies,
        include_original=ns.include_original,
        seed=ns.seed,
        policy=policy,
        image_size=tuple(ns.image_size) if ns.image_size else None,
        image_format=ns.image_format,
        quality=ns.quality,
        formats=tuple(ns.formats),
        limit=ns.limit,
        classes=tuple(ns.classes) if ns.classes else None,
        dry_run=ns.dry_run,
        overwrite=ns.overwrite,
        max_shard_mb=ns.max_shard_mb,
        cache_dir=ns.cache_dir,
        progress=not ns.no_progress,
        max_bad_fraction=ns.max_bad_fraction,
        refresh=ns.refresh,
        incremental=ns.incremental,
        keep_versions=ns.keep_versions,
        source_format=ns.source_format,
        image_key=ns.image_key,
        label_key=ns.label_key,
        image_shape=_shape(ns.image_shape),
        splits=ns.splits,
        records_per_shard=ns.records_per_shard,
        balance=ns.balance,
        target_per_class=ns.target_per_class,
        copies_per_class=ns.copies_per_class,
        mixup=ns.mixup,
        cutmix=ns.cutmix,
        mix_fraction=ns.mix_fraction,
        mix_partners=ns.mix_partners,
        tta=tta,
        zca=ns.zca,
        zca_epsilon=ns.zca_epsilon,
        quality_gate=not ns.no_quality_gate,
        max_redraws=ns.max_redraws,
        max_fill_fraction=ns.max_fill_fraction,
        min_pixel_std=ns.min_pixel_std,
    )


def _datasets() -> int:
    from beam_jobs.sources.datasets import DATASETS, GENERATED

    for name, text in sorted(GENERATED.items()):
        print(f"{name:10s} {text} (generated, offline)")
    for name, spec in sorted(DATASETS.items()):
        size = f"{spec.size / 1e6:,.0f} MB download, " if spec.size else ""
        print(f"{name:10s} {spec.description} ({size}sha256 pinned)")
    return 0


def _ops(ns: argparse.Namespace) -> int:
    from transforms import catalog

    if ns.json:
        print(json.dumps(catalog.catalog(), indent=2))
    else:
        print(catalog.markdown() if ns.markdown else catalog.text(), end="" if ns.markdown else "\n")
    return 0


def _preview(ns: argparse.Namespace) -> int:
    from beam_jobs import preview
    from transforms.policies import DEFAULT_PRESET, load_policy

    policy = load_policy(ns.policy or DEFAULT_PRESET)
    if not (ns.image or ns.source or ns.dataset):
        raise UserError("preview needs --image PATH, --source DIR or --dataset NAME")
    if ns.copies < 1:
        raise UserError(f"-n must be >= 1, got {ns.copies}")
    if ns.image:
        try:
            with open(ns.image, "rb") as f:
                rows = [(ns.image.replace("\\", "/").split("/")[-1], None, f.read())]
        except OSError as e:
            raise UserError(f"cannot read --image {ns.image}: {e.strerror}") from None
    else:
        from beam_jobs.config import JobConfig
        from beam_jobs.pipeline import plan_job
        from beam_jobs.sources.archive import read_members

        plan = plan_job(JobConfig(output="", dataset=ns.dataset, source=ns.source, cache_dir=ns.cache_dir,
                                  source_format=ns.source_format, policy=policy, copies=ns.copies))  # fmt: skip
        if plan.source.kind not in ("folder", "list", "archive"):
            raise UserError(
                f"preview reads image folders, archives and list files, not {plan.source.kind} records: for those, "
                "run with --limit 20 and open the dataset's report.html"
            )
        if plan.source.kind in ("folder", "list"):
            from apache_beam.io.filesystems import FileSystems

            def read(source):
                with FileSystems.open(source.path) as f:
                    return f.read()

            rows = preview.read_samples(plan.listing.images, ns.seed, read)
        else:
            picks = preview.sample_per_class(plan.listing.images, ns.seed)
            found = read_members(plan.source.path, {plan.archive_prefix + s.key for s in picks})
            rows = [(s.key, s.label_name, found[plan.archive_prefix + s.key]) for s in picks]
    gate = None
    if not ns.no_quality_gate:
        from transforms.quality import QualityGate

        try:
            gate = QualityGate(ns.max_redraws, ns.max_fill_fraction, ns.min_pixel_std)
        except ValueError as e:
            raise UserError(f"quality gate: {e}") from None
    sheet = preview.contact_sheet(rows, policy, ns.copies, ns.seed, gate)
    os.makedirs(os.path.dirname(os.path.abspath(ns.out)), exist_ok=True)
    sheet.save(ns.out)
    print(f"beam-expand: wrote {ns.out} ({len(rows)} row(s) x {ns.copies} copies, {sheet.width}x{sheet.height})")
    return 0


def _replay(ns: argparse.Namespace) -> int:
    from transforms.mix import partner_key
    from transforms.replay import ReplayError, replay

    partner = None
    if ns.recipe:
        if not ns.image:
            raise UserError("--recipe needs --image (the source image)")
        if os.path.exists(ns.recipe):
            recipe = _read_flag_file(ns.recipe, "--recipe").decode("utf-8", "replace")
        elif ns.recipe.lstrip().startswith("["):
            recipe = ns.recipe  # the recipe's JSON text itself
        else:
            raise UserError(f"--recipe {ns.recipe}: no such file (pass a recipe file or a recipe's JSON text)")
        data = _read_flag_file(ns.image, "--image")
        if ns.partner_image:
            partner = _read_flag_file(ns.partner_image, "--partner-image")
        stored = None
    else:
        if not (ns.dataset_dir and ns.source_key is not None and ns.copy_index is not None):
            raise UserError("give DATASET_DIR --source-key K --copy-index C, or --recipe R --image PATH")
        from beam_jobs.replay import find_record, source_bytes

        record = find_record(ns.dataset_dir, ns.source_key, ns.copy_index, ns.view_index)
        recipe, stored = record["recipe"], record["image"]["bytes"]
        data = source_bytes(ns.dataset_dir, ns.source_key, ns.source)
        mixed_with = partner_key(json.loads(recipe))
        if mixed_with is not None:  # a MixUp/CutMix copy: its partner's source is replayed too
            partner = source_bytes(ns.dataset_dir, mixed_with, ns.source)
    try:
        out = replay(recipe, data, partner)
    except ReplayError as e:
        raise UserError(f"cannot replay: {e}") from None
    if ns.out:
        try:
            with open(ns.out, "wb") as f:
                f.write(out)
        except OSError as e:
            raise UserError(f"cannot write --out {ns.out}: {e.strerror or e}") from None
    if stored is not None:
        if out != stored:
            print("beam-expand: replay differs from the stored copy (library versions changed?)", file=sys.stderr)
            return 1
        view = f" view {ns.view_index}" if ns.view_index else ""
        print(f"beam-expand: replayed {ns.source_key} copy {ns.copy_index}{view}: bit-exact ({len(out):,} bytes)")
    else:
        print(f"beam-expand: replayed {len(out):,} bytes" + (f" to {ns.out}" if ns.out else ""))
    return 0


def _require_filesystems(ns: argparse.Namespace) -> None:
    """Refuses, saying what to install, a store path of a non-run command this installation cannot reach.

    ``run`` checks its own paths (``beam_jobs.pipeline``); without this, ``info gs://...`` ended in Beam's
    ValueError traceback. Web URLs are downloaded, not read through Beam, and local paths always work.
    """
    from beam_jobs.paths import require_filesystem
    from beam_jobs.sources.datasets import URL_SCHEMES

    for attr, flag in (("dataset_dir", "DATASET_DIR"), ("source", "--source"), ("out", "--out")):
        value = getattr(ns, attr, None)
        if isinstance(value, str) and "://" in value and not value.startswith(URL_SCHEMES):
            require_filesystem(value, flag)


def _read_flag_file(path: str, flag: str) -> bytes:
    """The bytes of the local file a flag names, or one clear error saying which flag names a missing file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UserError(f"cannot read {flag} {path}: {e.strerror or e}") from None


def _hyphenate(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Accepts ``--no_progress`` for ``--no-progress``; Beam's own options keep their underscores.

    Schedulers such as Airflow's Beam operator write every flag with underscores.
    """
    known = {
        opt
        for action in parser._subparsers._group_actions[0].choices["run"]._actions  # noqa: SLF001
        for opt in action.option_strings
    }
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        alt = flag.replace("_", "-")
        out.append(alt + eq + value if flag.startswith("--") and flag not in known and alt in known else arg)
    return out


def _verify(ns: argparse.Namespace) -> int:
    from beam_jobs.inspect import verify

    problems = verify(ns.dataset_dir)
    for p in problems:
        print(f"beam-expand: verify: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"beam-expand: {ns.dataset_dir} is complete and matches its manifest")
    return 0


def _report(ns: argparse.Namespace) -> int:
    from beam_jobs.report import write_report

    print(f"beam-expand: wrote {write_report(ns.dataset_dir)}")
    return 0


def _info(ns: argparse.Namespace) -> int:
    from beam_jobs.inspect import info_text

    print(info_text(ns.dataset_dir))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``beam-expand`` console script; returns the exit code.

    2 for user errors; 1 for a failed job or a source that could not be read (storage trouble: run again).

    Called without ``argv`` (the console script, ``python -m beam_jobs.cli``), the process is a fresh command: local
    multi-process workers are then forked from it (``beam_jobs.forked_workers``) rather than started afresh.
    """
    fresh_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    # Beam logs import-time warnings about optional cloud clients; a local user needs none of them.
    logging.getLogger().setLevel(logging.ERROR)
    parser = build_parser()
    argv = _hyphenate(argv, parser)
    ns, rest = parser.parse_known_args(argv)
    try:
        if ns.command != "run":
            if rest:
                raise UserError(f"unknown argument(s): {' '.join(rest)}")
            _require_filesystems(ns)
            commands = {"datasets": lambda _: _datasets(), "ops": _ops, "preview": _preview, "replay": _replay,
                        "verify": _verify, "info": _info, "report": _report}  # fmt: skip
            return commands[ns.command](ns)
        check_beam_args(rest)
        config = config_from_args(ns)
        from beam_jobs.pipeline import run_job

        run_job(config, rest, argv=["beam-expand", *argv], listing_rows=False, fork_workers=fresh_process)
        return 0
    except (UserError, PolicyError) as e:
        print(f"beam-expand: error: {e}", file=sys.stderr)
        return 2
    except JobFailed as e:
        print(f"beam-expand: job failed: {e}", file=sys.stderr)
        return 1
    except SourceReadError as e:  # storage trouble, not the user's: nothing was published
        print(f"beam-expand: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("beam-expand: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `beam-expand ops | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def console() -> NoReturn:
    """The ``beam-expand`` command: ``main()``, then the process ends without Python's interpreter teardown.

    With Beam, gRPC, pyarrow and OpenCV loaded, the teardown (modules and thread states cleared one by one) took
    0.3-0.4 s after every command, work done. The exit handlers still run first (they stop the job servers Beam
    starts for Flink, Spark and Prism, and shut logging down), and the output is flushed.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away after main's last write (`beam-expand ops | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
