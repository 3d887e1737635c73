"""``make bench``: the whole job against hand-written loops on the same photos, in one run.

    make bench                      # 1,000 images (flowers-mini x 5, else generated), K=5
    make bench ARGS="--images 2000 --copies 10"

Prints one table (copies/s, ratio to the bare OpenCV loop, peak RSS) and writes bench-results/bench.json. The
loops get their bytes from memory; the job reads files, decodes, augments, encodes and writes TFRecord + Parquet
(so it does strictly more work). Numbers are measured on the machine running the command, never assumed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.fixtures import FLOWERS_MINI, encode, photo_like
from transforms.functional.geometric import keras_transform_matrix

ROOT = Path(__file__).resolve().parents[1]


def make_input(root: Path, images: int) -> Path:
    """Replicates flowers-mini (or generated photo-like images) to ``images`` files in class folders."""
    if FLOWERS_MINI.is_dir():
        photos = sorted(p for p in FLOWERS_MINI.glob("*/*.jpg"))
    else:
        rng = np.random.default_rng(0)
        gen = root.parent / "generated"
        for c in range(5):
            (gen / f"class{c}").mkdir(parents=True, exist_ok=True)
            for i in range(40):
                (gen / f"class{c}" / f"{i}.jpg").write_bytes(encode(photo_like(rng, 240, 320), "JPEG"))
        photos = sorted(gen.glob("*/*.jpg"))
    for i in range(images):
        src = photos[i % len(photos)]
        dst = root / src.parent.name / f"{i // len(photos)}_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root


def _params(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = keras_transform_matrix(
        h, w, rng.uniform(-30, 30), rng.uniform(-0.1, 0.1) * h, rng.uniform(-0.1, 0.1) * w, 0, *rng.uniform(0.8, 1.2, 2)
    )
    return m


def loop_ceiling(blobs: list[bytes], k: int) -> int:
    """Decode once + K JPEG encodes, no augmentation."""
    n = 0
    for b in blobs:
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        for _ in range(k):
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return n


def loop_opencv(blobs: list[bytes], k: int) -> int:
    """Decode once, K x (Keras-style random affine with warpAffine, random flip, imencode)."""
    rng = np.random.default_rng(0)
    n = 0
    for b in blobs:
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        for _ in range(k):
            out = cv2.warpAffine(img, _params(rng, h, w)[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            if rng.random() < 0.5:
                out = cv2.flip(out, 1)
            cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return n


def loop_pillow(blobs: list[bytes], k: int) -> int:
    """Decode once, K x (Pillow affine, random flip, JPEG save)."""
    rng = np.random.default_rng(0)
    n = 0
    for b in blobs:
        img = Image.open(io.BytesIO(b)).convert("RGB")
        w, h = img.size
        for _ in range(k):
            m = _params(rng, h, w)
            out = img.transform((w, h), Image.Transform.AFFINE, tuple(m[:2].ravel()), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out.save(io.BytesIO(), format="JPEG", quality=95)
            n += 1
    return n


def loop_keras(blobs: list[bytes], k: int) -> int:
    """Keras ImageDataGenerator: random_transform + PIL encode (what save_to_dir does)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    gen = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=30, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.2, horizontal_flip=True
    )
    n = 0
    for b in blobs:
        x = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32)
        for _ in range(k):
            out = gen.random_transform(x)
            Image.fromarray(out.astype(np.uint8)).save(io.BytesIO(), format="JPEG", quality=95)
            n += 1
    return n


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_job(source: Path, out: Path, k: int, extra: list[str]) -> dict:
    """Runs ``beam-expand run`` as a user would; returns wall time, records and peak RSS of the process tree."""
    cmd = [sys.executable, "-m", "beam_jobs.cli", "run", "--source", str(source), "--output", str(out),
           "--copies", str(k), "--overwrite", "--no-progress", "--rotation-range", "30", "--width-shift-range", "0.1",
           "--height-shift-range", "0.1", "--zoom-range", "0.2", "--horizontal-flip", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def watch():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"job failed: {' '.join(cmd)}\n{stderr[-3000:]}")
    records = json.loads((out / "beam_expand.json").read_text())["counts"]["records_out"]
    return {"seconds": wall, "copies": records, "peak_rss_mb": peak / 2**20}


def main(argv=None) -> int:
    """Runs every measurement and prints the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--keras-images", type=int, default=100, help="Keras is slow: time it on fewer images")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    ap.add_argument("--only-ops", action="store_true", help="only the per-op section")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="beam-expand-bench-"))
    try:
        source = make_input(work / "photos", args.images)
        blobs = [p.read_bytes() for p in sorted(source.glob("*/*.jpg"))]
        k = args.copies
        from tests import bench_ops

        per_op = bench_ops.run(blobs)
        print(bench_ops.table(per_op))
        if args.only_ops:
            return 0
        rows = {}
        for name, fn, subset in [
            ("decode + K encodes (ceiling)", loop_ceiling, blobs),
            ("bare OpenCV loop", loop_opencv, blobs),
            ("bare Pillow loop", loop_pillow, blobs),
            ("Keras ImageDataGenerator loop", loop_keras, blobs[: args.keras_images]),
        ]:
            seconds, n = timed(fn, subset, k)
            rows[name] = {"seconds": seconds, "copies": n, "peak_rss_mb": None}
            print(f"  measured {name}: {n / seconds:,.0f} copies/s", file=sys.stderr)
        for name, extra in [
            ("beam-expand run, 1 worker", []),
            ("beam-expand run, 2 workers", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
        ]:
            rows[name] = run_job(source, work / "out", k, extra)
            print(f"  measured {name}: {rows[name]['copies'] / rows[name]['seconds']:,.0f} copies/s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = rows["bare OpenCV loop"]["copies"] / rows["bare OpenCV loop"]["seconds"]
    print(f"\nbeam-expand bench: {len(blobs):,} photos x K={k}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")  # fmt: skip
    print(f"{'what':34s} {'copies/s':>10s} {'vs OpenCV loop':>15s} {'peak RSS':>10s}")
    for name, r in rows.items():
        rate = r["copies"] / r["seconds"]
        r["copies_per_s"] = rate
        rss = f"{r['peak_rss_mb']:,.0f} MB" if r["peak_rss_mb"] else "-"
        print(f"{name:34s} {rate:10,.0f} {rate / base:14.2f}x {rss:>10s}")
    one, two = rows["beam-expand run, 1 worker"], rows["beam-expand run, 2 workers"]
    print(f"2 workers / 1 worker: {(two['copies'] / two['seconds']) / (one['copies'] / one['seconds']):.2f}x "
          "(whole command, start-up included)")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"images": len(blobs), "copies": k, "rows": rows, "ops": per_op}, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
