"""Channel-free ops may run on a BGRA working copy (``transforms.codec.to_working``): it must change nothing.

For every op that says it is channel-free, on every example config and on several fill modes, the BGRA run gives
the same params and, channel for channel, the same pixels as the RGB run; a copy encodes to the same bytes; and
the expand loop's records equal a plain RGB replay of their recipes.
"""

import cv2
import numpy as np
import pytest

from tests.fixtures import encode, photo_like
from tests.test_ops_contract import OP_EXAMPLES
from transforms.codec import encode_image, to_working
from transforms.compose import _run
from transforms.expand import expand_image
from transforms.policies import Policy
from transforms.registry import build_op
from transforms.replay import replay

# Extra settings that take other code paths (remap for scipy's constant/wrap, nearest-neighbour, perspective fills).
EXTRA = [
    ("image_data_generator", {"rotation_range": 40, "zoom_range": 0.3, "fill_mode": fill, "cval": 77,
                              "horizontal_flip": True, "interpolation_order": order})
    for fill in ("constant", "nearest", "reflect", "wrap") for order in (0, 1)
] + [
    ("affine", {"degrees": 30, "translate": [0.2, 0.2], "fill_mode": "constant", "cval": 40,
                "interpolation": "bicubic"}),
    ("perspective", {"distortion_scale": 0.7, "fill_mode": "wrap"}),
    ("pad", {"padding": 5, "fill_mode": "constant", "cval": 200}),
    ("resize", {"height": 80, "width": 61, "interpolation": "area"}),
    ("random_crop", {"height": 90, "width": 90, "cval": 9}),
    ("one_of", {"ops": [{"op": "hflip"}, {"op": "rot90"}, {"op": "affine", "degrees": 10}]}),
]  # fmt: skip
CASES = [(n, c) for n, c in OP_EXAMPLES.items() if build_op(n, c).channel_free()] + EXTRA


def test_geometry_is_channel_free_and_colour_is_not():
    free = {n for n, c in OP_EXAMPLES.items() if build_op(n, c).channel_free()}
    assert {"hflip", "vflip", "rot90", "affine", "perspective", "resize", "pad", "random_resized_crop"} <= free
    assert not free & {"brightness", "hue", "grayscale", "cutout", "gaussian_noise", "randaugment", "some_of"}
    # The Keras op is channel-free without its colour steps only (channel_shift uses the image's overall min/max).
    assert not build_op("image_data_generator", OP_EXAMPLES["image_data_generator"]).channel_free()
    assert build_op("image_data_generator", {"rotation_range": 10}).channel_free()


@pytest.mark.parametrize("name,config", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_bgra_working_copy_gives_the_same_pixels(name, config):
    rgb = photo_like(np.random.default_rng(5), 71, 97)
    op = build_op(name, config)
    for seed in range(4):
        want, want_params = _run(op, np.random.default_rng(seed), rgb)
        got, got_params = _run(op, np.random.default_rng(seed), to_working(rgb))
        assert got_params == want_params
        assert got.shape[2] == 4
        np.testing.assert_array_equal(cv2.cvtColor(got, cv2.COLOR_BGRA2RGB), want)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_bgra_encodes_to_the_same_bytes(fmt):
    rgb = photo_like(np.random.default_rng(6), 64, 80)
    assert encode_image(to_working(rgb), fmt, 90, bgra=True) == encode_image(rgb, fmt, 90)
    decoded = cv2.imdecode(np.frombuffer(encode_image(to_working(rgb), fmt, 90, bgra=True), np.uint8), -1)
    assert decoded.shape == (64, 80, 3)  # no alpha channel written


@pytest.mark.parametrize("ops", [
    [{"op": "image_data_generator", "rotation_range": 30, "zoom_range": 0.2, "horizontal_flip": True}],
    [{"op": "hflip"}, {"op": "random_resized_crop", "height": 48, "width": 48}],
    [{"op": "hflip"}, {"op": "brightness", "factor": 0.3}],  # not channel-free: the plain RGB path
])  # fmt: skip
def test_expanded_copies_replay_in_rgb(ops):
    data = encode(photo_like(np.random.default_rng(7), 60, 90), "PNG")
    policy = Policy.from_config({"version": 1, "ops": ops})
    records = expand_image(data, "a/b.png", 0, "a", policy=policy, copies=4, seed=3, image_format="png")
    assert len(records) == 4
    for r in records:
        assert replay(r["recipe"], data) == r["image"]
