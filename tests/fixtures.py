"""Test helpers: generated photo-like images, folders and archives, and shard readers."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# ../shared/data/flowers-mini beside the repository (as in CI); BEAM_EXPAND_FLOWERS_MINI overrides.
FLOWERS_MINI = Path(
    os.environ.get("BEAM_EXPAND_FLOWERS_MINI")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-mini"
)


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field with an off-centre blob: texture that shows every warp."""
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.zeros((height, width, 3))
    for c in range(3):
        a, b, ph = rng.uniform(2, 9, 2).tolist() + [rng.uniform(0, 6)]
        img[..., c] = 127 + 90 * np.sin(a * xs * 3 + ph) * np.cos(b * ys * 3)
    cy, cx = rng.uniform(0.2, 0.8, 2)
    img[(ys - cy) ** 2 + (xs - cx) ** 2 < 0.02] = rng.integers(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_folder(root: Path, classes=("cats", "dogs", "owls"), per_class=4, size=(48, 64), seed=0) -> Path:
    """Writes ``root/<class>/<class>_<i>.jpg|png`` (alternating formats, non-square) and returns root."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            fmt, ext = ("JPEG", "jpg") if i % 2 == 0 else ("PNG", "png")
            (root / name / f"{name}_{i}.{ext}").write_bytes(encode(photo_like(rng, *size), fmt))
    return root


def make_tgz(folder: Path, target: Path, top: str = "flower_photos", extra: dict[str, bytes] | None = None) -> Path:
    """Packs a class folder as ``top/<class>/<file>`` into a .tgz (as flower_photos.tgz is laid out)."""
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{top}/{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def read_tfrecords(out: Path) -> list[dict]:
    """Reads every TFRecord shard in ``out`` with tf.data (the spec derived for the run) and returns plain dicts."""
    import json

    import tensorflow as tf

    from schemas.tf_example import tf_feature_spec

    manifest = json.loads((out / "beam_expand.json").read_text()) if (out / "beam_expand.json").exists() else {}
    spec = tf_feature_spec(mixed=bool(manifest.get("mix")), num_classes=len(manifest.get("class_names", [])))
    files = sorted(str(p) for p in out.glob("*.tfrecord-*"))
    ds = tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, spec))
    rows = []
    for r in ds.as_numpy_iterator():
        rows.append({k: (v.decode() if isinstance(v, bytes) and k != "image" else v) for k, v in r.items()})
    return rows


def read_parquet(out: Path):
    """Reads every Parquet shard in ``out`` with pyarrow."""
    import pyarrow.parquet as pq

    return pq.read_table(sorted(str(p) for p in out.glob("*.parquet-*")))


def run_command(*args, timeout: float = 300):
    """Runs ``beam-expand ARGS`` as the console script does, in a fresh process; returns the CompletedProcess.

    In-process runs cannot show what a user sees on stderr: Beam's log handler holds the real stderr (capsys never
    captures it), and multi-process workers are forked only from a fresh command.
    """
    import subprocess
    import sys

    argv = [sys.executable, "-m", "beam_jobs.cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def one_clean_line(stderr: str) -> str:
    """Asserts that a failed command wrote one line and no traceback to stderr; returns that line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]
