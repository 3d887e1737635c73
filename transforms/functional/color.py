"""Colour kernels on uint8 HWC images (1 or 3 channels).

Where Pillow defines an operation (``ImageEnhance``, ``ImageOps``, HSV), the kernel *is* Pillow's, so results match
Pillow (and torchvision's PIL path) exactly; the rest are lookup tables or small numpy expressions. Keras
``ImageDataGenerator`` semantics are kept for ``channel_shift`` and ``brightness_pil``.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps


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


def brightness_pil(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Brightness`` (blend with black), as Keras's ``apply_brightness_shift`` uses."""
    return _enhance(image, ImageEnhance.Brightness, factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Contrast``: blend with the mean grey level (torchvision ``adjust_contrast``)."""
    return _enhance(image, ImageEnhance.Contrast, factor)


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Color``: blend with the greyscale image; identity on 1-channel images."""
    return image.copy() if image.shape[2] == 1 else _enhance(image, ImageEnhance.Color, factor)


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Pillow ``ImageEnhance.Sharpness``: blend with a 3x3 smoothed image (borders untouched)."""
    return _enhance(image, ImageEnhance.Sharpness, factor)


def hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotates hue by ``shift`` of a full turn (-0.5..0.5), in Pillow's 8-bit HSV (torchvision ``adjust_hue``)."""
    if image.shape[2] == 1 or shift == 0:
        return image.copy()
    h, s, v = to_pil(image).convert("HSV").split()
    h_arr = np.asarray(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        h_arr = (h_arr + np.uint8(int(round(shift * 255)) % 256)).astype(np.uint8)
    out = Image.merge("HSV", (Image.fromarray(h_arr, "L"), s, v)).convert("RGB")
    return from_pil(out, image.shape)


def gamma(image: np.ndarray, g: float, gain: float = 1.0) -> np.ndarray:
    """``255 * gain * (x / 255) ** g``, rounded (torchvision ``adjust_gamma``), via a lookup table."""
    lut = np.clip(np.rint(255.0 * gain * (np.arange(256) / 255.0) ** float(g)), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut).reshape(image.shape)


def grayscale(image: np.ndarray, channels: int = 1) -> np.ndarray:
    """ITU-R 601-2 luma (Pillow ``convert("L")``), with 1 or 3 output channels."""
    grey = image if image.shape[2] == 1 else np.asarray(to_pil(image).convert("L"))[:, :, None]
    return np.repeat(grey, channels, axis=2) if channels == 3 else grey.copy()


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


def equalize(image: np.ndarray) -> np.ndarray:
    """Per-channel histogram equalization (Pillow ``ImageOps.equalize``)."""
    return from_pil(ImageOps.equalize(to_pil(image)), image.shape)


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Per-channel stretch of min..max to 0..255 (Pillow ``ImageOps.autocontrast``)."""
    return from_pil(ImageOps.autocontrast(to_pil(image)), image.shape)
