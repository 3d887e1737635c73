"""Dataset statistics beside the per-channel mean/std: class histograms per split and the ZCA whitening matrix.

ZCA (``--zca``), for small images of one fixed size. Shape of the data::

    'zca' tag: uint8 bytes of one decoded augmented-split source (h*w*c values, HWC order)
      -> CombineGlobally(ZcaSumsFn): {n, sum (d,), gram (d, d)}, float64, d = h*w*c   (never the images)
      -> FinalizeFn: zca.npz beside statistics.json

The sums are of integers (pixel values and their products), so they are exact in float64 whatever the order:
bundling, retries and worker counts give the same bits. From them, ``zca_arrays`` reproduces
``ImageDataGenerator(featurewise_center=True, zca_whitening=True).fit(x)`` on the same decoded images: centre by
the per-channel mean, then Keras 3's matrix (``zca_whitening_matrix``) and Keras 2's (``principal_components``),
which put ``zca_epsilon`` in different places.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from typing import Any

import apache_beam as beam
import numpy as np

ZCA_FILE = "zca.npz"
# d x d float64 accumulators and matrices: 32x32x3 = 3,072 values is 75 MB each; 64x64x3 would be 1.2 GB.
ZCA_MAX_FEATURES = 32 * 32 * 3
_BATCH = 128  # images added per matrix product (a rank-1 update per image would be ~50x slower)


class ZcaSumsFn(beam.CombineFn):
    """Adds n, the sum of x and the sum of x xᵀ over flattened uint8 images (float64; never holds the images).

    Args:
        features: d, the values per image (height * width * channels).
    """

    def __init__(self, features: int):
        self._d = features

    def create_accumulator(self) -> dict[str, Any]:
        """An empty sum; its d x d matrix is allocated with the first image."""
        return {"n": 0, "sum": None, "gram": None, "pending": []}

    def add_input(self, acc: dict[str, Any], image: bytes) -> dict[str, Any]:
        """Queues one image; every ``_BATCH`` images are added with one matrix product."""
        acc["pending"].append(image)
        if len(acc["pending"]) >= _BATCH:
            self._flush(acc)
        return acc

    def merge_accumulators(self, accumulators) -> dict[str, Any]:
        """Adds the sums into the first accumulator (Beam allows modifying the first one only)."""
        accumulators = iter(accumulators)
        out = self._flush(next(accumulators))
        for acc in accumulators:
            if acc["pending"]:
                out["pending"] = list(acc["pending"])
                self._flush(out)
            if acc["n"]:
                self._allocate(out)
                out["n"] += acc["n"]
                out["sum"] += acc["sum"]
                out["gram"] += acc["gram"]
        return out

    def compact(self, acc: dict[str, Any]) -> dict[str, Any]:
        """Adds the queued images before the accumulator is shipped."""
        return self._flush(acc)

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        """Returns ``{n, sum, gram}``."""
        acc = self._flush(acc)
        return {"n": acc["n"], "sum": acc["sum"], "gram": acc["gram"]}

    def _allocate(self, acc: dict[str, Any]) -> None:
        if acc["gram"] is None:
            acc["sum"] = np.zeros(self._d)
            acc["gram"] = np.zeros((self._d, self._d))

    def _flush(self, acc: dict[str, Any]) -> dict[str, Any]:
        if acc["pending"]:
            x = np.frombuffer(b"".join(acc["pending"]), np.uint8).reshape(-1, self._d).astype(np.float64)
            self._allocate(acc)
            acc["gram"] += x.T @ x
            acc["sum"] += x.sum(axis=0)
            acc["n"] += x.shape[0]
            acc["pending"] = []
        return acc


def zca_arrays(sums: dict[str, Any], shape: tuple[int, int, int], epsilon: float) -> dict[str, np.ndarray]:
    """Keras's featurewise mean and ZCA matrices from the sums of the images.

    Keras centres by the per-channel mean (``featurewise_center``), so the centred Gram matrix is
    ``Σ(x-m)(x-m)ᵀ = G - s mᵀ - m sᵀ + n m mᵀ`` with ``m`` the channel means tiled over the pixels. With its
    eigenpairs ``(λ, u)`` (descending), which are the squared singular values and left singular vectors of the
    centred data:

    * Keras 3 (``keras.src.legacy.preprocessing.image``): ``svd(flat_x.T, full_matrices=False)``, so the first
      ``min(n, d)`` pairs, scaled by ``sqrt(n) / (sqrt(λ) + ε)``: ``zca_whitening_matrix``.
    * Keras 2 (``keras_preprocessing``): ``svd(flat_x.T @ flat_x / n)``, every pair scaled by
      ``1 / sqrt(λ / n + ε)``: ``principal_components``.

    Args:
        sums: ``ZcaSumsFn`` output.
        shape: (height, width, channels) of every image.
        epsilon: Keras's ``zca_epsilon``.

    Returns:
        ``mean`` (1, 1, c) as Keras's ``ImageDataGenerator.mean``, the two matrices (d x d), ``epsilon``,
        ``shape`` and ``images``.
    """
    n, total, gram = sums["n"], sums["sum"], sums["gram"]
    h, w, c = shape
    mean = total.reshape(h * w, c).sum(axis=0) / (n * h * w)
    m = np.tile(mean, h * w)
    centred = gram - np.outer(total, m) - np.outer(m, total) + n * np.outer(m, m)
    eigenvalues, u = np.linalg.eigh(centred)
    eigenvalues, u = np.clip(eigenvalues[::-1], 0.0, None), u[:, ::-1]
    k = min(n, h * w * c)
    keras3 = (u[:, :k] * (np.sqrt(n) / (np.sqrt(eigenvalues[:k]) + epsilon))) @ u[:, :k].T
    keras2 = (u * (1.0 / np.sqrt(eigenvalues / n + epsilon))) @ u.T
    return {
        "mean": mean.reshape(1, 1, c),
        "zca_whitening_matrix": keras3,
        "principal_components": keras2,
        "epsilon": np.float64(epsilon),
        "shape": np.array(shape, dtype=np.int64),
        "images": np.int64(n),
    }


def zca_file(sums: dict[str, Any], shape: tuple[int, int, int], epsilon: float) -> tuple[bytes, dict[str, Any]]:
    """Returns the bytes of ``zca.npz`` and the note that ``statistics.json`` gets about it."""
    buf = io.BytesIO()
    np.savez(buf, **zca_arrays(sums, shape, epsilon))
    data = buf.getvalue()
    note = {
        "file": ZCA_FILE,
        "images": int(sums["n"]),
        "shape": list(shape),
        "epsilon": epsilon,
        "sha256": hashlib.sha256(data).hexdigest(),
        "fits": "ImageDataGenerator(featurewise_center=True, zca_whitening=True).fit(x) on the decoded sources: "
        "set gen.mean = mean and gen.zca_whitening_matrix (Keras 3) or gen.principal_components (Keras 2)",
    }
    return data, note


def class_histograms(reports, class_names: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """Per split: sources read per class (before expansion) and records written per class (after).

    Args:
        reports: ``ShardReport``s of one format (each record and source is counted once).
        class_names: Every class, so that empty ones show as 0.

    Returns:
        ``{split: {"classes": {"sources": {class: n}, "records": {class: n}}}}``.
    """
    sources: dict[str, Counter] = {}
    records: dict[str, Counter] = {}
    for r in reports:
        sources.setdefault(r.split, Counter()).update(r.sources_per_class)
        records.setdefault(r.split, Counter()).update(r.records_per_class)
    return {
        split: {"classes": {"sources": {n: sources[split].get(n, 0) for n in class_names},
                            "records": {n: records[split].get(n, 0) for n in class_names}}}
        for split in sorted(records)
    }  # fmt: skip
