"""Occlusion ops: random erasing (cutout) and GridMask."""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, as_range, noise_seed
from transforms.functional import occlusion as fo
from transforms.registry import register


class Cutout(Op):
    """Erases a random rectangle (torchvision ``RandomErasing``: area and aspect drawn, 10 tries).

    Args:
        scale: Range of the erased area as a fraction of the image.
        ratio: Range of the rectangle's aspect ratio (height / width), drawn log-uniformly.
        fill: A grey level 0..255, or "random" for uniform noise.
    """

    name = "cutout"
    tags = frozenset({"occlusion"})
    aliases = ("RandomErasing", "CoarseDropout", "Cutout")

    def __init__(self, scale: list[float] = (0.02, 0.33), ratio: list[float] = (0.3, 3.3), fill: int | str = 0):
        self.scale = as_range("scale", list(scale), lo=0, hi=1)
        self.ratio = as_range("ratio", list(ratio), lo=1e-6)
        if fill != "random" and not (isinstance(fill, int) and 0 <= fill <= 255):
            raise ValueError(f"fill must be a grey level 0..255 or 'random', got {fill!r}")
        self.fill = fill

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"scale": self.scale, "ratio": self.ratio, "fill": self.fill}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the rectangle (or none, if 10 tries do not fit, as torchvision)."""
        h, w = meta.height, meta.width
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            area = h * w * rng.uniform(*self.scale)
            aspect = float(np.exp(rng.uniform(*log_ratio)))
            eh, ew = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                return {"top": int(rng.integers(0, h - eh + 1)), "left": int(rng.integers(0, w - ew + 1)),
                        "height": eh, "width": ew, "noise_seed": noise_seed(rng)}  # fmt: skip
        return {"top": 0, "left": 0, "height": 0, "width": 0, "noise_seed": 0}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Erases the rectangle."""
        fill = None if self.fill == "random" else self.fill
        return fo.erase(image, params["top"], params["left"], params["height"], params["width"], fill,
                        params["noise_seed"])  # fmt: skip


class GridMask(Op):
    """GridMask (Chen et al. 2020): a grid of squares removed, with random cell size and offset.

    Args:
        d: [low, high] cell size in pixels.
        ratio: Side of the removed square as a fraction of the cell (0..1).
        fill: Grey level written into removed squares.
    """

    name = "grid_mask"
    tags = frozenset({"occlusion"})
    aliases = ("GridMask", "GridDropout")

    def __init__(self, d: list[int] = (16, 48), ratio: float = 0.5, fill: int = 0):
        lo, hi = as_range("d", list(d) if isinstance(d, tuple) else d, lo=2)
        self.d = [int(lo), int(hi)]
        if not 0 < ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {ratio!r}")
        self.ratio = float(ratio)
        self.fill = int(fill)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"d": self.d, "ratio": self.ratio, "fill": self.fill}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the cell size and the grid offset."""
        d = int(rng.integers(self.d[0], self.d[1] + 1))
        return {"d": d, "offset_y": int(rng.integers(0, d)), "offset_x": int(rng.integers(0, d))}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Masks the grid."""
        return fo.grid_mask(image, params["d"], self.ratio, params["offset_y"], params["offset_x"], self.fill)


register(Cutout)
register(GridMask)
