"""Geometric ops: the Keras-exact ``ImageDataGenerator`` op and ``resize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op
from transforms.functional import color as fcolor
from transforms.functional import geometric as fgeo
from transforms.registry import register

ShiftRange = float | int | Sequence[float]


def _check_range(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return value


def _check_shift(name: str, value: ShiftRange) -> float | int | list[float]:
    # Keras: int = whole pixels drawn from range(n), float < 1 = fraction of the side, float >= 1 = pixels,
    # list = choose one of the values; a random sign is applied to int and list draws.
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{name} as a list must hold numbers, got {value!r}")
        return list(value)
    return _check_range(name, value)


def _zoom_bounds(zoom_range: float | Sequence[float]) -> list[float]:
    if isinstance(zoom_range, int | float) and not isinstance(zoom_range, bool):
        return [1 - zoom_range, 1 + zoom_range]
    if isinstance(zoom_range, list | tuple) and len(zoom_range) == 2:
        return [float(zoom_range[0]), float(zoom_range[1])]
    raise ValueError(f"zoom_range must be a float or [lower, upper], got {zoom_range!r}")


def _sample_shift(rng: np.random.Generator, shift: Any, side: int) -> float:
    if not shift:
        return 0
    if isinstance(shift, float):
        value = float(rng.uniform(-shift, shift))
    else:  # int or list: np.random.choice semantics, then a random sign (Keras)
        value = float(rng.choice(shift)) * float(rng.choice([-1, 1]))
    if np.max(shift) < 1:
        value *= side
    return value


class ImageDataGenerator(Op):
    """Keras ``ImageDataGenerator``'s geometric and colour augmentation, pixel-compatible with Keras.

    Params are exactly the dict ``ImageDataGenerator.get_random_transform`` returns (``theta, tx, ty, shear, zx,
    zy, flip_horizontal, flip_vertical, channel_shift_intensity, brightness``), so
    ``ImageDataGenerator(fill_mode=..., cval=..., interpolation_order=...).apply_transform(x, params)`` replays a
    copy in Keras up to rounding. Steps run in Keras's order: affine warp, channel shift, horizontal flip, vertical
    flip, brightness. Keras's shift axes are transposed on non-square images (keras#17398): kept for parity.

    Args:
        rotation_range: Degrees; theta ~ U(-r, r).
        width_shift_range: Fraction of width (< 1), pixels (>= 1), int pixels or list of choices.
        height_shift_range: As ``width_shift_range`` for the height.
        shear_range: Shear angle in degrees, counter-clockwise.
        zoom_range: Float z for [1 - z, 1 + z], or [lower, upper]; zx and zy drawn independently.
        horizontal_flip: Flip left-right with probability 0.5.
        vertical_flip: Flip up-down with probability 0.5.
        fill_mode: ``constant``, ``nearest``, ``reflect`` or ``wrap`` (scipy.ndimage legacy meaning, as Keras).
        cval: Fill value for ``constant``.
        brightness_range: [lower, upper] factor for Pillow's ``ImageEnhance.Brightness``, or None.
        channel_shift_range: Shift ~ U(-r, r) added to all channels, clipped to the image's min/max.
        interpolation_order: 0 (nearest) or 1 (bilinear).
    """

    name = "image_data_generator"

    def __init__(
        self,
        rotation_range: float = 0,
        width_shift_range: ShiftRange = 0.0,
        height_shift_range: ShiftRange = 0.0,
        shear_range: float = 0.0,
        zoom_range: float | Sequence[float] = 0.0,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        fill_mode: str = "nearest",
        cval: float = 0.0,
        brightness_range: Sequence[float] | None = None,
        channel_shift_range: float = 0.0,
        interpolation_order: int = 1,
    ):
        self.rotation_range = _check_range("rotation_range", rotation_range)
        self.width_shift_range = _check_shift("width_shift_range", width_shift_range)
        self.height_shift_range = _check_shift("height_shift_range", height_shift_range)
        self.shear_range = _check_range("shear_range", shear_range)
        self.zoom_range = _zoom_bounds(zoom_range)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        if fill_mode not in fgeo.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(fgeo.FILL_MODES)}, got {fill_mode!r}")
        self.fill_mode = fill_mode
        self.cval = float(cval)
        if brightness_range is not None:
            if not isinstance(brightness_range, list | tuple) or len(brightness_range) != 2:
                raise ValueError(f"brightness_range must be [lower, upper], got {brightness_range!r}")
            brightness_range = [float(brightness_range[0]), float(brightness_range[1])]
        self.brightness_range = brightness_range
        self.channel_shift_range = _check_range("channel_shift_range", channel_shift_range)
        if interpolation_order not in (0, 1):
            raise ValueError(f"interpolation_order must be 0 or 1, got {interpolation_order!r}")
        self.interpolation_order = int(interpolation_order)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments (Keras's names and normalized values)."""
        return {
            "rotation_range": self.rotation_range,
            "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range,
            "shear_range": self.shear_range,
            "zoom_range": self.zoom_range,
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "fill_mode": self.fill_mode,
            "cval": self.cval,
            "brightness_range": self.brightness_range,
            "channel_shift_range": self.channel_shift_range,
            "interpolation_order": self.interpolation_order,
        }

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws Keras's transform dict (same draws, in Keras's order, from ``rng``)."""
        theta = float(rng.uniform(-self.rotation_range, self.rotation_range)) if self.rotation_range else 0
        tx = _sample_shift(rng, self.height_shift_range, meta.height)
        ty = _sample_shift(rng, self.width_shift_range, meta.width)
        shear = float(rng.uniform(-self.shear_range, self.shear_range)) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = (float(z) for z in rng.uniform(self.zoom_range[0], self.zoom_range[1], 2))
        flip_horizontal = bool(rng.random() < 0.5) and self.horizontal_flip
        flip_vertical = bool(rng.random() < 0.5) and self.vertical_flip
        channel_shift_intensity = None
        if self.channel_shift_range != 0:
            channel_shift_intensity = float(rng.uniform(-self.channel_shift_range, self.channel_shift_range))
        brightness = None
        if self.brightness_range is not None:
            brightness = float(rng.uniform(self.brightness_range[0], self.brightness_range[1]))
        return {
            "theta": theta,
            "tx": tx,
            "ty": ty,
            "shear": shear,
            "zx": zx,
            "zy": zy,
            "flip_horizontal": flip_horizontal,
            "flip_vertical": flip_vertical,
            "channel_shift_intensity": channel_shift_intensity,
            "brightness": brightness,
        }

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies Keras's ``apply_transform`` steps with fixed params."""
        height, width = image.shape[:2]
        matrix = fgeo.keras_transform_matrix(
            height,
            width,
            params.get("theta", 0),
            params.get("tx", 0),
            params.get("ty", 0),
            params.get("shear", 0),
            params.get("zx", 1),
            params.get("zy", 1),
        )
        # With colour steps, work in float32 as Keras does, and convert to uint8 where Keras does: by truncation
        # before Pillow's brightness, else by rounding at the end. Pure geometry stays uint8 (faster, and a
        # bilinear warp of uint8 rounds the same way).
        shift, brightness = params.get("channel_shift_intensity"), params.get("brightness")
        out = image.astype(np.float32) if (shift is not None or brightness is not None) else image
        if matrix is not None:
            out = fgeo.warp_affine_inverse(out, matrix, self.fill_mode, self.cval, self.interpolation_order)
        if shift is not None:
            out = fcolor.channel_shift(out, shift)
        out = fgeo.flip(out, bool(params.get("flip_horizontal")), bool(params.get("flip_vertical")))
        if brightness is not None:
            out = fcolor.brightness_pil(out.astype(np.uint8), brightness)
        elif out.dtype != np.uint8:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out


class Resize(Op):
    """Resizes every image to a fixed size (deterministic; applied once per source, before the copies).

    Args:
        height: Output height in pixels.
        width: Output width in pixels.
        interpolation: ``area`` (default; best for shrinking), ``bilinear``, ``bicubic`` or ``nearest``.
    """

    name = "resize"

    def __init__(self, height: int, width: int, interpolation: str = "area"):
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"resize needs a positive height and width, got {height}x{width}")
        if interpolation not in fgeo.RESIZE_METHODS:
            raise ValueError(f"interpolation must be one of {fgeo.RESIZE_METHODS}, got {interpolation!r}")
        self.height, self.width, self.interpolation = int(height), int(width), interpolation

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"height": self.height, "width": self.width, "interpolation": self.interpolation}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Resize has no randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Resizes to the configured size."""
        return fgeo.resize(image, self.height, self.width, self.interpolation)


register(ImageDataGenerator)
register(Resize)
