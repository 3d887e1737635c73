"""The ``image_data_generator`` op is Keras's ImageDataGenerator: same params, same pixels up to rounding."""

import numpy as np
import pytest

from tests.fixtures import photo_like
from transforms.base import ImageMeta
from transforms.geometric import ImageDataGenerator
from transforms.seeding import op_rng

tf = pytest.importorskip("tensorflow")
pytest.importorskip("scipy")
KerasIDG = tf.keras.preprocessing.image.ImageDataGenerator

KERAS_KEYS = set("theta tx ty shear zx zy flip_horizontal flip_vertical channel_shift_intensity brightness".split())


@pytest.fixture(scope="module")
def image():
    # Non-square on purpose: Keras's transposed shift/centre axes (keras#17398) only show there.
    return photo_like(np.random.default_rng(7), 90, 130)


def keras_apply(config, image, params):
    gen = KerasIDG(
        fill_mode=config["fill_mode"], cval=config["cval"], interpolation_order=config["interpolation_order"]
    )
    return gen.apply_transform(image.astype(np.float32), params)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_geometry_matches_keras_for_every_fill_mode(image, fill_mode, order):
    op = ImageDataGenerator(
        rotation_range=40, width_shift_range=0.3, height_shift_range=0.3, shear_range=25, zoom_range=0.4,
        horizontal_flip=True, vertical_flip=True, fill_mode=fill_mode, cval=37, interpolation_order=order,
    )  # fmt: skip
    for copy_index in range(1, 7):
        params = op.sample_params(op_rng(0, "k", copy_index, 0), ImageMeta.of(image))
        ours = op.apply(image, params).astype(np.float64)
        theirs = keras_apply(op.config(), image, params)
        diff = np.abs(ours - theirs)
        # uint8 rounding and OpenCV's 1/32-pixel interpolation grid: <= 1 grey level on average, never a
        # wrong pixel (a border-mode or axis mistake shows up as diffs of tens of levels over whole regions).
        assert diff.mean() < (0.01 if order == 0 else 0.5), (fill_mode, order, params)
        assert np.mean(diff > 3) < 0.001, (fill_mode, order, params)


def test_colour_steps_match_keras(image):
    op = ImageDataGenerator(rotation_range=10, channel_shift_range=40, brightness_range=[0.5, 1.5])
    for copy_index in range(1, 7):
        params = op.sample_params(op_rng(3, "colour", copy_index, 0), ImageMeta.of(image))
        assert params["brightness"] is not None and params["channel_shift_intensity"] is not None
        diff = np.abs(op.apply(image, params).astype(np.float64) - keras_apply(op.config(), image, params))
        # Colour steps run in float32 as in Keras, so only rare 1-level rounding differences remain.
        assert diff.mean() < 0.01 and diff.max() <= 1


def test_params_are_exactly_keras_transform_dict(image):
    op = ImageDataGenerator(rotation_range=30, horizontal_flip=True)
    params = op.sample_params(op_rng(0, "k", 1, 0), ImageMeta.of(image))
    assert set(params) == KERAS_KEYS == set(KerasIDG().get_random_transform(image.shape))


def test_shift_range_parsing_follows_keras():
    meta = ImageMeta(100, 200, 3)
    draws = lambda op: [op.sample_params(op_rng(1, "s", c, 0), meta) for c in range(1, 200)]  # noqa: E731
    # float < 1: fraction of the side; tx follows height, ty follows width.
    p = draws(ImageDataGenerator(width_shift_range=0.25, height_shift_range=0.1))
    assert max(abs(d["tx"]) for d in p) <= 10 and max(abs(d["tx"]) for d in p) > 5
    assert max(abs(d["ty"]) for d in p) <= 50 and max(abs(d["ty"]) for d in p) > 25
    # int: whole pixels from range(n) with a random sign.
    p = draws(ImageDataGenerator(width_shift_range=4))
    assert {d["ty"] for d in p} <= {float(v) for v in range(-3, 4)} and all(float(d["ty"]).is_integer() for d in p)
    # list: one of the values, with a random sign.
    p = draws(ImageDataGenerator(height_shift_range=[2, 5]))
    assert {d["tx"] for d in p} == {-5.0, -2.0, 2.0, 5.0}
    # float >= 1: pixels, not scaled.
    p = draws(ImageDataGenerator(height_shift_range=3.0))
    assert max(abs(d["tx"]) for d in p) <= 3.0


def test_zoom_flip_and_defaults():
    meta = ImageMeta(10, 10, 3)
    p = ImageDataGenerator(zoom_range=[0.5, 0.8]).sample_params(op_rng(0, "z", 1, 0), meta)
    assert 0.5 <= p["zx"] <= 0.8 and 0.5 <= p["zy"] <= 0.8
    p = ImageDataGenerator().sample_params(op_rng(0, "z", 1, 0), meta)
    assert (p["theta"], p["tx"], p["ty"], p["zx"], p["zy"], p["flip_horizontal"]) == (0, 0, 0, 1, 1, False)
    flips = [ImageDataGenerator(horizontal_flip=True).sample_params(op_rng(0, "z", c, 0), meta) for c in range(50)]
    assert 10 < sum(f["flip_horizontal"] for f in flips) < 40


@pytest.mark.parametrize(
    "kwargs",
    [{"fill_mode": "mirror"}, {"interpolation_order": 3}, {"zoom_range": [1, 2, 3]}, {"rotation_range": -1},
     {"brightness_range": 0.5}],
)  # fmt: skip
def test_bad_arguments_are_rejected_with_the_allowed_values(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        ImageDataGenerator(**kwargs)


def test_apply_is_pure_and_deterministic(image):
    op = ImageDataGenerator(rotation_range=30, zoom_range=0.2, channel_shift_range=20, brightness_range=[0.8, 1.2])
    before = image.copy()
    params = op.sample_params(op_rng(5, "p", 1, 0), ImageMeta.of(image))
    a, b = op.apply(image, params), op.apply(image, params)
    assert np.array_equal(image, before)
    assert a.dtype == np.uint8 and a.shape == image.shape and np.array_equal(a, b)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
def test_rgba_detour_gives_the_same_pixels_as_a_three_channel_warp(image, fill_mode):
    import cv2

    from transforms.functional.geometric import _BORDER, keras_transform_matrix, warp_affine_inverse

    m = keras_transform_matrix(*image.shape[:2], theta=17, tx=5.5, ty=-3.2, shear=4, zx=1.1, zy=0.93)[:2]
    source, shifted = image, m
    if fill_mode == "nearest":  # replicate borders warp a replicate-padded source (see the next test)
        pad = max(image.shape[:2]) // 4
        source = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        shifted = m + [[0, 0, pad], [0, 0, pad]]
    direct = cv2.warpAffine(source, shifted, image.shape[1::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=_BORDER[fill_mode])  # fmt: skip
    assert np.array_equal(warp_affine_inverse(image, m, fill_mode), direct)


@pytest.mark.parametrize("shift", [0.0, 0.3, 3.0])
def test_replicate_padded_warp_is_the_replicate_border_warp(image, shift):
    import cv2

    from transforms.functional.geometric import keras_transform_matrix, reuse_padding, warp_affine_inverse

    h, w = image.shape[:2]
    # shift 3.0 sends every point far beyond the pad: OpenCV's own border takes over, with the same meaning.
    m = keras_transform_matrix(h, w, theta=23, tx=shift * h, ty=-shift * w, zx=0.8, zy=0.7)[:2]
    plain = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    ours = warp_affine_inverse(image, m, "nearest")
    diff = np.abs(ours.astype(int) - plain)
    # Only float rounding of the shifted coordinates differs: one level, on a handful of pixels.
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.002
    with reuse_padding():  # the padded copy is reused, and reuse never changes a pixel
        again = [warp_affine_inverse(image, m, "nearest") for _ in range(3)]
        other = warp_affine_inverse(image[::-1].copy(), m, "nearest")
        last = warp_affine_inverse(image, m, "nearest")
    assert all(np.array_equal(a, ours) for a in [*again, last])
    assert np.array_equal(other, warp_affine_inverse(image[::-1].copy(), m, "nearest"))
