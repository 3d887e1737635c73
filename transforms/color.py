"""Colour ops. Factor ops follow Pillow / torchvision: factor 1 is the identity, 0 the degenerate image."""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, as_range, uniform
from transforms.functional import color as fc
from transforms.registry import register


class _FactorOp(Op):
    """Shared shape of ops that draw one factor from a range and call one kernel."""

    tags = frozenset({"color"})
    _kernel = staticmethod(lambda image, factor: image)
    _center = 1.0
    _bounds: tuple[float | None, float | None] = (0.0, None)

    def __init__(self, factor: float | list[float] = 0.2):
        self.factor = as_range("factor", factor, center=self._center, lo=self._bounds[0], hi=self._bounds[1])

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"factor": self.factor}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the factor."""
        return {"factor": uniform(rng, self.factor)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the kernel with the drawn factor."""
        return type(self)._kernel(image, params["factor"])


class Brightness(_FactorOp):
    """Scales brightness by a factor (Pillow ``ImageEnhance.Brightness``); x means [1 - x, 1 + x].

    Args:
        factor: x for [1 - x, 1 + x], or [low, high].
    """

    name = "brightness"
    aliases = ("Brightness",)
    _kernel = staticmethod(fc.brightness_pil)


class Contrast(_FactorOp):
    """Scales contrast around the mean grey (Pillow ``ImageEnhance.Contrast``); x means [1 - x, 1 + x].

    Args:
        factor: x for [1 - x, 1 + x], or [low, high].
    """

    name = "contrast"
    aliases = ("Contrast",)
    _kernel = staticmethod(fc.contrast)


class Saturation(_FactorOp):
    """Scales saturation (Pillow ``ImageEnhance.Color``); x means [1 - x, 1 + x].

    Args:
        factor: x for [1 - x, 1 + x], or [low, high].
    """

    name = "saturation"
    aliases = ("Color", "Saturation")
    _kernel = staticmethod(fc.saturation)


class Sharpness(_FactorOp):
    """Sharpens (factor > 1) or blurs (< 1) (Pillow ``ImageEnhance.Sharpness``); x means [1 - x, 1 + x].

    Args:
        factor: x for [1 - x, 1 + x], or [low, high].
    """

    name = "sharpness"
    aliases = ("Sharpness", "RandomAdjustSharpness")
    _kernel = staticmethod(fc.sharpness)


class Hue(_FactorOp):
    """Rotates hue by a fraction of a full turn (torchvision ``adjust_hue``); x means [-x, x], |x| <= 0.5.

    Args:
        factor: x for [-x, x], or [low, high], within [-0.5, 0.5].
    """

    name = "hue"
    aliases = ("Hue",)
    _kernel = staticmethod(fc.hue)
    _center = 0.0
    _bounds = (-0.5, 0.5)

    def __init__(self, factor: float | list[float] = 0.05):
        super().__init__(factor)


class Gamma(_FactorOp):
    """Gamma correction ``255 * (x / 255) ** gamma`` (torchvision ``adjust_gamma``).

    Args:
        factor: Gamma range: x for [1 - x, 1 + x], or [low, high]; must stay > 0.
    """

    name = "gamma"
    aliases = ("RandomGamma", "Gamma")
    _kernel = staticmethod(fc.gamma)
    _bounds = (1e-3, None)


class ChannelShift(_FactorOp):
    """Adds one random intensity to all channels, clipped to the image's min/max (Keras ``channel_shift_range``).

    Args:
        factor: x for [-x, x] grey levels, or [low, high].
    """

    name = "channel_shift"
    aliases = ("random_channel_shift",)
    _kernel = staticmethod(fc.channel_shift)
    _center = 0.0
    _bounds = (-255.0, 255.0)

    def __init__(self, factor: float | list[float] = 20.0):
        super().__init__(factor)


class ColorJitter(Op):
    """Brightness, contrast, saturation and hue in a random order (torchvision ``ColorJitter``).

    Args:
        brightness: x for [1 - x, 1 + x], or [low, high]; 0 skips it.
        contrast: As ``brightness``.
        saturation: As ``brightness``.
        hue: x for [-x, x] (|x| <= 0.5), or [low, high]; 0 skips it.
    """

    name = "color_jitter"
    tags = frozenset({"color"})
    aliases = ("ColorJitter",)
    _KERNELS = {"brightness": fc.brightness_pil, "contrast": fc.contrast, "saturation": fc.saturation, "hue": fc.hue}

    def __init__(self, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0):
        self.ranges = {
            "brightness": as_range("brightness", brightness, center=1.0, lo=0.0),
            "contrast": as_range("contrast", contrast, center=1.0, lo=0.0),
            "saturation": as_range("saturation", saturation, center=1.0, lo=0.0),
            "hue": as_range("hue", hue, center=0.0, lo=-0.5, hi=0.5),
        }

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return dict(self.ranges)

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the order and every active factor."""
        names = list(self._KERNELS)
        order = [names[i] for i in rng.permutation(len(names))]
        identity = {"brightness": [1.0, 1.0], "contrast": [1.0, 1.0], "saturation": [1.0, 1.0], "hue": [0.0, 0.0]}
        active = [n for n in order if self.ranges[n] != identity[n]]
        return {"order": active, **{n: uniform(rng, self.ranges[n]) for n in active}}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the drawn adjustments in the drawn order."""
        out = image
        for n in params["order"]:
            out = self._KERNELS[n](out, params[n])
        return out if out is not image else image.copy()


class Grayscale(Op):
    """Converts to ITU-R 601-2 luma (Pillow ``L``), with 1 or 3 output channels.

    Args:
        channels: 3 (default; keeps the shape) or 1.
    """

    name = "grayscale"
    tags = frozenset({"color"})
    aliases = ("ToGray", "Grayscale", "RandomGrayscale")

    def __init__(self, channels: int = 3):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.channels = channels

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"channels": self.channels}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """No randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Converts to grey."""
        return fc.grayscale(image, self.channels)


class _Deterministic(Op):
    tags = frozenset({"color"})
    _kernel = staticmethod(lambda image: image)

    def __init__(self):
        pass

    def config(self) -> dict[str, Any]:
        """No arguments."""
        return {}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """No randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the kernel."""
        return type(self)._kernel(image)


class Invert(_Deterministic):
    """Inverts every value (``255 - x``)."""

    name = "invert"
    aliases = ("Invert", "InvertImg", "RandomInvert")
    _kernel = staticmethod(fc.invert)


class Equalize(_Deterministic):
    """Equalizes each channel's histogram (Pillow ``ImageOps.equalize``)."""

    name = "equalize"
    aliases = ("Equalize", "RandomEqualize")
    _kernel = staticmethod(fc.equalize)


class Autocontrast(_Deterministic):
    """Stretches each channel's min..max to 0..255 (Pillow ``ImageOps.autocontrast``)."""

    name = "autocontrast"
    aliases = ("AutoContrast", "RandomAutocontrast")
    _kernel = staticmethod(fc.autocontrast)


class Solarize(Op):
    """Inverts values at or above a threshold (Pillow ``ImageOps.solarize``); 256 is the identity.

    Args:
        threshold: A threshold, or [low, high] to draw one from.
    """

    name = "solarize"
    tags = frozenset({"color"})
    aliases = ("Solarize", "RandomSolarize")

    def __init__(self, threshold: float | list[float] = 128):
        self.threshold = as_range("threshold", threshold, lo=0, hi=256)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"threshold": self.threshold}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the threshold."""
        return {"threshold": uniform(rng, self.threshold)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Solarizes."""
        return fc.solarize(image, params["threshold"])


class Posterize(Op):
    """Keeps the most significant bits of each value (Pillow ``ImageOps.posterize``).

    Args:
        bits: Bits kept (1..8), or [low, high] to draw an integer from.
    """

    name = "posterize"
    tags = frozenset({"color"})
    aliases = ("Posterize", "RandomPosterize")

    def __init__(self, bits: int | list[int] = 4):
        lo, hi = as_range("bits", bits, lo=1, hi=8)
        if lo != int(lo) or hi != int(hi):
            raise ValueError(f"bits must be integers in 1..8, got {bits!r}")
        self.bits = [int(lo), int(hi)]

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"bits": self.bits}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the number of bits."""
        return {"bits": int(rng.integers(self.bits[0], self.bits[1] + 1))}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Posterizes."""
        return fc.posterize(image, params["bits"])


for _op in (Brightness, Contrast, Saturation, Sharpness, Hue, Gamma, ChannelShift, ColorJitter, Grayscale, Invert,
            Equalize, Autocontrast, Solarize, Posterize):  # fmt: skip
    register(_op)
