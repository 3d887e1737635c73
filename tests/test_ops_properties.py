"""Invariants of the kernels and ops, checked with hypothesis on random images."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from transforms.functional import color as fc
from transforms.functional import geometric as fgeo
from transforms.registry import build_op

images = st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3])).flatmap(
    lambda s: arrays(np.uint8, s)
)
SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(images)
def test_double_flips_and_four_quarter_turns_are_identities(img):
    assert np.array_equal(fgeo.flip(fgeo.flip(img, True, False), True, False), img)
    assert np.array_equal(fgeo.flip(fgeo.flip(img, False, True), False, True), img)
    assert np.array_equal(fgeo.flip(img, True, True), fgeo.rot90(img, 2))
    out = img
    for _ in range(4):
        out = fgeo.rot90(out, 1)
    assert np.array_equal(out, img)


@SETTINGS
@given(images)
def test_identity_settings_leave_the_image_unchanged(img):
    assert np.array_equal(fc.solarize(img, 256), img)
    assert np.array_equal(fc.posterize(img, 8), img)
    assert np.array_equal(fc.invert(fc.invert(img)), img)
    assert np.array_equal(fc.gamma(img, 1.0), img)
    assert np.array_equal(fc.brightness_pil(img, 1.0), img)
    assert np.array_equal(fc.hue(img, 0.0), img)
    h, w = img.shape[:2]
    padded = build_op("pad", {"padding": [2, 2, 3, 3], "fill_mode": "reflect"}).apply(img, {})
    assert np.array_equal(build_op("center_crop", {"height": h, "width": w}).apply(padded, {}), img)
    jitter = build_op("color_jitter", {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0})
    assert np.array_equal(jitter.apply(img, jitter.sample_params(np.random.default_rng(0), None)), img)


@SETTINGS
@given(images, st.integers(0, 256))
def test_solarize_only_touches_values_at_or_above_the_threshold(img, threshold):
    out = fc.solarize(img, threshold)
    low = img < threshold
    assert np.array_equal(out[low], img[low]) and np.array_equal(out[~low], 255 - img[~low])


@SETTINGS
@given(images, st.integers(1, 8))
def test_posterize_keeps_the_top_bits(img, bits):
    out = fc.posterize(img, bits)
    assert np.all(out <= img) and np.all((out & ((1 << (8 - bits)) - 1)) == 0)


@SETTINGS
@given(images, st.floats(0.0, 3.0))
def test_grayscale_is_channel_equal_and_saturation_zero_is_grey(img, _):
    g = fc.grayscale(img, 3)
    assert np.array_equal(g[..., 0], g[..., 2])
    if img.shape[2] == 3:
        assert np.array_equal(fc.saturation(img, 0.0), g)


@SETTINGS
@given(st.integers(8, 40), st.integers(8, 40), st.integers(0, 10_000))
def test_random_crops_stay_inside_the_image(h, w, seed):
    op = build_op("random_resized_crop", {"scale": [0.05, 1.0]})
    p = op.sample_params(np.random.default_rng(seed), type("M", (), {"height": h, "width": w, "channels": 3})())
    assert 0 <= p["top"] and p["top"] + p["height"] <= h and 0 <= p["left"] and p["left"] + p["width"] <= w
    cut = build_op("cutout", {}).sample_params(np.random.default_rng(seed), type("M", (), {"height": h, "width": w})())
    assert cut["top"] + cut["height"] <= h and cut["left"] + cut["width"] <= w


@SETTINGS
@given(images)
def test_equalize_and_autocontrast_tables_equal_pillows(img):
    from PIL import Image, ImageOps

    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    for ours, theirs in ((fc.equalize, ImageOps.equalize), (fc.autocontrast, ImageOps.autocontrast)):
        assert np.array_equal(ours(img).reshape(img.shape), np.asarray(theirs(pil)).reshape(img.shape))
