"""Decoding source bytes to uint8 RGB arrays and encoding copies, with the recipe steps that describe both.

Decoding uses Pillow, as Keras's ``load_img`` does (so a Keras user decodes the same pixels), with EXIF
orientation applied and caps on pixels checked from the header before any pixel is decoded. Encoding uses
OpenCV (libjpeg-turbo / libpng / libwebp), the fastest encoder measured here.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
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


class _PillowTypeError(Exception):
    """A ``TypeError`` raised inside Pillow (``_pillow``), carried to ``decode_image``'s ``corrupt``; ``args[0]``."""


@contextlib.contextmanager
def _pillow():
    """Wraps a call into Pillow, whose plugins report some malformed files with a ``TypeError``.

    A TIFF without its dimensions raises ``TypeError("Missing dimensions")`` from ``n_frames``: that is bad data,
    as Pillow's ``OSError``s and ``ValueError``s are. Only calls into Pillow are wrapped: a ``TypeError`` in this
    module's own code is a bug, never a dead letter.
    """
    try:
        yield
    except TypeError as e:
        raise _PillowTypeError(e) from None


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
            with _pillow():
                img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise DecodeError("format_not_allowed", f"{fmt} images are not accepted")
            width, height = img.size
            if width < 1 or height < 1:
                raise DecodeError("empty_image", f"image has no pixels ({width}x{height})")
            if width * height > max_pixels or max(width, height) > max_side:
                raise DecodeError("too_large", f"{width}x{height} exceeds the pixel cap")
            with _pillow():
                frames = int(getattr(img, "n_frames", 1))  # from the header; later frames are never decoded
            mode = img.mode
            rgb = _decode_plain_jpeg(data, img)
            if rgb is None:
                with _pillow():
                    img.load()  # before the EXIF: a PNG's EXIF may follow its pixels, and errors must surface here
                rgb = _to_rgb(img)
            orientation = _exif_orientation(img)
            # One orientation step for both decoders, on the array (lossless transposes, as exif_transpose does).
            if orientation in _ORIENT:
                rgb = _ORIENT[orientation](rgb)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        _check_declared_size(data, max_pixels, max_side)
        raise DecodeError("not_an_image", "the content is not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError("too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, _PillowTypeError) as e:
        _check_declared_size(data, max_pixels, max_side)
        error = e.args[0] if isinstance(e, _PillowTypeError) else e
        raise DecodeError("corrupt", f"{type(error).__name__}: {error}") from None
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


def _check_declared_size(data: bytes, max_pixels: int, max_side: int) -> None:
    """Raises ``too_large`` for a file Pillow could not open whose header declares a size over the caps.

    Pillow reads past the header before it reports a size (a PNG's chunks up to the first IDAT, a GIF's first
    frame, a WebP's bitstream), so a bomb cut right after its header was ``not_an_image`` or ``corrupt``. What the
    header claims decides, whatever follows it, as for a bomb that is whole.
    """
    size = _declared_size(data)
    if size is not None and (size[0] * size[1] > max_pixels or max(size) > max_side):
        raise DecodeError("too_large", f"{size[0]}x{size[1]} exceeds the pixel cap (declared by the header)") from None


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) that a PNG, JPEG, GIF, BMP, TIFF or WebP header declares, read without Pillow.

    Returns None for other formats and for a header that is itself cut short or fails its checksum (a PNG's IHDR
    CRC): only a complete header declares anything. PPM needs none of this: Pillow reports its size from the header.
    """
    for magic, parse in _HEADERS:
        if data.startswith(magic):
            try:
                return parse(data)
            except (struct.error, IndexError):  # the header breaks off
                return None
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    length, kind = struct.unpack(">I4s", data[8:16])
    if length != 13 or kind != b"IHDR" or zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        return None
    return struct.unpack(">II", data[16:24])


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC share the range but are no frame.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame header's size: segments are walked from the start (EXIF, tables) up to the first one."""
    i = 2
    while True:
        if data[i] != 0xFF:
            return None  # no marker where one must be: not a header this walk can read
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 1 if marker == 0xFF else 2  # fill byte, or a marker without a segment
            continue
        if marker in (0xD9, 0xDA):
            return None  # the image ends or its data starts without a frame header
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if len(data) < i + 2 + length:
                return None  # the frame header breaks off
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 13:  # the logical screen descriptor breaks off
        return None
    return struct.unpack("<HH", data[6:10])


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    (header,) = struct.unpack("<I", data[14:18])
    if len(data) < 14 + header:
        return None  # the info header breaks off
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down image


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD, when both are there as one SHORT or LONG."""
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    sides: dict[int, int] = {}
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack(order + "HHI", data[entry : entry + 8])
        if tag in (256, 257) and n == 1 and kind in (3, 4):
            sides[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, entry + 8)[0]
        if len(sides) == 2:
            return sides[256], sides[257]
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: the canvas, 24-bit sides minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sides after the start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit sides minus one, packed
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


_HEADERS = (
    (b"\x89PNG\r\n\x1a\n", _png_size),
    (b"\xff\xd8", _jpeg_size),
    (b"GIF87a", _gif_size),
    (b"GIF89a", _gif_size),
    (b"BM", _bmp_size),
    (b"II*\x00", _tiff_size),
    (b"MM\x00*", _tiff_size),
    (b"RIFF", _webp_size),
)


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
