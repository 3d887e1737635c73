"""Reference tests: same params, same pixels as Keras / TensorFlow and Pillow, within a stated tolerance."""

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from tests.fixtures import photo_like
from transforms.functional import color as fc
from transforms.registry import build_op

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def img():
    return photo_like(np.random.default_rng(3), 60, 80)


def test_flips_and_rot90_match_tensorflow(img):
    assert np.array_equal(build_op("hflip").apply(img, {"flip": True}), tf.image.flip_left_right(img).numpy())
    assert np.array_equal(build_op("vflip").apply(img, {"flip": True}), tf.image.flip_up_down(img).numpy())
    for k in range(4):
        assert np.array_equal(build_op("rot90").apply(img, {"k": k}), tf.image.rot90(img, k).numpy())


def test_center_crop_matches_keras_layer(img):
    ours = build_op("center_crop", {"height": 31, "width": 41}).apply(img, {})
    theirs = tf.keras.layers.CenterCrop(31, 41)(img[None].astype("float32"))[0].numpy()
    assert np.array_equal(ours, theirs.astype(np.uint8))


def test_grayscale_and_gamma_match_tensorflow_within_one_level(img):
    grey = build_op("grayscale", {"channels": 1}).apply(img, {})
    tf_grey = tf.image.rgb_to_grayscale(img.astype("float32")).numpy()
    assert np.abs(grey.astype(float) - tf_grey).max() <= 1.0
    ours = build_op("gamma").apply(img, {"factor": 0.6})
    theirs = tf.image.adjust_gamma(img.astype("float32") / 255.0, 0.6).numpy() * 255
    assert np.abs(ours - theirs).max() <= 0.5 + 1e-6


def test_hue_matches_tensorflow_within_the_8bit_hsv_error(img):
    ours = build_op("hue").apply(img, {"factor": 0.2}).astype(float)
    theirs = tf.image.adjust_hue(img.astype("float32") / 255.0, 0.2).numpy() * 255
    assert np.abs(ours - theirs).mean() < 3.0


@pytest.mark.parametrize(
    ("name", "params", "pil"),
    [
        ("solarize", {"threshold": 100}, lambda im: ImageOps.solarize(im, 100)),
        ("posterize", {"bits": 3}, lambda im: ImageOps.posterize(im, 3)),
        ("invert", {}, ImageOps.invert),
        ("equalize", {}, ImageOps.equalize),
        ("autocontrast", {}, ImageOps.autocontrast),
    ],
)
def test_colour_ops_match_pillow_exactly(img, name, params, pil):
    assert np.array_equal(build_op(name).apply(img, params), np.asarray(pil(Image.fromarray(img))))


def test_rotation_matches_pillow_inside_the_frame(img):
    # affine's angle is clockwise (torchvision); Pillow's rotate is counter-clockwise.
    ours = build_op("affine").apply(img, {"angle": -20.0, "translate": [0, 0], "scale": 1.0, "shear": [0, 0]})
    theirs = np.asarray(Image.fromarray(img).rotate(20, resample=Image.Resampling.BILINEAR))
    inner = (slice(15, -15), slice(15, -15))
    assert np.abs(ours[inner].astype(float) - theirs[inner]).mean() < 2.0


@pytest.mark.parametrize(
    ("name", "params", "pil", "tol"),
    [
        ("gaussian_blur", {"sigma": 1.5}, ImageFilter.GaussianBlur(1.5), 2.0),
        ("box_blur", {"ksize": 5}, ImageFilter.BoxBlur(2), 0.6),
        ("median_blur", {"ksize": 5}, ImageFilter.MedianFilter(5), 0.01),
    ],
)
def test_blurs_match_pillow_away_from_borders(img, name, params, pil, tol):
    ours = build_op(name).apply(img, params).astype(float)
    theirs = np.asarray(Image.fromarray(img).filter(pil)).astype(float)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner] - theirs[inner]).mean() < tol


def test_contrast_and_brightness_are_pillow_enhance(img):
    from PIL import ImageEnhance

    pil = Image.fromarray(img)
    assert np.array_equal(fc.contrast(img, 1.7), np.asarray(ImageEnhance.Contrast(pil).enhance(1.7)))
    assert np.array_equal(fc.brightness_pil(img, 0.6), np.asarray(ImageEnhance.Brightness(pil).enhance(0.6)))


def test_sharpness_is_within_one_level_of_pillow(img):
    from PIL import ImageEnhance

    for factor in (0.0, 0.5, 1.7, 3.0):
        ours = fc.sharpness(img, factor).astype(int)
        theirs = np.asarray(ImageEnhance.Sharpness(Image.fromarray(img)).enhance(factor)).astype(int)
        assert np.abs(ours - theirs).max() <= 1
