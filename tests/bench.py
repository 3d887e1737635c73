"""``make bench``: the whole job against hand-written loops on the same photos, in one run.

    make bench                      # 1,000 images (flowers-mini x 5, else generated), K=5, JPEG quality 90, best of 2
    make bench ARGS="--images 2000 --copies 10 --no-sweeps"
    make bench ARGS="--only-kernels"     # kernels side by side, and the job's per-copy path step by step

Prints one table (copies/s, ratio to the bare OpenCV loop, peak RSS) and writes bench-results/bench.json. The
loops get their bytes from memory; the job reads files, decodes, augments, encodes and writes TFRecord + Parquet
(so it does strictly more work). Then two sweeps: ~20,000 copies with 1 and 2 workers, fastest of --repeat runs
(whole-command and steady-state scaling, the latter from the difference between the two run sizes), and peak RSS
of the job on 2,000 and 20,000 input images (K=1) to show memory stays flat. Numbers are measured on the machine
running the command, never assumed.
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

from tests.bench_steps import job_steps, print_steps
from tests.fixtures import FLOWERS_MINI, encode, photo_like
from transforms.functional.geometric import keras_transform_matrix

ROOT = Path(__file__).resolve().parents[1]
QUALITY = 90  # the reference figures use JPEG quality 90 everywhere


def make_input(root: Path, images: int) -> Path:
    """Replicates flowers-mini (or generated photo-like images) to ``images`` files in class folders (hard links)."""
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
        try:
            os.link(src, dst)  # same bytes, new key: 20,000 inputs cost no disk
        except OSError:
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
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
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
            cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
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
            out.save(io.BytesIO(), format="JPEG", quality=QUALITY)
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
            Image.fromarray(out.astype(np.uint8)).save(io.BytesIO(), format="JPEG", quality=QUALITY)
            n += 1
    return n


def kernels(blobs: list[bytes], k: int, repeat: int = 5) -> dict[str, float]:
    """Milliseconds per copy of each kernel, the loop's and the job's, on the same photos and matrices (best of N).

    The loop warps 3-channel BGR with a replicate border; the job warps its BGRA working copy through its own
    ``warp_affine_inverse`` (padded once per source) and encodes BGRA, as ``expand_image`` does for this policy.
    """
    from transforms.codec import encode_image, to_working
    from transforms.functional.geometric import reuse_padding, warp_affine_inverse

    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]
    rng = np.random.default_rng(0)
    matrices = [[_params(rng, *img.shape[:2]) for _ in range(k)] for img in images]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    def loop_warp():
        for img, ms in zip(images, matrices, strict=True):
            for m in ms:
                cv2.warpAffine(img, m[:2], img.shape[1::-1], flags=flags, borderMode=cv2.BORDER_REPLICATE)

    def job_warp():
        for img, ms in zip(images, matrices, strict=True):
            working = to_working(img)
            with reuse_padding():
                for m in ms:
                    warp_affine_inverse(working, m, "nearest")

    workings = [to_working(img) for img in images]
    timed = {
        "decode (share of one per source)": lambda: [cv2.imdecode(np.frombuffer(b, np.uint8), 1) for b in blobs],
        "loop: warp (BGR, replicate border)": loop_warp,
        "loop: encode": lambda: [cv2.imencode(".jpg", i, [cv2.IMWRITE_JPEG_QUALITY, QUALITY]) for i in images * k],
        "job: warp (BGRA working copy, padded once per source)": job_warp,
        "job: encode (BGRA)": lambda: [encode_image(w, "jpeg", QUALITY, bgra=True) for w in workings * k],
    }
    out = {}
    for name, fn in timed.items():
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        out[name] = best / (len(blobs) * k) * 1e3
    return out


def print_kernels(ms: dict[str, float]) -> None:
    """Prints the kernel table and each side's total per copy."""
    print("\nkernels, ms per copy (best of 5, one thread):")
    for name, v in ms.items():
        print(f"  {name:56s} {v:6.2f}")
    decode = next(iter(ms.values()))
    loop = decode + sum(v for n, v in ms.items() if n.startswith("loop"))
    job = decode + sum(v for n, v in ms.items() if n.startswith("job"))
    print(f"  loop kernels {loop:.2f} ms, job kernels {job:.2f} ms per copy ({loop / job:.2f}x)")


def _loop(fn, blobs: list[bytes], k: int) -> dict:
    start = time.perf_counter()
    n = fn(blobs, k)
    return {"seconds": time.perf_counter() - start, "copies": n, "peak_rss_mb": None}


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
           "--copies", str(k), "--quality", str(QUALITY), "--overwrite", "--no-progress",
           "--rotation-range", "30", "--width-shift-range", "0.1",
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


def _rate(r: dict) -> float:
    return r["copies"] / r["seconds"]


def _job_row(workers: int) -> str:
    return f"beam-expand run, {workers} worker{'s' if workers > 1 else ''}"


WORKERS = {1: [], 2: ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]}


def sweeps(work: Path, k: int, base: dict, scale_images: int, memory_images: list[int], repeat: int = 1) -> dict:
    """Scaling on ~20,000 copies (whole command and steady state) and peak RSS against the input size.

    The scaling runs go ``repeat`` times in turns, 1 worker then 2, and each keeps its fastest, as the table does.
    """
    out: dict = {"scaling": {}, "memory": {}}
    big = make_input(work / f"scale-{scale_images}", scale_images)
    for _ in range(repeat):
        for workers, extra in WORKERS.items():
            r = run_job(big, work / "out", k, extra)
            print(f"  measured {r['copies']:,} copies, {workers} worker(s): {_rate(r):,.0f} copies/s", file=sys.stderr)
            if workers not in out["scaling"] or _rate(r) > _rate(out["scaling"][workers]):
                out["scaling"][workers] = r
    for workers, r in out["scaling"].items():
        small = base[workers]
        # Steady state: the extra copies of the big run over its extra time (start-up and finalize cancel out).
        extra = r["seconds"] - small["seconds"]  # None when the runs are too small to tell (no extra time)
        r["steady_copies_per_s"] = (r["copies"] - small["copies"]) / extra if extra > 0 else None
    for n in memory_images:
        r = run_job(make_input(work / f"memory-{n}", n), work / "out", 1, [])
        out["memory"][n] = r
        print(f"  measured {n:,} images, K=1: peak RSS {r['peak_rss_mb']:,.0f} MB", file=sys.stderr)
        shutil.rmtree(work / f"memory-{n}", ignore_errors=True)
    return out


def print_sweeps(result: dict) -> None:
    """Prints the scaling and memory tables."""
    one, two = result["scaling"][1], result["scaling"][2]
    s1, s2 = one["steady_copies_per_s"], two["steady_copies_per_s"]
    steady = f"{s2 / s1:.2f}x steady state ({s1:,.0f} vs {s2:,.0f} copies/s)" if s1 and s2 else "steady state n/a"
    print(f"\n{one['copies']:,} copies: 1 worker {_rate(one):,.0f} copies/s, 2 workers {_rate(two):,.0f} copies/s; "
          f"2 workers / 1 worker: {_rate(two) / _rate(one):.2f}x whole command, {steady}")  # fmt: skip
    sizes = sorted(result["memory"])
    rss = [result["memory"][n]["peak_rss_mb"] for n in sizes]
    cells = ", ".join(f"{n:,} images: {m:,.0f} MB" for n, m in zip(sizes, rss, strict=True))
    print(f"peak RSS, 1 worker, K=1: {cells}; growth {rss[-1] / rss[0] - 1:+.1%}")


def main(argv=None) -> int:
    """Runs every measurement and prints the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--keras-images", type=int, default=100, help="Keras is slow: time it on fewer images")
    ap.add_argument("--scale-images", type=int, default=4000, help="images of the scaling sweep (x K copies)")
    ap.add_argument("--memory-images", default="2000,20000", help="input sizes of the memory sweep (K=1)")
    ap.add_argument("--no-sweeps", action="store_true", help="skip the scaling and memory sweeps")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each loop, job and scaling run; the fastest counts")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    ap.add_argument("--only-ops", action="store_true", help="only the per-op section")
    ap.add_argument("--only-kernels", action="store_true", help="only the kernels side by side")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="beam-expand-bench-"))
    sweep = None
    try:
        source = make_input(work / "photos", args.images)
        blobs = [p.read_bytes() for p in sorted(source.glob("*/*.jpg"))]
        k = args.copies
        from tests import bench_ops

        per_kernel = kernels(blobs, k)
        print_kernels(per_kernel)
        steps = job_steps(blobs, k, QUALITY)
        print_steps(steps)
        if args.only_kernels:
            return 0
        per_op = bench_ops.run(blobs)
        print(bench_ops.table(per_op))
        if args.only_ops:
            return 0
        # Every loop and the job run --repeat times, in turns (so a slow spell on a shared machine hits them all
        # alike); each keeps its fastest run, as timeit does.
        measures = [
            ("decode + K encodes (ceiling)", lambda: _loop(loop_ceiling, blobs, k)),
            ("bare OpenCV loop", lambda: _loop(loop_opencv, blobs, k)),
            ("bare Pillow loop", lambda: _loop(loop_pillow, blobs, k)),
            ("Keras ImageDataGenerator loop", lambda: _loop(loop_keras, blobs[: args.keras_images], k)),
        ] + [(_job_row(w), lambda extra=extra: run_job(source, work / "out", k, extra)) for w, extra in WORKERS.items()]
        rows = {}
        for _ in range(args.repeat):
            for name, measure in measures:
                r = measure()
                if name not in rows or _rate(r) > _rate(rows[name]):
                    rows[name] = r
                print(f"  measured {name}: {_rate(r):,.0f} copies/s", file=sys.stderr)
        base = {w: rows[_job_row(w)] for w in WORKERS}
        if not args.no_sweeps:
            sizes = [int(n) for n in args.memory_images.split(",")]
            sweep = sweeps(work, k, base, args.scale_images, sizes, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    opencv = _rate(rows["bare OpenCV loop"])
    keras = _rate(rows["Keras ImageDataGenerator loop"])
    ceiling = _rate(rows["decode + K encodes (ceiling)"])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nbeam-expand bench: {len(blobs):,} photos x K={k}, JPEG quality {QUALITY}, {machine}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"{'what':34s} {'copies/s':>10s} {'vs OpenCV loop':>15s} {'peak RSS':>10s}")
    for name, r in rows.items():
        r["copies_per_s"] = _rate(r)
        rss = f"{r['peak_rss_mb']:,.0f} MB" if r["peak_rss_mb"] else "-"
        print(f"{name:34s} {r['copies_per_s']:10,.0f} {r['copies_per_s'] / opencv:14.2f}x {rss:>10s}")
    one = _rate(base[1])
    print(f"1 worker: {one / opencv:.2f}x the OpenCV loop, {one / ceiling:.0%} of the ceiling, "
          f"{one / keras:.1f}x Keras; "
          f"2 workers / 1 worker: {_rate(base[2]) / one:.2f}x (whole command, start-up included)")  # fmt: skip
    if sweep:
        print_sweeps(sweep)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"images": len(blobs), "copies": k, "quality": QUALITY, "rows": rows, "ops": per_op,
              "kernels_ms": per_kernel, "steps_us": steps, "sweeps": sweep}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
