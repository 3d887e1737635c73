"""Colour kernels on uint8 HWC images (1 or 3 channels).

Where Pillow defines an operation (``ImageEnhance``, ``ImageOps``), results match Pillow (and torchvision's PIL
path) exactly: per-value operations run as lookup tables built by Pillow itself, the rest call Pillow. Hue uses
OpenCV's full-range 8-bit HSV (within a few levels of Pillow's and TensorFlow's, 4-10x faster). Keras
``ImageDataGenerator`` semantics are kept for ``channel_shift`` and ``brightness_pil``.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageStat

_GRADIENT = Image.fromarray(np.arange(256, dtype=np.uint8)[None, :])


def to_pil(image: np.ndarray) -> Image.Image:
    """Wraps a 1- or 3-channel HWC uint8 array as a Pillow image (``L`` or ``RGB``)."""
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def from_pil(pil: Image.Image, shape: tuple[int, ...]) -> np.ndarray:
    """Returns a Pillow image as an HWC uint8 array of ``shape``'s channel count."""
    return np.asarray(pil).reshape(pil.size[1], pil.size[0], shape[2]).copy()


def _enhance(image: np.ndarray, enhancer, factor: float) -> np.ndarray:
    return from_pil(enhancer(to_pil(image)).enhance(float(factor)), image.shape)


def channel_shift(image: np.ndarray, intensity: float) -> np.ndarray:
    """Adds ``intensity`` to every channel, clipped to the image's own min and max (Keras ``apply_channel_shift``).

    A float32 image stays float32 (as inside Keras's ``apply_transform``); a uint8 image is rounded back.
    """
    lo, hi = image.min(), image.max()
    shifted = np.clip(image.astype(np.float32) + np.float32(intensity), lo, hi)
    return shifted if image.dtype == np.float32 else np.rint(shifted).astype(np.uint8)


def _lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return cv2.LUT(image, lut).reshape(image.shape)


def brightness_pil(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Brightness`` (blend with black), as Keras's ``apply_brightness_shift`` uses.

    Brightness is a function of each value alone, so Pillow computes it once on a 0..255 ramp (a lookup table).
    """
    return _lut(image, np.asarray(ImageEnhance.Brightness(_GRADIENT).enhance(float(factor)))[0])


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Contrast``: blend with the mean grey level (torchvision ``adjust_contrast``)."""
    grey = to_pil(image) if image.shape[2] == 1 else to_pil(image).convert("L")
    mean = int(ImageStat.Stat(grey).mean[0] + 0.5)  # as ImageEnhance.Contrast computes it
    lut = np.asarray(Image.blend(Image.new("L", (256, 1), mean), _GRADIENT, float(factor)))[0]
    return _lut(image, lut)


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Color``: blend with the greyscale image; identity on 1-channel images."""
    return image.copy() if image.shape[2] == 1 else _enhance(image, ImageEnhance.Color, factor)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13  # Pillow's ImageFilter.SMOOTH


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Sharpness``: blend with a 3x3 smoothed image, borders untouched.

    Computed with OpenCV (6x faster than Pillow); within 1 grey level of Pillow.
    """
    smooth = cv2.filter2D(image, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE).reshape(image.shape)
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = image[0], image[-1], image[:, 0], image[:, -1]
    out = cv2.addWeighted(image, float(factor), smooth, 1.0 - float(factor), 0)
    return out.reshape(image.shape)


def hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotates hue by ``shift`` of a full turn (-0.5..0.5) in 8-bit full-range HSV (torchvision ``adjust_hue``)."""
    if image.shape[2] == 1 or shift == 0:
        return image.copy()
    ramp = np.arange(256)
    lut = np.stack([(ramp + int(round(shift * 255))) % 256, ramp, ramp], axis=1).astype(np.uint8)[None]
    hsv = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL), lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def gamma(image: np.ndarray, g: float, gain: float = 1.0) -> np.ndarray:
    """``255 * gain * (x / 255) ** g``, rounded (torchvision ``adjust_gamma``), via a lookup table."""
    lut = np.clip(np.rint(255.0 * gain * (np.arange(256) / 255.0) ** float(g)), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut).reshape(image.shape)


def grayscale(image: np.ndarray, channels: int = 1) -> np.ndarray:
    """ITU-R 601-2 luma (Pillow ``convert("L")``), with 1 or 3 output channels."""
    grey = image[:, :, 0] if image.shape[2] == 1 else np.asarray(to_pil(image).convert("L"))
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB) if channels == 3 else grey[:, :, None].copy()


def invert(image: np.ndarray) -> np.ndarray:
    """``255 - x``."""
    return 255 - image


def solarize(image: np.ndarray, threshold: float) -> np.ndarray:
    """Inverts every value ``>= threshold`` (Pillow ``ImageOps.solarize``); ``threshold`` 256 is the identity."""
    lut = np.array([i if i < threshold else 255 - i for i in range(256)], dtype=np.uint8)
    return cv2.LUT(image, lut).reshape(image.shape)


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keeps the ``bits`` most significant bits of every value (Pillow ``ImageOps.posterize``)."""
    mask = np.uint8((0xFF << (8 - int(bits))) & 0xFF)
    return image & mask


def _histograms(image: np.ndarray) -> list[np.ndarray]:
    return [
        cv2.calcHist([image], [c], None, [256], [0, 256]).reshape(-1).astype(np.int64) for c in range(image.shape[2])
    ]


def _per_channel_lut(image: np.ndarray, luts: list[np.ndarray]) -> np.ndarray:
    if image.shape[2] == 1:
        return _lut(image, luts[0].astype(np.uint8))
    return cv2.LUT(image, np.stack(luts, axis=1).astype(np.uint8)[None])


def equalize(image: np.ndarray) -> np.ndarray:
    """Per-channel histogram equalization: Pillow ``ImageOps.equalize``'s tables, applied with OpenCV."""
    luts = []
    for h in _histograms(image):
        nonzero = h[h > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255 if len(nonzero) > 1 else 0
        if not step:
            luts.append(np.arange(256))
            continue
        before = np.concatenate([[0], np.cumsum(h)[:-1]])  # samples below each value
        luts.append(np.minimum((step // 2 + before) // step, 255))
    return _per_channel_lut(image, luts)


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Per-channel stretch of min..max to 0..255: Pillow ``ImageOps.autocontrast``'s tables, with OpenCV."""
    luts = []
    for h in _histograms(image):
        present = np.flatnonzero(h)
        lo, hi = (int(present[0]), int(present[-1])) if len(present) else (0, 0)
        if hi <= lo:
            luts.append(np.arange(256))
            continue
        scale = 255.0 / (hi - lo)
        luts.append(np.clip((np.arange(256) * scale - lo * scale).astype(np.int64), 0, 255))
    return _per_channel_lut(image, luts)
