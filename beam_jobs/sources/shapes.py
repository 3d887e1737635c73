"""``shapes``: the built-in generated dataset (6 classes x 50 images of drawn shapes), made offline.

Each image is a pure function of (class, index): random background gradient and colour, shape colour, size,
position and rotation from ``numpy.random.default_rng([SEED, class, index])``, drawn with OpenCV and written as
PNG. It exists so that ``make expand`` works on any machine with no network.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import cv2
import numpy as np

CLASSES = ("circle", "cross", "ellipse", "square", "star", "triangle")
PER_CLASS = 50
SIZE = 128
SEED = 20_251_123
VERSION = 1
DESCRIPTION = "Generated shapes: 6 classes x 50 images (128x128 PNG) of filled shapes on varied backgrounds."


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == "square":
        pts = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
        pts = [(x * 0.75, y * 0.75) for x, y in pts]
    elif kind == "triangle":
        pts = [(np.cos(a), np.sin(a)) for a in np.deg2rad([90, 210, 330])]
    elif kind == "star":
        pts = []
        for i in range(10):
            rad = 1.0 if i % 2 == 0 else 0.42
            a = np.deg2rad(90 + 36 * i)
            pts.append((rad * np.cos(a), rad * np.sin(a)))
    elif kind == "cross":
        w = 0.3
        pts = [
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
        ]
    else:
        raise ValueError(kind)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts], dtype=np.int32)


def draw(class_index: int, index: int) -> np.ndarray:
    """Draws image ``index`` of class ``class_index`` as an RGB uint8 array."""
    rng = np.random.default_rng([SEED, class_index, index])
    kind = CLASSES[class_index]
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, SIZE)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((SIZE, SIZE, 3))
    img += rng.normal(0, 6, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(np.rot90(img, int(rng.integers(0, 4))))
    colour = (255 - (c0 + c1) // 2 + rng.integers(-40, 41, 3)) % 256
    colour = tuple(int(v) for v in colour)
    r = float(rng.uniform(0.18, 0.34)) * SIZE
    cx, cy = rng.uniform(r, SIZE - r, 2)
    angle = float(rng.uniform(0, 2 * np.pi))
    if kind == "circle":
        cv2.circle(img, (int(cx), int(cy)), int(r), colour, -1, cv2.LINE_AA)
    elif kind == "ellipse":
        axes = (int(r), int(r * rng.uniform(0.35, 0.55)))
        cv2.ellipse(img, (int(cx), int(cy)), axes, np.rad2deg(angle), 0, 360, colour, -1, cv2.LINE_AA)
    else:
        cv2.fillPoly(img, [_polygon(kind, cx, cy, r, angle)], colour, cv2.LINE_AA)
    return img


def ensure_shapes(cache_dir: str) -> str:
    """Returns the folder holding the shapes dataset, generating it once (atomically) into the cache."""
    root = os.path.join(cache_dir, f"shapes-v{VERSION}")
    # The marker sits beside the folder, not in it, so it is never listed as a stray input file.
    marker = root + ".complete"
    if os.path.exists(marker) and os.path.isdir(root):
        return root
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shapes-", dir=cache_dir)
    for ci, name in enumerate(CLASSES):
        os.makedirs(os.path.join(tmp, name))
        for i in range(PER_CLASS):
            ok, buf = cv2.imencode(".png", cv2.cvtColor(draw(ci, i), cv2.COLOR_RGB2BGR))
            with open(os.path.join(tmp, name, f"{name}_{i:03d}.png"), "wb") as f:
                f.write(buf.tobytes())
    if os.path.exists(root):
        shutil.rmtree(root)
    os.replace(tmp, root)
    open(marker, "w").close()
    return root
