"""Decoding source bytes to uint8 RGB arrays and encoding copies, with the recipe steps that describe both.

Decoding uses Pillow, as Keras's ``load_img`` does (so a Keras user decodes the same pixels), with EXIF
orientation applied and caps on pixels checked from the header before any pixel is decoded. Encoding uses
OpenCV (libjpeg-turbo / libpng / libwebp), the fastest encoder measured here.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# Formats Pillow may decode; anything else (EPS, PDF, PSD, FITS, ...) is rejected without decoding.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM"})
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_SIDE = 32_768
# Transparent images are composited on white, a fixed, documented background.
BACKGROUND = (255, 255, 255)

ENCODINGS = ("jpeg", "png", "webp")
DECODE_VERSION = 1


class DecodeError(Exception):
    """Expected bad input: the bytes are not a usable image. ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decodes image bytes to a uint8 RGB HWC array.

    Args:
        data: Encoded bytes; the format is found from the content, never from a file name.
        max_pixels: Reject images with more pixels (checked from the header, before decoding).
        max_side: Reject images with a longer side.

    Returns:
        The image and the ``decode`` recipe step (real format, original mode and size, EXIF orientation, frame
        count; animated and multi-page files give their first frame).

    Raises:
        DecodeError: Empty, unidentifiable, disallowed, oversized, truncated or corrupt input.
    """
    if not data:
        raise DecodeError("empty_file", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise DecodeError("format_not_allowed", f"{fmt} images are not accepted")
            width, height = img.size
            if width < 1 or height < 1:
                raise DecodeError("empty_image", f"image has no pixels ({width}x{height})")
            if width * height > max_pixels or max(width, height) > max_side:
                raise DecodeError("too_large", f"{width}x{height} exceeds the pixel cap")
            frames = int(getattr(img, "n_frames", 1))  # from the header; later frames are never decoded
            mode = img.mode
            rgb = _decode_plain_jpeg(data, img)
            if rgb is None:
                img.load()  # before the EXIF is read: a PNG's EXIF may follow its pixels, and errors must surface here
                rgb = _to_rgb(img)
            orientation = _exif_orientation(img)
            # One orientation step for both decoders, on the array (lossless transposes, as exif_transpose does).
            if orientation in _ORIENT:
                rgb = _ORIENT[orientation](rgb)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", "the content is not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError("too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DecodeError("corrupt", f"{type(e).__name__}: {e}") from None
    step = {
        "op": "decode",
        "version": DECODE_VERSION,
        "config": {"to": "RGB", "exif_transpose": True, "background": list(BACKGROUND)},
        "params": {
            "format": fmt,
            "mode": mode,
            "height": int(rgb.shape[0]),
            "width": int(rgb.shape[1]),
            "exif_orientation": orientation,
            "frames": frames,
        },
    }
    return rgb, step


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation 1-8, or 0 for malformed EXIF (pinned policy: the pixels are then kept as stored)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 (any EXIF parser failure is "malformed EXIF")
        return 0
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 0


# EXIF orientation -> the array operations of Pillow's ``ImageOps.exif_transpose``.
_ORIENT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _decode_plain_jpeg(data: bytes, img: Image.Image) -> np.ndarray | None:
    """Decodes a complete baseline RGB/grey JPEG with OpenCV, else returns None (Pillow decodes it).

    Both wrap libjpeg-turbo with the same settings, so the pixels are Pillow's (``tests/test_decode_paths.py``
    pins that); OpenCV is ~35% faster, mostly by skipping Pillow's chunked reads and two copies. Files that do not
    end in an EOI marker go to Pillow, which reports truncation instead of padding the image with grey; anything
    OpenCV cannot decode also goes to Pillow, for its error message.
    """
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape[:2] != (img.size[1], img.size[0]):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I"):
        arr = np.asarray(img)
        if arr.size and 0 <= arr.min() and arr.max() <= 65535:
            # 16-bit grey (PNG and TIFF open as I;16 or I): scale to 8 bits; Pillow's convert would clip it.
            return np.repeat((arr.astype(np.uint32) >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.any():
            raise DecodeError("empty_image", "no pixel has a finite value (all NaN or infinite)")
        # Scaled over the finite pixels (one NaN or inf made every pixel 0); NaN and -inf are the darkest value,
        # +inf the brightest.
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return np.repeat(np.rint(arr).astype(np.uint8)[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img.convert("RGB"))


def to_working(image: np.ndarray) -> np.ndarray:
    """Converts an RGB image to the BGRA working layout used for copies made only by channel-free ops.

    One conversion per source replaces three per copy: OpenCV warps 4-channel images ~2x faster than 3-channel ones
    (no detour through RGBA per warp), and its encoders take BGR order (no RGB->BGR per encode).
    """
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)


def encode_step(image_format: str, quality: int) -> dict[str, Any]:
    """Returns the ``encode`` recipe step for an output format."""
    config: dict[str, Any] = {"format": image_format}
    if image_format in ("jpeg", "webp"):
        config["quality"] = quality
    return {"op": "encode", "version": 1, "config": config, "params": {}}


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 95, bgra: bool = False) -> bytes:
    """Encodes a uint8 RGB, RGBA (PNG and WebP keep alpha) or 1-channel HWC image.

    Args:
        image: The image.
        image_format: ``jpeg``, ``png`` or ``webp``.
        quality: 1..100 for JPEG and WebP.
        bgra: ``image`` is a BGRA working copy (``to_working``) whose 4th channel is ignored.

    Returns:
        The encoded bytes (deterministic for the same pixels and library versions; a BGRA working copy gives the
        same bytes as the RGB image it holds).
    """
    if bgra:
        # OpenCV's JPEG encoder drops the 4th channel itself (same bytes as BGR); PNG and WebP would keep it.
        bgr = image if image_format == "jpeg" else cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        to_bgr = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(image.shape[2])
        bgr = cv2.cvtColor(image, to_bgr) if to_bgr is not None else image
    if image_format == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif image_format == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    else:
        raise ValueError(f"image_format must be one of {ENCODINGS}, got {image_format!r}")
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {image.shape} image as {image_format}")
    return buf.tobytes()
