"""Geometric ops: the Keras-exact ``ImageDataGenerator`` op and ``resize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, as_range, check_choice, check_probability, uniform
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
    if (max(shift) if isinstance(shift, list | tuple) else shift) < 1:  # np.max's semantics, without its overhead
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
    tags = frozenset({"geometric", "flip", "color"})
    aliases = ("ImageDataGenerator",)

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

    def label_events(self, params: dict[str, Any]) -> tuple[str, ...]:
        """Flips done by this application."""
        return tuple(e for e, k in (("hflip", "flip_horizontal"), ("vflip", "flip_vertical")) if params.get(k))

    def channel_free(self) -> bool:
        """Pure geometry is channel-free; Keras's colour steps use the image's overall min/max, so they are not."""
        return self.brightness_range is None and self.channel_shift_range == 0

    def without(self, banned: frozenset[str]) -> Op | None:
        """Drops the banned parts (flips, colour steps, or all geometry) instead of the whole op."""
        if self.name in banned or "geometric" in banned:
            return None
        config = self.config()
        if "flip" in banned or "hflip" in banned:
            config["horizontal_flip"] = False
        if "flip" in banned or "vflip" in banned:
            config["vertical_flip"] = False
        if "color" in banned:
            config["brightness_range"], config["channel_shift_range"] = None, 0.0
        return type(self)(**config)

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
        flip_h, flip_v = bool(params.get("flip_horizontal")), bool(params.get("flip_vertical"))
        if flip_h or flip_v or out is image:  # the warp already made a new array: no copy just to not flip
            out = fgeo.flip(out, flip_h, flip_v)
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
    tags = frozenset({"geometric", "size"})
    spatial = True
    aliases = ("Resize", "Resizing")

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


_FILL = ("constant", "nearest", "reflect", "wrap")


class Affine(Op):
    """Random rotation, translation, scale and shear in one warp (torchvision ``RandomAffine`` parameters).

    Args:
        degrees: Rotation range in degrees: x for [-x, x], or [low, high].
        translate: Maximum shift as a fraction of width and height, [fx, fy].
        scale: Scale factor range [low, high].
        shear: Shear range in degrees along x: s for [-s, s], or [low, high]; ``shear_y`` likewise.
        shear_y: Shear range in degrees along y.
        fill_mode: ``constant``, ``nearest``, ``reflect`` or ``wrap``.
        cval: Fill value for ``constant``.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic``.
    """

    name = "affine"
    tags = frozenset({"geometric"})
    spatial = True
    aliases = ("RandomAffine", "Affine", "ShiftScaleRotate")

    def __init__(
        self,
        degrees: float | list[float] = 0,
        translate: list[float] = (0.0, 0.0),
        scale: list[float] = (1.0, 1.0),
        shear: float | list[float] = 0,
        shear_y: float | list[float] = 0,
        fill_mode: str = "constant",
        cval: float = 0,
        interpolation: str = "bilinear",
    ):
        self.degrees = as_range("degrees", degrees, center=0)
        self.translate = [float(t) for t in translate]
        if len(self.translate) != 2 or not all(0 <= t <= 1 for t in self.translate):
            raise ValueError(f"translate must be [fx, fy] fractions in [0, 1], got {translate!r}")
        self.scale = as_range("scale", list(scale), lo=1e-3)
        self.shear = as_range("shear", shear, center=0, lo=-89, hi=89)
        self.shear_y = as_range("shear_y", shear_y, center=0, lo=-89, hi=89)
        self.fill_mode = check_choice("fill_mode", fill_mode, _FILL)
        self.cval = float(cval)
        self.interpolation = check_choice("interpolation", interpolation, fgeo.INTERPOLATIONS)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {
            "degrees": self.degrees,
            "translate": self.translate,
            "scale": self.scale,
            "shear": self.shear,
            "shear_y": self.shear_y,
            "fill_mode": self.fill_mode,
            "cval": self.cval,
            "interpolation": self.interpolation,
        }

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws angle, pixel translation, scale and shear."""
        max_dx, max_dy = self.translate[0] * meta.width, self.translate[1] * meta.height
        return {
            "angle": uniform(rng, self.degrees),
            "translate": [float(round(rng.uniform(-max_dx, max_dx))), float(round(rng.uniform(-max_dy, max_dy)))],
            "scale": uniform(rng, self.scale),
            "shear": [uniform(rng, self.shear), uniform(rng, self.shear_y)],
        }

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Warps about the image centre."""
        h, w = image.shape[:2]
        m = fgeo.affine_inverse_matrix(h, w, params["angle"], params["translate"], params["scale"], params["shear"])
        return fgeo.warp(image, m, self.fill_mode, self.cval, self.interpolation)


class HFlip(Op):
    """Flips left-right with probability ``p``.

    Args:
        p: Probability of flipping.
    """

    name = "hflip"
    tags = frozenset({"geometric", "flip"})
    spatial = True
    aliases = ("HorizontalFlip", "RandomHorizontalFlip")
    _horizontal = True

    def __init__(self, p: float = 0.5):
        self.p = check_probability(p)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"p": self.p}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws whether to flip."""
        return {"flip": bool(rng.random() < self.p)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Flips if ``params["flip"]``."""
        if not params["flip"]:
            return image.copy()
        return fgeo.flip(image, self._horizontal, not self._horizontal)

    def label_events(self, params: dict[str, Any]) -> tuple[str, ...]:
        """``("hflip",)`` when flipped."""
        return (self.name,) if params["flip"] else ()


class VFlip(HFlip):
    """Flips up-down with probability ``p``.

    Args:
        p: Probability of flipping.
    """

    name = "vflip"
    aliases = ("VerticalFlip", "RandomVerticalFlip")
    _horizontal = False


class Rot90(Op):
    """Rotates by a random number of quarter turns, counter-clockwise (``tf.image.rot90``).

    Args:
        k: Allowed numbers of quarter turns, e.g. [0, 1, 2, 3] (default) or [1, 3].
    """

    name = "rot90"
    tags = frozenset({"geometric", "flip"})
    spatial = True
    aliases = ("RandomRotate90",)

    def __init__(self, k: list[int] = (0, 1, 2, 3)):
        self.k = [int(v) for v in k]
        if not self.k or any(v not in (0, 1, 2, 3) for v in self.k):
            raise ValueError(f"k must be a non-empty list of 0..3, got {k!r}")

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"k": self.k}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the number of quarter turns."""
        return {"k": int(self.k[int(rng.integers(len(self.k)))])}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Rotates ``k`` quarter turns."""
        return fgeo.rot90(image, params["k"])

    def label_events(self, params: dict[str, Any]) -> tuple[str, ...]:
        """``rot90``, ``rot180`` or ``rot270`` when rotated."""
        return (f"rot{90 * params['k']}",) if params["k"] else ()


def _size(name: str, height: int | None, width: int | None) -> tuple[int | None, int | None]:
    for v in (height, width):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} needs positive integer height and width, got {height}x{width}")
    return height, width


class CenterCrop(Op):
    """Crops the central ``height`` x ``width`` window (padding with ``cval`` if the image is smaller).

    Args:
        height: Output height.
        width: Output width.
        cval: Fill for padding.
    """

    name = "center_crop"
    tags = frozenset({"geometric", "size"})
    spatial = True
    aliases = ("CenterCrop",)

    def __init__(self, height: int, width: int, cval: float = 0):
        self.height, self.width = _size("center_crop", height, width)
        self.cval = float(cval)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"height": self.height, "width": self.width, "cval": self.cval}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """No randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Pads if needed, then crops the centre."""
        image = _pad_to(image, self.height, self.width, self.cval)
        h, w = image.shape[:2]
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return fgeo.crop(image, top, left, self.height, self.width)


class Crop(Op):
    """Crops the fixed ``height`` x ``width`` window at (``top``, ``left``); outside the image is ``cval``.

    torchvision's ``F.crop(img, top, left, height, width)``; the test-time ``five_crop`` / ``ten_crop`` views
    record their windows with it.

    Args:
        top: Row of the window's top edge (may be negative or run past the image: that part is ``cval``).
        left: Column of the window's left edge.
        height: Output height.
        width: Output width.
        cval: Fill for the part of the window outside the image.
    """

    name = "crop"
    tags = frozenset({"geometric", "size"})
    spatial = True

    def __init__(self, top: int, left: int, height: int, width: int, cval: float = 0):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (top, left)):
            raise ValueError(f"crop needs integer top and left, got {top!r}, {left!r}")
        self.top, self.left = top, left
        self.height, self.width = _size("crop", height, width)
        self.cval = float(cval)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"top": self.top, "left": self.left, "height": self.height, "width": self.width, "cval": self.cval}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """No randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Pads where the window leaves the image, then crops."""
        h, w = image.shape[:2]
        pads = (max(0, -self.top), max(0, self.top + self.height - h),
                max(0, -self.left), max(0, self.left + self.width - w))  # fmt: skip
        if any(pads):
            image = fgeo.pad(image, *pads, "constant", self.cval)
        return fgeo.crop(image, self.top + pads[0], self.left + pads[2], self.height, self.width)


def _pad_to(image: np.ndarray, height: int, width: int, cval: float) -> np.ndarray:
    h, w = image.shape[:2]
    if h >= height and w >= width:
        return image
    dy, dx = max(0, height - h), max(0, width - w)
    return fgeo.pad(image, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2, "constant", cval)


class RandomCrop(Op):
    """Crops a random ``height`` x ``width`` window (padding with ``cval`` first if the image is smaller).

    Args:
        height: Output height.
        width: Output width.
        cval: Fill for padding.
    """

    name = "random_crop"
    tags = frozenset({"geometric", "size"})
    spatial = True
    aliases = ("RandomCrop",)

    def __init__(self, height: int, width: int, cval: float = 0):
        self.height, self.width = _size("random_crop", height, width)
        self.cval = float(cval)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"height": self.height, "width": self.width, "cval": self.cval}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws the window's top-left corner (in the padded image)."""
        h, w = max(meta.height, self.height), max(meta.width, self.width)
        return {"top": int(rng.integers(0, h - self.height + 1)), "left": int(rng.integers(0, w - self.width + 1))}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Pads if needed, then crops."""
        image = _pad_to(image, self.height, self.width, self.cval)
        return fgeo.crop(image, params["top"], params["left"], self.height, self.width)


class RandomResizedCrop(Op):
    """Crops a random area/aspect window and resizes it (torchvision ``RandomResizedCrop``, Inception-style).

    Args:
        height: Output height; None keeps the input height.
        width: Output width; None keeps the input width.
        scale: Range of the window's area as a fraction of the image.
        ratio: Range of the window's aspect ratio (width / height), sampled log-uniformly.
        interpolation: ``area``, ``bilinear``, ``bicubic`` or ``nearest``.
    """

    name = "random_resized_crop"
    tags = frozenset({"geometric", "size"})
    spatial = True
    aliases = ("RandomResizedCrop", "RandomSizedCrop")

    def __init__(
        self,
        height: int | None = None,
        width: int | None = None,
        scale: list[float] = (0.08, 1.0),
        ratio: list[float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
    ):
        self.height, self.width = _size("random_resized_crop", height, width)
        self.scale = as_range("scale", list(scale), lo=1e-6, hi=1.0)
        self.ratio = as_range("ratio", list(ratio), lo=1e-6)
        self.interpolation = check_choice("interpolation", interpolation, fgeo.RESIZE_METHODS)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {
            "height": self.height,
            "width": self.width,
            "scale": self.scale,
            "ratio": self.ratio,
            "interpolation": self.interpolation,
        }

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Torchvision's algorithm: 10 tries at a random area and log-uniform ratio, else a central crop."""
        h, w = meta.height, meta.width
        area = h * w
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = float(np.exp(rng.uniform(*log_ratio)))
            cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return {"top": int(rng.integers(0, h - ch + 1)), "left": int(rng.integers(0, w - cw + 1)),
                        "height": ch, "width": cw}  # fmt: skip
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return {"top": (h - ch) // 2, "left": (w - cw) // 2, "height": ch, "width": cw}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Crops the window and resizes it to the output size."""
        out_h, out_w = self.height or image.shape[0], self.width or image.shape[1]
        window = fgeo.crop(image, params["top"], params["left"], params["height"], params["width"])
        return fgeo.resize(window, out_h, out_w, self.interpolation)


class Pad(Op):
    """Pads every side by fixed amounts.

    Args:
        padding: One int for all sides, or [top, bottom, left, right].
        fill_mode: ``constant``, ``nearest``, ``reflect`` or ``wrap``.
        cval: Fill value for ``constant``.
    """

    name = "pad"
    tags = frozenset({"geometric", "size"})
    spatial = True
    aliases = ("Pad", "PadIfNeeded")

    def __init__(self, padding: int | list[int] = 0, fill_mode: str = "constant", cval: float = 0):
        pads = [padding] * 4 if isinstance(padding, int) else list(padding)
        if len(pads) != 4 or not all(isinstance(v, int) and v >= 0 for v in pads):
            raise ValueError(f"padding must be an int >= 0 or [top, bottom, left, right], got {padding!r}")
        self.padding = pads
        self.fill_mode = check_choice("fill_mode", fill_mode, _FILL)
        self.cval = float(cval)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"padding": self.padding, "fill_mode": self.fill_mode, "cval": self.cval}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """No randomness."""
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Pads the image."""
        return fgeo.pad(image, *self.padding, self.fill_mode, self.cval)


class Perspective(Op):
    """Random perspective distortion of the four corners (torchvision ``RandomPerspective``).

    Args:
        distortion_scale: 0..1; each corner moves inward by up to this fraction of half the side.
        fill_mode: ``constant``, ``nearest``, ``reflect`` or ``wrap``.
        cval: Fill value for ``constant``.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic``.
    """

    name = "perspective"
    tags = frozenset({"geometric"})
    spatial = True
    aliases = ("RandomPerspective", "Perspective")

    def __init__(
        self, distortion_scale: float = 0.5, fill_mode: str = "constant", cval: float = 0, interpolation="bilinear"
    ):
        if not 0 <= distortion_scale <= 1:
            raise ValueError(f"distortion_scale must be in [0, 1], got {distortion_scale!r}")
        self.distortion_scale = float(distortion_scale)
        self.fill_mode = check_choice("fill_mode", fill_mode, _FILL)
        self.cval = float(cval)
        self.interpolation = check_choice("interpolation", interpolation, fgeo.INTERPOLATIONS)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"distortion_scale": self.distortion_scale, "fill_mode": self.fill_mode, "cval": self.cval,
                "interpolation": self.interpolation}  # fmt: skip

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws where each corner goes (torchvision's ``get_params``)."""
        w, h = meta.width, meta.height
        dw, dh = int(self.distortion_scale * w // 2), int(self.distortion_scale * h // 2)
        r = lambda n: int(rng.integers(0, n + 1))  # noqa: E731
        start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
        end = [[r(dw), r(dh)], [w - 1 - r(dw), r(dh)], [w - 1 - r(dw), h - 1 - r(dh)], [r(dw), h - 1 - r(dh)]]
        return {"startpoints": start, "endpoints": end}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Warps so that ``startpoints`` land on ``endpoints``."""
        m = fgeo.perspective_inverse(params["startpoints"], params["endpoints"])
        return fgeo.warp(image, m, self.fill_mode, self.cval, self.interpolation)


for _op in (ImageDataGenerator, Resize, Affine, HFlip, VFlip, Rot90, CenterCrop, Crop, RandomCrop, RandomResizedCrop,
            Pad, Perspective):  # fmt: skip
    register(_op)
