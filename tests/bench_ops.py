"""Per-op timings for ``make bench``: ms per 320x240 photo, next to the Keras/TF and Pillow equivalents.

Each figure is the median over the photos of one op application (sampling + apply), on one core.
"""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from transforms.compose import _run
from transforms.policies import PRESETS, Policy
from transforms.registry import build_op

SIZE = (240, 320)


def _keras(name):
    """Returns the Keras layer / tf.image call with the same meaning as our op, or None."""
    import tensorflow as tf

    layers = tf.keras.layers
    table = {
        "hflip": lambda: layers.RandomFlip("horizontal"),
        "vflip": lambda: layers.RandomFlip("vertical"),
        "affine": lambda: layers.RandomRotation(0.1),
        "random_crop": lambda: layers.RandomCrop(200, 280),
        "center_crop": lambda: layers.CenterCrop(200, 280),
        "resize": lambda: layers.Resizing(200, 280),
        "contrast": lambda: layers.RandomContrast(0.3),
        "brightness": lambda: layers.RandomBrightness(0.2),
        "image_data_generator": None,
        "hue": lambda: lambda x: tf.image.adjust_hue(x, 0.1),
        "saturation": lambda: lambda x: tf.image.adjust_saturation(x, 1.3),
        "gamma": lambda: lambda x: tf.image.adjust_gamma(x, 0.8),
        "grayscale": lambda: lambda x: tf.image.rgb_to_grayscale(x),
        "jpeg_quality": lambda: lambda x: tf.image.adjust_jpeg_quality(tf.cast(x, tf.uint8), 50),
        "rot90": lambda: lambda x: tf.image.rot90(x, 1),
    }
    factory = table.get(name)
    if factory is None:
        return None
    made = factory()
    if isinstance(made, layers.Layer):  # random layers only augment in training mode
        return lambda x, layer=made: layer(x, training=True)
    return made


PIL_EQUIV = {
    "hflip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "vflip": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "affine": lambda im: im.rotate(15, resample=Image.Resampling.BILINEAR),
    "resize": lambda im: im.resize((280, 200), Image.Resampling.BILINEAR),
    "center_crop": lambda im: im.crop((20, 20, 300, 220)),
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.2),
    "saturation": lambda im: ImageEnhance.Color(im).enhance(1.2),
    "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(1.5),
    "grayscale": lambda im: im.convert("L"),
    "invert": ImageOps.invert,
    "solarize": lambda im: ImageOps.solarize(im, 128),
    "posterize": lambda im: ImageOps.posterize(im, 4),
    "equalize": ImageOps.equalize,
    "autocontrast": ImageOps.autocontrast,
    "box_blur": lambda im: im.filter(ImageFilter.BoxBlur(2)),
    "gaussian_blur": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "median_blur": lambda im: im.filter(ImageFilter.MedianFilter(5)),
    "jpeg_quality": lambda im: Image.open(io.BytesIO(_save_jpeg(im))).convert("RGB"),
}

OPS = {
    "image_data_generator": {"rotation_range": 30, "width_shift_range": 0.1, "height_shift_range": 0.1,
                             "zoom_range": 0.2, "horizontal_flip": True},
    "affine": {"degrees": 15, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
    "hflip": {"p": 1.0}, "vflip": {"p": 1.0}, "rot90": {"k": [1]},
    "random_crop": {"height": 200, "width": 280}, "random_resized_crop": {},
    "center_crop": {"height": 200, "width": 280}, "resize": {"height": 200, "width": 280, "interpolation": "bilinear"},
    "pad": {"padding": 8}, "perspective": {},
    "brightness": {}, "contrast": {"factor": 0.3}, "gamma": {}, "saturation": {}, "hue": {"factor": 0.1},
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}, "channel_shift": {},
    "grayscale": {}, "invert": {}, "solarize": {}, "posterize": {}, "equalize": {}, "autocontrast": {},
    "sharpness": {"factor": 0.5}, "gaussian_noise": {}, "impulse_noise": {}, "box_blur": {"ksize": 5},
    "gaussian_blur": {"sigma": [1.0, 2.0]}, "median_blur": {"ksize": 5}, "jpeg_quality": {}, "cutout": {},
    "grid_mask": {},
}  # fmt: skip


def _save_jpeg(im):
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=50)
    return buf.getvalue()


def _median_ms(fn, inputs, repeat=1) -> float:
    times = []
    for x in inputs:
        for _ in range(repeat):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def photos(blobs: list[bytes], n: int = 40) -> list[np.ndarray]:
    """Decodes ``n`` photos and resizes them to 320x240."""
    out = []
    for b in blobs[:n]:
        img = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        out.append(cv2.resize(img, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA))
    return out


def run(blobs: list[bytes], with_keras: bool = True) -> dict:
    """Times every op, its equivalents and every preset; returns rows for the table and JSON.

    Everything runs on one core: OpenCV and TensorFlow are limited to one thread (the targets are per core).
    """
    cv2.setNumThreads(1)
    if with_keras:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    images = photos(blobs)
    rng = np.random.default_rng(0)
    rows = {}
    for name, config in OPS.items():
        op = build_op(name, config)
        ours = _median_ms(lambda x, op=op: _run(op, rng, x), images)
        keras_ms = pil_ms = None
        if with_keras and (layer := _keras(name)) is not None:
            import tensorflow as tf

            tensors = [tf.constant(x, dtype=tf.float32) for x in images[:10]]
            layer(tensors[0])  # build / trace once
            keras_ms = _median_ms(lambda x, layer=layer: layer(x), tensors)
        if name in PIL_EQUIV:
            pils = [Image.fromarray(x) for x in images]
            pil_ms = _median_ms(PIL_EQUIV[name], pils)
        rows[name] = {"ms": ours, "keras_ms": keras_ms, "pillow_ms": pil_ms}
    if with_keras:
        import tensorflow as tf

        gen = tf.keras.preprocessing.image.ImageDataGenerator(**OPS["image_data_generator"])
        floats = [x.astype(np.float32) for x in images[:10]]
        rows["image_data_generator"]["keras_ms"] = _median_ms(gen.random_transform, floats)
    presets = {}
    for name, config in PRESETS.items():
        policy = Policy.from_config(config)
        # A different (key, copy) per call, so the median is over the policy's draws, not one fixed draw.
        keys = iter(range(10**9))
        presets[name] = _median_ms(lambda x, p=policy, k=keys: p.augment(x, 0, f"k{next(k)}", 1), images, repeat=5)
    return {"ops": rows, "presets": presets}


def table(result: dict) -> str:
    """Formats the per-op and per-preset timings."""
    fmt = lambda v: f"{v:8.3f}" if v is not None else f"{'-':>8s}"  # noqa: E731
    lines = [f"{'op (ms per 320x240 photo)':26s} {'ours':>8s} {'Keras/TF':>8s} {'Pillow':>8s}"]
    for name, r in result["ops"].items():
        lines.append(f"{name:26s} {fmt(r['ms'])} {fmt(r['keras_ms'])} {fmt(r['pillow_ms'])}")
    slower = [n for n, r in result["ops"].items() if r["keras_ms"] is not None and r["ms"] > r["keras_ms"]]
    lines.append(f"ops slower than their Keras/TF counterpart: {', '.join(slower) or 'none'}")
    lines.append("")
    lines.append(f"{'preset (ms per copy, no encode)':32s} {'ms':>8s}")
    for name, ms in result["presets"].items():
        lines.append(f"{name:32s} {ms:8.3f}")
    return "\n".join(lines)
