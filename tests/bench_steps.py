"""The job's own per-copy path, step by step, outside Beam: where a copy's time goes (part of ``make bench``).

Runs the functions ``ExpandFn`` and ``WriteShardsFn`` run, in their order, on the bench's photos with the bench's
policy (the Keras op from the job's flags, the quality gate on), timing each step in one pass (caches as cold as in
the job, so steps cost more than in the kernels' best-of-5); the shards are written to a temporary folder and re-read
as the workers verify them. The shares say where a copy's time goes; Beam's bundles, start-up and finalize come on
top.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict

# The policy the job builds from the bench's flags (--rotation-range 30 ... --horizontal-flip).
POLICY = {"version": 1, "ops": [{"op": "image_data_generator", "rotation_range": 30.0, "width_shift_range": 0.1,
                                 "height_shift_range": 0.1, "zoom_range": 0.2, "horizontal_flip": True}]}  # fmt: skip


def job_steps(blobs: list[bytes], k: int, quality: int) -> dict[str, float]:
    """Returns microseconds per copy of each step of the job's per-copy path (one pass over ``blobs``)."""
    from beam_jobs.sinks.publish import verify_shard
    from beam_jobs.sinks.writers import ParquetShardWriter, TFRecordShardWriter
    from schemas.arrow import arrow_schema
    from transforms.codec import decode_image, encode_image, to_working
    from transforms.expand import _json, pixel_sums
    from transforms.functional.geometric import reuse_padding
    from transforms.policies import Policy
    from transforms.quality import QualityGate, record_counts, thumbnail
    from transforms.seeding import op_rng

    policy = Policy.from_config(POLICY)
    gate = QualityGate()
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter

    with tempfile.TemporaryDirectory() as tmp:
        tfrecord = TFRecordShardWriter(f"{tmp}/a.tfrecord")
        parquet = ParquetShardWriter(f"{tmp}/a.parquet", arrow_schema(["a"]))
        for i, data in enumerate(blobs):
            key = f"a/{i}.jpg"
            t0 = clock()
            image, decode_step = decode_image(data)
            t1 = clock()
            pixel_sums(image)
            t2 = clock()
            working = to_working(image)
            source_thumb = thumbnail(working)
            t3 = clock()
            spent["decode (share of one per source)"] += t1 - t0
            spent["pixel statistics (share)"] += t2 - t1
            spent["BGRA working copy + gate's source thumbnail (share)"] += t3 - t2
            with reuse_padding():
                for c in range(1, k + 1):
                    t0 = clock()
                    for op_index in range(len(policy.ops)):
                        op_rng(0, key, c, op_index)
                    t1 = clock()
                    pixels, steps, _ = policy.augment(working, 0, key, c, "a")
                    t2 = clock()
                    gate.reasons(pixels, steps, working, source_thumb, False)
                    t3 = clock()
                    encoded = encode_image(pixels, "jpeg", quality, bgra=True)
                    t4 = clock()
                    record = {"image": encoded, "label": 0, "label_name": "a", "source_key": key, "copy_index": c,
                              "view_index": 0, "recipe": _json([decode_step, *steps]), "height": pixels.shape[0],
                              "width": pixels.shape[1], "split": "train"}  # fmt: skip
                    record_counts(record["recipe"])
                    t5 = clock()
                    tfrecord.write(record)
                    t6 = clock()
                    parquet.write(record)
                    t7 = clock()
                    spent["seeded generator (also inside augment)"] += t1 - t0
                    spent["augment: Keras params, matrix, warp, flip"] += t2 - t1
                    spent["quality gate checks"] += t3 - t2
                    spent["JPEG encode"] += t4 - t3
                    spent["record dict + recipe JSON"] += t5 - t4
                    spent["TFRecord: Example + frame + write"] += t6 - t5
                    spent["Parquet: row groups + write"] += t7 - t6
        t0 = clock()
        tfrecord.close()
        t1 = clock()
        parquet.close()
        t2 = clock()
        n = len(blobs) * k
        verify_shard(f"{tmp}/a.tfrecord", "tfrecord", n)
        t3 = clock()
        verify_shard(f"{tmp}/a.parquet", "parquet", n)
        t4 = clock()
        spent["TFRecord: Example + frame + write"] += t1 - t0
        spent["Parquet: row groups + write"] += t2 - t1
        spent["verification re-read (CRCs, sha256)"] += t4 - t2
    copies = len(blobs) * k
    return {name: seconds / copies * 1e6 for name, seconds in spent.items()}


def sum_steps(us: dict[str, float]) -> float:
    """Microseconds per copy of the whole path (the seeding line is also inside augment: counted once)."""
    return sum(v for name, v in us.items() if not name.startswith("seeded"))


def print_steps(us: dict[str, float]) -> None:
    """Prints the steps: microseconds per copy and share of the path."""
    print("\nthe job's per-copy path outside Beam, us per copy (one pass, one thread):")
    total = sum_steps(us)
    for name, v in us.items():
        share = "(in augment)" if name.startswith("seeded") else f"{v / total:12.1%}"
        print(f"  {name:56s} {v:7.1f} {share}")
    print(f"  sum {total / 1e3:.2f} ms per copy")
