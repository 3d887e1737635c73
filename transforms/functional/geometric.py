"""Geometric kernels on uint8 HWC images (OpenCV), including the Keras-exact ``ImageDataGenerator`` warp.

Keras's ``apply_affine_transform`` builds a 3x3 matrix, centres it on ``(h/2 - 0.5, w/2 - 0.5)`` in its own
"x, y" order and hands it to ``scipy.ndimage.affine_transform`` per channel. The same inverse map, given to
``cv2.warpAffine`` with ``WARP_INVERSE_MAP``, reproduces Keras's pixels within rounding at a fraction of the cost.
Two of scipy's legacy border modes differ from OpenCV's borders and are emulated here:

* ``constant``: scipy gives ``cval`` to every output point whose source coordinate falls outside
  ``[0, n - 1]``; OpenCV's BORDER_CONSTANT blends the edge pixel with ``cval``. We warp with replicated borders and
  then mask the outside points.
* ``wrap``: scipy's legacy wrap repeats with period ``n - 1`` (not ``n``); we compute scipy's wrapped source
  coordinates and ``cv2.remap`` them.

``nearest`` and ``reflect`` match OpenCV's BORDER_REPLICATE and BORDER_REFLECT directly.
"""

from __future__ import annotations

import contextlib
import threading

import cv2
import numpy as np

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
_BORDER = {"nearest": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT}
_INTERP = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR}


def keras_transform_matrix(
    height: int,
    width: int,
    theta: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    shear: float = 0.0,
    zx: float = 1.0,
    zy: float = 1.0,
) -> np.ndarray | None:
    """Builds Keras's centred 3x3 inverse transform (``apply_affine_transform``), or None for the identity.

    The matrix maps output to input coordinates in Keras's "x, y" order where x indexes *columns* for OpenCV;
    Keras centres x on ``height`` and y on ``width``, the transposition reported as keras#17398, kept on purpose so
    copies replay in Keras.
    """
    matrix = None

    def chain(m: np.ndarray) -> None:
        nonlocal matrix
        matrix = m if matrix is None else matrix @ m

    if theta != 0:
        t = np.deg2rad(theta)
        chain(np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        chain(np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64))
    if shear != 0:
        s = np.deg2rad(shear)
        chain(np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        chain(np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]], dtype=np.float64))
    if matrix is None:
        return None
    o_x, o_y = float(height) / 2 - 0.5, float(width) / 2 - 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return offset @ matrix @ reset


def _scipy_wrap(coord: np.ndarray, n: int) -> np.ndarray:
    # scipy.ndimage's legacy NI_EXTEND_WRAP on continuous coordinates: period n - 1, as in ni_interpolation.c.
    if n <= 1:
        return np.zeros_like(coord)
    size = n - 1
    out = coord.copy()
    low = coord < 0
    out[low] += size * (np.trunc(-coord[low] / size) + 1)
    high = coord > n - 1
    out[high] -= size * np.trunc(coord[high] / size)
    return out


def _source_coords(inverse: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return src_x, src_y


def warp_affine_inverse(
    image: np.ndarray,
    inverse: np.ndarray,
    fill_mode: str = "nearest",
    cval: float = 0.0,
    order: int = 1,
) -> np.ndarray:
    """Warps ``image`` by an inverse map (output pixel -> source pixel), with scipy.ndimage's border semantics.

    Args:
        image: uint8 or float32 HWC image.
        inverse: 2x3 (or 3x3) matrix taking output ``(col, row, 1)`` to source ``(col, row)``.
        fill_mode: ``constant``, ``nearest``, ``reflect`` or ``wrap`` (scipy.ndimage legacy meaning).
        cval: Fill value for ``constant``.
        order: 0 (nearest neighbour) or 1 (bilinear).

    Returns:
        A new image of the same shape and dtype.
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if order not in _INTERP:
        raise ValueError(f"interpolation order must be 0 or 1, got {order!r}")
    height, width = image.shape[:2]
    m = np.asarray(inverse, dtype=np.float64)[:2]
    interp = _INTERP[order] | cv2.WARP_INVERSE_MAP
    if fill_mode in _BORDER and order == 1:
        out = _warp_affine(image, m, (width, height), interp, _BORDER[fill_mode])
        return out.reshape(image.shape)
    # Explicit coordinates: scipy's wrap, scipy's constant mask, and scipy's round-half-up nearest neighbour.
    src_x, src_y = _source_coords(m, height, width)
    outside = None
    if fill_mode == "constant":
        outside = (src_x < 0) | (src_x > width - 1) | (src_y < 0) | (src_y > height - 1)
    elif fill_mode == "wrap":
        src_x, src_y = _scipy_wrap(src_x, width), _scipy_wrap(src_y, height)
    border = _BORDER.get(fill_mode, cv2.BORDER_REPLICATE)
    if order == 0:
        src_x, src_y = np.floor(src_x + 0.5), np.floor(src_y + 0.5)
        out = cv2.remap(image, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_NEAREST, borderMode=border)
    else:
        out = cv2.remap(image, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=border)
    out = out.reshape(image.shape)
    if outside is not None:
        out[outside] = np.clip(round(cval), 0, 255) if out.dtype == np.uint8 else cval
    return out


def flip(image: np.ndarray, horizontal: bool, vertical: bool) -> np.ndarray:
    """Flips left-right and/or up-down; returns a new array.

    ``cv2.flip`` rather than a negative-stride numpy copy: the latter costs ~0.7 ms on a 320x240 RGB photo.
    """
    if not (horizontal or vertical):
        return image.copy()
    code = -1 if (horizontal and vertical) else (1 if horizontal else 0)
    return cv2.flip(image, code).reshape(image.shape)


_RESIZE = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
RESIZE_METHODS = tuple(_RESIZE)


def resize(image: np.ndarray, height: int, width: int, interpolation: str = "area") -> np.ndarray:
    """Resizes to ``(height, width)`` with OpenCV; ``area`` is the right choice for shrinking photos."""
    if interpolation not in _RESIZE:
        raise ValueError(f"interpolation must be one of {RESIZE_METHODS}, got {interpolation!r}")
    if image.shape[:2] == (height, width):
        return image.copy()
    out = cv2.resize(image, (width, height), interpolation=_RESIZE[interpolation])
    return out.reshape(height, width, image.shape[2])


_CV_BORDER = {
    "constant": cv2.BORDER_CONSTANT,
    "nearest": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "wrap": cv2.BORDER_WRAP,
}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_CV_INTERP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _border_value(image: np.ndarray, cval: float):
    return (float(cval),) * 4 if image.shape[2] > 1 else float(cval)


def affine_inverse_matrix(
    height: int,
    width: int,
    angle: float,
    translate: tuple[float, float],
    scale: float,
    shear: tuple[float, float],
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Returns the 2x3 inverse map of torchvision's affine parameterization (output -> input pixel centres).

    Forward map: ``T * C * R(angle) * S(scale) * SHy(shear_y) * SHx(shear_x) * C^-1`` with angle and shear in
    degrees (clockwise-positive angle, as torchvision and PIL's ``rotate``), ``translate`` in pixels (x, y) and
    ``center`` in pixel coordinates (default: the image centre, ``((w - 1) / 2, (h - 1) / 2)``).
    """
    cx, cy = center if center is not None else ((width - 1) * 0.5, (height - 1) * 0.5)
    rot = np.deg2rad(angle)
    sx, sy = np.deg2rad(shear[0]), np.deg2rad(shear[1])
    tx, ty = translate
    a = np.cos(rot - sy) / np.cos(sy)
    b = -np.cos(rot - sy) * np.tan(sx) / np.cos(sy) - np.sin(rot)
    c = np.sin(rot - sy) / np.cos(sy)
    d = -np.sin(rot - sy) * np.tan(sx) / np.cos(sy) + np.cos(rot)
    # Inverse of the rotation-scale-shear block (its determinant is 1 before scaling), then undo T and C.
    m = np.array([[d, -b, 0.0], [-c, a, 0.0]]) / scale
    m[0, 2] = m[0, 0] * (-cx - tx) + m[0, 1] * (-cy - ty) + cx
    m[1, 2] = m[1, 0] * (-cx - tx) + m[1, 1] * (-cy - ty) + cy
    return m


def warp(
    image: np.ndarray,
    inverse: np.ndarray,
    fill_mode: str = "constant",
    cval: float = 0,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Warps by a 2x3 affine or 3x3 perspective inverse map with OpenCV's borders (fast path for non-Keras ops)."""
    h, w = image.shape[:2]
    flags = _CV_INTERP[interpolation] | cv2.WARP_INVERSE_MAP
    border = _CV_BORDER[fill_mode]
    inverse = np.asarray(inverse, dtype=np.float64)
    if inverse.shape == (3, 3):
        out = cv2.warpPerspective(image, inverse, (w, h), flags=flags, borderMode=border,
                                  borderValue=_border_value(image, cval))  # fmt: skip
    else:
        out = _warp_affine(image, inverse[:2], (w, h), flags, border, _border_value(image, cval))
    return out.reshape(image.shape)


def perspective_inverse(startpoints, endpoints) -> np.ndarray:
    """Returns the 3x3 map taking output ``endpoints`` back to input ``startpoints`` (4 corner pairs, x-y)."""
    return cv2.getPerspectiveTransform(np.float32(endpoints), np.float32(startpoints))


_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def rot90(image: np.ndarray, k: int) -> np.ndarray:
    """Rotates by ``k`` quarter turns counter-clockwise (``numpy.rot90`` / ``tf.image.rot90``), with OpenCV."""
    k = int(k) % 4
    if k == 0:
        return image.copy()
    out = cv2.rotate(image, _ROTATE[k])
    return out.reshape(out.shape[0], out.shape[1], image.shape[2])


def _warp_affine(image: np.ndarray, m: np.ndarray, dsize, flags: int, border: int, value=0) -> np.ndarray:
    if border == cv2.BORDER_REPLICATE:
        source, pad = _replicate_padded(image)
        m = m.copy()
        m[:, 2] += pad
    else:
        source = _four_channels(image)
    out = cv2.warpAffine(source, m, dsize, flags=flags, borderMode=border, borderValue=value)
    return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB) if source.shape[2:] != image.shape[2:] else out


def _four_channels(image: np.ndarray) -> np.ndarray:
    # OpenCV's warps run faster on 4 channels than on 3, with identical per-channel results (checked in
    # tests/test_transforms_keras.py), so RGB uint8 images take a detour through RGBA.
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    return image


def _replicate_padded(image: np.ndarray) -> tuple[np.ndarray, int]:
    """``image`` (4-channel when RGB) with ``pad`` replicated pixels on every side, and ``pad``.

    A replicate-padded source warped with a replicate border gives the replicate-border warp of ``image`` (both
    clamp to the edge pixel), but OpenCV's vectorized warp takes a slow per-pixel path for every output pixel whose
    neighbours fall outside its source, and most of them fall inside the pad: warps run ~25% faster. ``pad``
    depends on the shape only, so the pixels never depend on the cache below.
    """
    cache = getattr(_padding, "cache", None)
    if cache is not None and id(image) in cache:
        entry = cache.pop(id(image))
        cache[id(image)] = entry  # most recently used last
        return entry[1]
    pad = min(_MAX_PAD, max(image.shape[:2]) // 4)
    padded = cv2.copyMakeBorder(_four_channels(image), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    padded = padded.reshape(*padded.shape[:2], -1)
    if cache is not None:
        cache[id(image)] = (image, (padded, pad))  # holding the image keeps its id from being reused
        if len(cache) > _CACHED:  # e.g. a policy's intermediate images, one per copy: keep the working copy
            del cache[next(iter(cache))]
    return padded, pad


# Enough for the usual rotations, shifts and zooms of photos; the rare pixel beyond the pad takes OpenCV's border.
_MAX_PAD = 64
_CACHED = 2
_padding = threading.local()


@contextlib.contextmanager
def reuse_padding():
    """Within this block, replicate-border warps of the same array reuse its padded copy (one per source image).

    The caller promises not to modify the arrays it warps inside the block (``expand_image`` warps one read-only
    working copy K times). The two most recently warped arrays are kept; outside such a block every warp pads
    afresh.
    """
    previous = getattr(_padding, "cache", None)
    _padding.cache = {}
    try:
        yield
    finally:
        _padding.cache = previous


def crop(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Returns a copy of the ``height`` x ``width`` window at (top, left)."""
    return image[top : top + height, left : left + width].copy()


def pad(image: np.ndarray, top: int, bottom: int, left: int, right: int, fill_mode: str = "constant", cval: float = 0):
    """Pads each side by the given pixels with OpenCV's border modes."""
    out = cv2.copyMakeBorder(image, top, bottom, left, right, _CV_BORDER[fill_mode],
                             value=_border_value(image, cval))  # fmt: skip
    return out.reshape(out.shape[0], out.shape[1], image.shape[2])
