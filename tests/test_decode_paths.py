"""Plain JPEGs are decoded by OpenCV (faster); every decode must still give exactly Pillow's pixels.

The reference is what a Keras user gets from ``load_img``: Pillow, EXIF orientation applied, converted to RGB.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.fixtures import FLOWERS_MINI, photo_like
from transforms.codec import DecodeError, _decode_plain_jpeg, decode_image


def _pillow(data: bytes) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def _jpeg(img: np.ndarray, orientation: int = 1, **save) -> bytes:
    pil = Image.fromarray(img)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", exif=exif.tobytes(), **save)
    return buf.getvalue()


@pytest.mark.parametrize("save", [
    {"quality": 90, "subsampling": 0}, {"quality": 75, "subsampling": 1}, {"quality": 95, "subsampling": 2},
    {"quality": 85, "progressive": True}, {"quality": 50, "optimize": True},
])  # fmt: skip
@pytest.mark.parametrize("size", [(37, 53), (64, 48), (1, 9)])
def test_jpeg_pixels_equal_pillow(save, size):
    img = photo_like(np.random.default_rng(sum(size)), *size)
    data = _jpeg(img, **save)
    assert _decode_plain_jpeg(data, Image.open(io.BytesIO(data))) is not None  # the OpenCV path is the one tested
    got, step = decode_image(data)
    np.testing.assert_array_equal(got, _pillow(data))
    assert step["params"]["format"] == "JPEG" and step["params"]["mode"] == "RGB"


def test_grey_jpeg_pixels_equal_pillow():
    grey = photo_like(np.random.default_rng(1), 40, 30)[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=90)
    got, step = decode_image(buf.getvalue())
    assert step["params"]["mode"] == "L" and got.shape == (40, 30, 3)
    np.testing.assert_array_equal(got, _pillow(buf.getvalue()))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    data = _jpeg(photo_like(np.random.default_rng(2), 30, 50), orientation, quality=90)
    got, step = decode_image(data)
    assert step["params"]["exif_orientation"] == orientation
    assert got.shape[:2] == ((50, 30) if orientation >= 5 else (30, 50))
    np.testing.assert_array_equal(got, _pillow(data))


def test_truncated_and_trailing_bytes():
    data = _jpeg(photo_like(np.random.default_rng(3), 64, 64), quality=90)
    with pytest.raises(DecodeError) as e:
        decode_image(data[: len(data) * 2 // 3])
    assert e.value.reason == "corrupt"
    assert _decode_plain_jpeg(data[:-100], Image.open(io.BytesIO(data))) is None
    padded = data + b"\0" * 16 + b"trailing junk"  # some cameras append data after EOI: Pillow decodes it
    np.testing.assert_array_equal(decode_image(padded)[0], _pillow(data))


@pytest.mark.skipif(not FLOWERS_MINI.is_dir(), reason="../shared/data/flowers-mini is not present")
def test_flowers_mini_pixels_equal_pillow():
    for path in sorted(FLOWERS_MINI.glob("*/*.jpg")):
        data = path.read_bytes()
        np.testing.assert_array_equal(decode_image(data)[0], _pillow(data), err_msg=str(path))
