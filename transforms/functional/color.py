"""Colour kernels on uint8 HWC images, with Keras ``ImageDataGenerator`` semantics where Keras defines them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance


def channel_shift(image: np.ndarray, intensity: float) -> np.ndarray:
    """Adds ``intensity`` to every channel, clipped to the image's own min and max (Keras ``apply_channel_shift``).

    A float32 image stays float32 (as inside Keras's ``apply_transform``); a uint8 image is rounded back.
    """
    lo, hi = image.min(), image.max()
    shifted = np.clip(image.astype(np.float32) + np.float32(intensity), lo, hi)
    return shifted if image.dtype == np.float32 else np.rint(shifted).astype(np.uint8)


def brightness_pil(image: np.ndarray, factor: float) -> np.ndarray:
    """Scales brightness with Pillow's ``ImageEnhance.Brightness``, exactly as Keras's ``apply_brightness_shift``."""
    channels = image.shape[2]
    pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
    out = np.asarray(ImageEnhance.Brightness(pil).enhance(factor))
    return out.reshape(image.shape)
