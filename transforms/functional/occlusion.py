"""Occlusion kernels: rectangles and grids of pixels replaced by a fill."""

from __future__ import annotations

import numpy as np


def erase(image: np.ndarray, top: int, left: int, height: int, width: int, fill: int | None, noise_seed: int = 0):
    """Replaces a rectangle with a constant ``fill`` or, when ``fill`` is None, uniform random values."""
    out = image.copy()
    region = out[top : top + height, left : left + width]
    if fill is None:
        region[...] = np.random.default_rng(noise_seed).integers(0, 256, region.shape, dtype=np.uint8)
    else:
        region[...] = np.uint8(fill)
    return out


def grid_mask(image: np.ndarray, d: int, ratio: float, offset_y: int, offset_x: int, fill: int = 0) -> np.ndarray:
    """GridMask (Chen et al. 2020): in every ``d`` x ``d`` cell, a square of side ``ratio * d`` is filled."""
    h, w = image.shape[:2]
    keep = max(1, int(round(d * (1 - ratio))))
    ys = (np.arange(h) + offset_y) % d >= keep
    xs = (np.arange(w) + offset_x) % d >= keep
    out = image.copy()
    out[ys[:, None] & xs[None, :]] = np.uint8(fill)
    return out
