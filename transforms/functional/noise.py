"""Noise, blur and compression kernels on uint8 HWC images.

Random noise fields are drawn inside ``apply`` from a recorded ``noise_seed`` (params stay a few bytes, and the
same params always give the same pixels).
"""

from __future__ import annotations

import cv2
import numpy as np


def gaussian_noise(image: np.ndarray, std: float, noise_seed: int, per_channel: bool = True) -> np.ndarray:
    """Adds N(0, std^2) noise (in grey levels), rounded and clipped to 0..255."""
    rng = np.random.default_rng(noise_seed)
    shape = image.shape if per_channel else (*image.shape[:2], 1)
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    return np.clip(np.rint(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)


def impulse_noise(image: np.ndarray, amount: float, noise_seed: int, salt_vs_pepper: float = 0.5) -> np.ndarray:
    """Sets a fraction ``amount`` of pixels (all channels) to white (salt) or black (pepper)."""
    rng = np.random.default_rng(noise_seed)
    u = rng.random(image.shape[:2])
    out = image.copy()
    out[u < amount * salt_vs_pepper] = 255
    out[(u >= amount * salt_vs_pepper) & (u < amount)] = 0
    return out


def box_blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """Mean filter with a ``ksize`` x ``ksize`` kernel (reflected borders)."""
    return cv2.blur(image, (int(ksize), int(ksize))).reshape(image.shape)


def gaussian_blur(image: np.ndarray, sigma: float, ksize: int = 0) -> np.ndarray:
    """Gaussian filter; ``ksize`` 0 picks the odd size covering +-3 sigma (at least 3)."""
    if ksize <= 0:
        ksize = max(3, int(2 * np.ceil(3 * sigma) + 1))
    return cv2.GaussianBlur(image, (ksize, ksize), sigmaX=float(sigma), sigmaY=float(sigma)).reshape(image.shape)


def median_blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """Median filter with an odd ``ksize``."""
    return cv2.medianBlur(image, int(ksize)).reshape(image.shape)


def jpeg_quality(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trips through JPEG at ``quality`` to add compression artifacts."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.shape[2] == 3 else image
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    flag = cv2.IMREAD_COLOR if image.shape[2] == 3 else cv2.IMREAD_GRAYSCALE
    out = cv2.imdecode(buf, flag)
    return (cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if image.shape[2] == 3 else out).reshape(image.shape)
