"""Named datasets (``--dataset``) and how ``--source`` resolves to a folder or an archive to read.

* ``flowers``: tf_flowers (``flower_photos.tgz``, 5 classes, 3,670 photos, CC BY 2.0), downloaded once into the
  cache with the size and sha256 that tensorflow-datasets pins, and streamed (never extracted). ``--source`` may
  point it at a local folder, a local archive or a mirror URL instead.
* ``shapes``: generated offline (``beam_jobs.sources.shapes``); the default of ``make expand``.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.paths import exists
from beam_jobs.sources import shapes
from beam_jobs.sources.archive import LICENSE_NAMES, is_archive
from beam_jobs.sources.download import fetch


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset published as an archive at a fixed URL, pinned by sha256 (and size where published).

    Attributes:
        labels: ``folders`` (class sub-folders) or the name of a labeller in ``beam_jobs.sources.oxford``.
        extras: Further files ``(filename, url, size, sha256)`` downloaded and verified beside the archive.
    """

    url: str
    filename: str
    size: int | None
    sha256: str
    description: str
    homepage: str
    labels: str = "folders"
    extras: tuple[tuple[str, str, int | None, str], ...] = ()


DATASETS: dict[str, RemoteDataset] = {
    "flowers": RemoteDataset(
        url="https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
        filename="flower_photos.tgz",
        size=228_813_984,
        # As pinned by tensorflow-datasets (datasets/tf_flowers/checksums.tsv).
        sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
        description="tf_flowers: 3,670 photos of 5 flower classes (CC BY 2.0, photographer credits in LICENSE.txt).",
        homepage="https://www.tensorflow.org/tutorials/load_data/images",
    ),
    "flowers17": RemoteDataset(
        url="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz",
        filename="17flowers.tgz",
        size=None,  # not published; the sha256 pins the content
        sha256="fe38a60f8b4a95e657551247d3e7d799a3fafcdbc595be504b12839967823d70",
        description="Oxford 17 Category Flowers: 1,360 photos, 80 per class (Nilsback & Zisserman 2006).",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
        labels="flowers17",
    ),
    "flowers102": RemoteDataset(
        url="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
        filename="102flowers.tgz",
        # Sizes and sha256 as pinned by tensorflow-datasets (datasets/oxford_flowers102/checksums.tsv).
        size=344_862_509,
        sha256="2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246",
        description="Oxford 102 Category Flowers: 8,189 photos with the official train/validation/test split.",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        labels="flowers102",
        extras=(
            ("imagelabels.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", 502,
             "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"),
            ("setid.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", 14_989,
             "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd"),
        ),
    ),
}  # fmt: skip
GENERATED = {"shapes": shapes.DESCRIPTION}
DATASET_NAMES = tuple(sorted([*DATASETS, *GENERATED]))
URL_SCHEMES = ("http://", "https://", "file://")


def default_cache_dir() -> str:
    """Returns ``$BEAM_EXPAND_CACHE`` or ``~/.cache/beam-expand``."""
    return os.environ.get("BEAM_EXPAND_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "beam-expand")


@dataclass(frozen=True)
class ResolvedSource:
    """Where the images of a run come from.

    Attributes:
        kind: ``folder`` or ``archive``.
        path: Folder or archive path (any Beam filesystem).
        name: Default dataset name for shard files.
        description: Text for the dataset metadata.
        license_path: A license file to copy into the output, if any.
    """

    kind: str
    path: str
    name: str
    description: str
    license_path: str | None = None
    labels: str = "folders"
    extras: dict | None = None


def _basename(path: str) -> str:
    base = posixpath.basename(path.rstrip("/"))
    for suffix in (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base or "dataset"


def _local_or_remote(source: str, sha256: str | None, cache_dir: str, hint: str) -> str:
    if source.startswith(URL_SCHEMES):
        filename = posixpath.basename(source.split("?")[0]) or "download"
        if not is_archive(filename):
            raise UserError(f"--source URL must name a tar archive (.tgz, .tar.gz, .tar), got {source}")
        return fetch(source, os.path.join(cache_dir, "downloads", "custom"), filename, sha256, None, hint)
    if not exists(source.rstrip("/")):
        raise UserError(f"--source {source} does not exist; {hint}")
    return source


def resolve(dataset: str | None, source: str | None, sha256: str | None, cache_dir: str) -> ResolvedSource:
    """Resolves ``--dataset`` / ``--source`` / ``--sha256`` to something to read.

    Raises:
        UserError: Unknown dataset, missing source, unreachable URL or failed verification; says what to do.
    """
    hint = "pass SOURCE=<local folder, .tgz or URL> (make) or --source"
    if dataset is not None and dataset not in DATASET_NAMES:
        raise UserError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)} (or give --source)")
    if dataset in GENERATED:
        if source:
            raise UserError(f"--dataset {dataset} is generated and takes no --source")
        root = shapes.ensure_shapes(cache_dir)
        return ResolvedSource("folder", root, dataset, GENERATED[dataset])
    if dataset is None and not source:
        raise UserError(f"give --dataset ({', '.join(DATASET_NAMES)}) or --source <folder|archive|URL>")
    if dataset in DATASETS and not source:
        spec = DATASETS[dataset]
        downloads = os.path.join(cache_dir, "downloads")
        path = fetch(spec.url, downloads, spec.filename, spec.sha256, spec.size, hint=hint)
        extras = {name: fetch(url, downloads, name, sha, size, hint=hint) for name, url, size, sha in spec.extras}
        return ResolvedSource("archive", path, dataset, spec.description, labels=spec.labels, extras=extras)
    assert source is not None
    path = _local_or_remote(source, sha256, cache_dir, hint)
    if sha256 and not source.startswith(URL_SCHEMES):
        from beam_jobs.sources.download import verify

        if is_archive(path):
            problem = verify(path, sha256, None)
            if problem:
                raise UserError(f"--sha256 check of {path} failed: {problem}")
    name = dataset or _basename(source)
    description = DATASETS[dataset].description if dataset in DATASETS else f"Expanded from {_basename(source)}."
    if is_archive(path):
        spec = DATASETS.get(dataset) if dataset else None
        if spec is not None and spec.labels != "folders":
            # Label files sit beside a local copy of the archive (as the official site lays them out).
            base = os.path.dirname(path)
            extras = {n: os.path.join(base, n) for n, *_ in spec.extras}
            missing = [p for p in extras.values() if not os.path.exists(p)]
            if missing:
                raise UserError(f"--dataset {dataset} with a local --source needs {', '.join(missing)} beside it")
            return ResolvedSource("archive", path, name, description, labels=spec.labels, extras=extras)
        return ResolvedSource("archive", path, name, description)
    license_path = None
    for candidate in LICENSE_NAMES:
        p = FileSystems.join(path.rstrip("/"), candidate)
        if FileSystems.exists(p):
            license_path = p
            break
    return ResolvedSource("folder", path.rstrip("/"), name, description, license_path)
