"""Seeding is a pure function of its inputs; policies load from presets, files and strings, or fail clearly."""

import json
import subprocess
import sys

import numpy as np
import pytest

from transforms.policies import PRESETS, Policy, load_policy
from transforms.registry import PolicyError, registered
from transforms.seeding import key_digest, op_rng, stable_fraction


def test_op_rng_depends_on_every_input_and_nothing_else():
    draw = lambda *a: op_rng(*a).random(4).tolist()  # noqa: E731
    base = draw(0, "daisy/1.jpg", 1, 0)
    assert draw(0, "daisy/1.jpg", 1, 0) == base
    for other in [
        (1, "daisy/1.jpg", 1, 0),
        (0, "daisy/2.jpg", 1, 0),
        (0, "daisy/1.jpg", 2, 0),
        (0, "daisy/1.jpg", 1, 1),
    ]:
        assert draw(*other) != base


def test_key_digest_is_stable_across_processes_and_hash_seeds():
    code = "from transforms.seeding import key_digest; print(key_digest('tulips/x.jpg'))"
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": s},
                       check=True, cwd=".").stdout
        for s in ("0", "1", "12345")
    }  # fmt: skip
    assert outs == {str(key_digest("tulips/x.jpg")) + "\n"}
    assert 0 <= stable_fraction("a") < 1 and stable_fraction("a") != stable_fraction("b")


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        op_rng(-1, "k", 1, 0)


def test_presets_build_and_round_trip():
    for name, config in PRESETS.items():
        policy = Policy.from_config(config)
        assert Policy.from_config(policy.to_config()).to_config() == policy.to_config(), name


def test_registry_lists_exactly_the_canonical_ops():
    canonical = (
        "affine hflip vflip rot90 random_crop random_resized_crop center_crop crop resize pad perspective brightness "
        "contrast gamma saturation hue color_jitter channel_shift grayscale invert solarize posterize equalize "
        "autocontrast sharpness gaussian_noise impulse_noise box_blur gaussian_blur median_blur jpeg_quality cutout "
        "grid_mask"
    ).split()
    extra = "image_data_generator sequence one_of some_of random_apply randaugment autoaugment trivialaugment augmix"
    assert set(registered()) == set(canonical) | set(extra.split())


def test_policy_augment_is_deterministic_and_records_steps():
    policy = Policy.from_config(load_policy("imagedatagenerator"))
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    a, steps_a, label = policy.augment(img, 0, "k", 1, "cats")
    b, steps_b, _ = policy.augment(img, 0, "k", 1, "cats")
    c, _, _ = policy.augment(img, 0, "k", 2, "cats")
    assert label == "cats"
    assert np.array_equal(a, b) and steps_a == steps_b and not np.array_equal(a, c)
    assert steps_a[0]["op"] == "image_data_generator" and json.dumps(steps_a)


def test_policy_file_yaml_and_json(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("version: 1\nops:\n  - op: image_data_generator\n    rotation_range: 15\n    vertical_flip: true\n")
    assert load_policy(str(y))["ops"][0]["rotation_range"] == 15
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"version": 1, "ops": [{"op": "resize", "height": 8, "width": 8}]}))
    assert load_policy(str(j))["ops"][0]["op"] == "resize"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"version": 1, "ops": [{"op": "twirl"}]}', "unknown op 'twirl'; known ops: .*image_data_generator"),
        ('{"version": 2, "ops": [{"op": "resize"}]}', "version 2 is not supported"),
        ('{"version": 1, "ops": []}', "non-empty 'ops'"),
        ('{"version": 1, "ops": [{"op": "image_data_generator", "fill_mode": "bogus"}]}', "fill_mode must be one of"),
        ('{"version": 1, "ops": [{"op": "image_data_generator", "spin": 3}]}', "unexpected keyword argument 'spin'"),
        ("not-a-preset-or-file", "neither a preset"),
    ],
)
def test_bad_policies_fail_with_a_clear_message(text, match):
    with pytest.raises(PolicyError, match=match):
        load_policy(text)


def test_op_rng_draws_what_numpy_draws_from_the_list_of_its_ints():
    # op_rng hands SeedSequence the 32-bit words itself (faster); every stream must stay the one of the plain list.
    for seed, copy_index, op_index, attempt in [(0, 1, 0, 0), (2**32 - 1, 5, 2**32 - 1, 3), (2**32, 2**33, 1, 0),
                                                (2**64 + 3, 7, 2, 2**40)]:  # fmt: skip
        ints = [seed, *key_digest("daisy/1.jpg"), copy_index, op_index] + ([0x52454452, attempt] if attempt else [])
        ours = op_rng(seed, "daisy/1.jpg", copy_index, op_index, attempt).integers(0, 2**63, 8)
        assert (ours == np.random.default_rng(ints).integers(0, 2**63, 8)).all()
