"""``make demo-train``: the same small Keras CNN trained on the raw photos and on their expansion, side by side.

    make demo-train                                  # flowers-mini (200 photos) if present, else the `shapes` dataset
    make demo-train ARGS="--source path/to/class_folders --copies 4 --epochs 10"

One ``beam-expand run`` writes everything both models need: ``--splits`` holds a validation split out by key
hash (written unaugmented, never expanded), ``--include-original`` keeps every training photo as copy 0 beside
its K augmented copies. The raw model trains on the copy-0 records only, the expanded model on all training
records; both are evaluated on the same validation records, read with tf.data from the same TFRecord shards.
An epoch is the same number of steps for both (the raw records are repeated K+1 times), so the only difference
is what the images show. Seeds are fixed; TensorFlow is a dev dependency only (``pip install -e '.[dev]'``).

This is a demo, not a test: it prints what it measured and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from tests.fixtures import FLOWERS_MINI

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def expand(args: argparse.Namespace, out: Path) -> list[str]:
    """Runs ``beam-expand run`` in this process; returns the command line it ran."""
    from beam_jobs.cli import main

    if args.source:
        source = ["--source", args.source]
    elif FLOWERS_MINI.is_dir():
        source = ["--source", str(FLOWERS_MINI)]
    else:
        source = ["--dataset", "shapes"]
    argv = ["run", *source, "--output", str(out), "--overwrite", "--copies", str(args.copies), "--include-original",
            "--splits", f"train={1 - args.validation:g},validation={args.validation:g}", "--image-size",
            f"{args.image_size},{args.image_size}", "--seed", str(args.seed), "--no-progress"]  # fmt: skip
    if main(argv) != 0:
        sys.exit("beam-expand run failed")
    return argv


def datasets(out: Path, copies: int, batch: int, seed: int):
    """Returns the raw train, expanded train and validation tf.data pipelines, class names and record counts."""
    import tensorflow as tf

    from schemas.tf_example import tf_feature_spec

    spec = tf_feature_spec()
    names = (out / "label.labels.txt").read_text().split()

    def read(split: str):
        files = sorted(str(p) for p in out.glob(f"*-{split}.tfrecord-*"))
        return tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, spec))

    def pixels(r):
        return tf.io.decode_jpeg(r["image"], channels=3), r["label"]

    expanded = read("train").map(pixels).cache()
    raw = read("train").filter(lambda r: r["copy_index"] == 0).map(pixels).cache()
    n = sum(1 for _ in expanded)

    def batches(ds, repeat: int = 1):
        # A known length lets Keras size its epochs from the start (filter() makes it unknown).
        ds = ds.repeat(repeat).apply(tf.data.experimental.assert_cardinality(n))
        return ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch).prefetch(tf.data.AUTOTUNE)

    validation = read("validation").map(pixels).cache()
    n_val = sum(1 for _ in validation)
    validation = validation.apply(tf.data.experimental.assert_cardinality(n_val)).batch(batch)
    return batches(raw, copies + 1), batches(expanded), validation, names, n, n_val


def model(size: int, classes: int):
    """The CNN of TensorFlow's image classification tutorial (three conv blocks, one dense layer)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(classes),
        ]
    )


def train(label: str, train_ds, validation, size: int, classes: int, epochs: int, seed: int):
    """Trains one model from the same initial weights, printing each epoch; returns its history, wall and CPU s."""
    import keras

    keras.utils.set_random_seed(seed)
    net = model(size, classes)
    net.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])  # fmt: skip
    line = "  {} epoch {}: val acc {:.3f}, val loss {:.3f}"
    show = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: print(
            line.format(label, e + 1, logs["val_accuracy"], logs["val_loss"]), flush=True
        )
    )
    start, cpu = time.monotonic(), time.process_time()
    history = net.fit(train_ds, validation_data=validation, epochs=epochs, verbose=0, shuffle=False, callbacks=[show])
    return history.history, time.monotonic() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    """Expands, trains both models and prints their validation accuracy and loss per epoch."""
    p = argparse.ArgumentParser(prog="demo_train", description=__doc__.split("\n")[0])
    p.add_argument("--source", help="class folders or archive (default: flowers-mini if present, else shapes)")
    p.add_argument("--copies", type=int, default=9, help="augmented copies per training image (default 9)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--image-size", type=int, default=96, help="square side in pixels (default 96)")
    p.add_argument("--validation", type=float, default=0.3, help="held-out fraction (default 0.3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "out" / "demo-train"), help="where the expansion is written")
    args = p.parse_args(argv)

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    command = expand(args, out)
    expand_s = time.monotonic() - start
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    raw, expanded, validation, names, n, n_val = datasets(out, args.copies, args.batch_size, args.seed)
    print(f"\nbeam-expand {' '.join(command)}\n({expand_s:.0f}s): {n // (args.copies + 1)} training photos -> {n} "
          f"records, {n_val} validation photos, {len(names)} classes: {', '.join(names)}")  # fmt: skip
    runs = {}
    for label, ds in (("raw", raw), ("expanded", expanded)):
        runs[label] = train(label, ds, validation, args.image_size, len(names), args.epochs, args.seed)
        print(f"trained on {label}: {runs[label][1]:.0f}s ({runs[label][2]:.0f} CPU s)", flush=True)
    (h_raw, t_raw, c_raw), (h_exp, t_exp, c_exp) = runs["raw"], runs["expanded"]
    print(f"\nvalidation ({n_val} photos); each epoch = {n} training images for both models\n")
    print("epoch  raw acc  raw loss  expanded acc  expanded loss   (train acc: raw / expanded)")
    for e in range(args.epochs):
        print(f"{e + 1:5d}  {h_raw['val_accuracy'][e]:7.3f}  {h_raw['val_loss'][e]:8.3f}  "
              f"{h_exp['val_accuracy'][e]:12.3f}  {h_exp['val_loss'][e]:13.3f}   "
              f"({h_raw['accuracy'][e]:.3f} / {h_exp['accuracy'][e]:.3f})")  # fmt: skip
    last = min(5, args.epochs)
    summaries = {
        "best": (max, min),
        f"mean of the last {last} epochs": (lambda v: sum(v[-last:]) / last,) * 2,
    }
    for what, (acc, loss) in summaries.items():
        print(f"{what}: validation accuracy raw {acc(h_raw['val_accuracy']):.3f}, expanded "
              f"{acc(h_exp['val_accuracy']):.3f}; validation loss raw {loss(h_raw['val_loss']):.3f}, "
              f"expanded {loss(h_exp['val_loss']):.3f}")  # fmt: skip
    print(f"time: expand {expand_s:.0f}s; train raw {t_raw:.0f}s ({c_raw:.0f} CPU s), expanded {t_exp:.0f}s "
          f"({c_exp:.0f} CPU s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
