"""Noise, blur and compression ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, as_range, noise_seed, uniform
from transforms.functional import noise as fn
from transforms.registry import register


def _odd_sizes(name: str, ksize: int | list[int]) -> list[int]:
    lo, hi = as_range(name, ksize, lo=1, hi=255)
    sizes = [k for k in range(int(lo), int(hi) + 1) if k % 2 == 1]
    if not sizes:
        raise ValueError(f"{name} must include an odd size, got {ksize!r}")
    return sizes


class GaussianNoise(Op):
    """Adds Gaussian noise with a random standard deviation (grey levels).

    Args:
        std: x for [0, x], or [low, high].
        per_channel: Independent noise per channel (else the same for all channels).
    """

    name = "gaussian_noise"
    tags = frozenset({"noise"})
    aliases = ("GaussNoise", "GaussianNoise")

    def __init__(self, std: float | list[float] = 10.0, per_channel: bool = True):
        self.std = as_range("std", [0.0, std] if isinstance(std, int | float) else std, lo=0)
        self.per_channel = bool(per_channel)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"std": self.std, "per_channel": self.per_channel}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the deviation and the seed of the noise field."""
        return {"std": uniform(rng, self.std), "noise_seed": noise_seed(rng)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Adds the noise field."""
        return fn.gaussian_noise(image, params["std"], params["noise_seed"], self.per_channel)


class ImpulseNoise(Op):
    """Salt-and-pepper noise on a random fraction of pixels.

    Args:
        amount: x for [0, x], or [low, high] fraction of pixels.
        salt_vs_pepper: Share of affected pixels set to white.
    """

    name = "impulse_noise"
    tags = frozenset({"noise"})
    aliases = ("SaltAndPepper",)

    def __init__(self, amount: float | list[float] = 0.02, salt_vs_pepper: float = 0.5):
        self.amount = as_range("amount", [0.0, amount] if isinstance(amount, int | float) else amount, lo=0, hi=1)
        if not 0 <= salt_vs_pepper <= 1:
            raise ValueError(f"salt_vs_pepper must be in [0, 1], got {salt_vs_pepper!r}")
        self.salt_vs_pepper = float(salt_vs_pepper)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"amount": self.amount, "salt_vs_pepper": self.salt_vs_pepper}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the fraction and the seed of the noise field."""
        return {"amount": uniform(rng, self.amount), "noise_seed": noise_seed(rng)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Sets the drawn pixels to white or black."""
        return fn.impulse_noise(image, params["amount"], params["noise_seed"], self.salt_vs_pepper)


class _KernelSizeOp(Op):
    tags = frozenset({"blur"})
    _kernel = staticmethod(lambda image, k: image)

    def __init__(self, ksize: int | list[int] = (3, 7)):
        self.sizes = _odd_sizes("ksize", list(ksize) if isinstance(ksize, tuple) else ksize)
        self.ksize = [self.sizes[0], self.sizes[-1]]

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"ksize": self.ksize}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws an odd kernel size."""
        return {"ksize": int(self.sizes[int(rng.integers(len(self.sizes)))])}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Filters with the drawn kernel size."""
        return type(self)._kernel(image, params["ksize"])


class BoxBlur(_KernelSizeOp):
    """Mean filter with a random odd kernel size.

    Args:
        ksize: Odd size, or [low, high] (odd sizes in between are drawn).
    """

    name = "box_blur"
    aliases = ("Blur",)
    _kernel = staticmethod(fn.box_blur)


class MedianBlur(_KernelSizeOp):
    """Median filter with a random odd kernel size.

    Args:
        ksize: Odd size, or [low, high] (odd sizes in between are drawn).
    """

    name = "median_blur"
    aliases = ("MedianBlur",)
    _kernel = staticmethod(fn.median_blur)


class GaussianBlur(Op):
    """Gaussian blur with a random sigma (torchvision ``GaussianBlur``; kernel covers +-3 sigma).

    Args:
        sigma: x for [0.1, x], or [low, high].
    """

    name = "gaussian_blur"
    tags = frozenset({"blur"})
    aliases = ("GaussianBlur",)

    def __init__(self, sigma: float | list[float] = (0.1, 2.0)):
        self.sigma = as_range("sigma", [0.1, sigma] if isinstance(sigma, int | float) else list(sigma), lo=1e-3)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"sigma": self.sigma}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws sigma."""
        return {"sigma": uniform(rng, self.sigma)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Blurs."""
        return fn.gaussian_blur(image, params["sigma"])


class JpegQuality(Op):
    """JPEG compression artifacts at a random quality.

    Args:
        quality: [low, high] JPEG quality, 1..100.
    """

    name = "jpeg_quality"
    tags = frozenset({"noise"})
    aliases = ("ImageCompression", "JpegCompression", "JPEG")

    def __init__(self, quality: list[int] = (30, 90)):
        lo, hi = as_range("quality", list(quality) if isinstance(quality, tuple) else quality, lo=1, hi=100)
        self.quality = [int(lo), int(hi)]

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"quality": self.quality}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the quality."""
        return {"quality": int(rng.integers(self.quality[0], self.quality[1] + 1))}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Round-trips through JPEG."""
        return fn.jpeg_quality(image, params["quality"])


for _op in (GaussianNoise, ImpulseNoise, BoxBlur, MedianBlur, GaussianBlur, JpegQuality):
    register(_op)
