"""The quality gate: degenerate copies are re-drawn (bounded), counted, flagged, replayable; clean ones unchanged."""

import io
import json
from collections import Counter

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from PIL import Image

from beam_jobs.cli import main
from beam_jobs.config import JobConfig
from beam_jobs.pipeline import run_job
from beam_jobs.preview import preview_copies
from schemas.source import SourceImage
from tests.fixtures import encode, make_folder, photo_like, read_parquet, read_tfrecords
from transforms.codec import decode_image, to_working
from transforms.expand import ExpandFn
from transforms.functional.geometric import keras_transform_matrix
from transforms.policies import Policy
from transforms.quality import QualityGate, fill_fraction, keras_inverse, thumbnail
from transforms.seeding import key_digest, op_rng

# Shifts up to 90% of the side with a black fill: about 40% of first draws are more than half fill.
HUGE_SHIFTS = {"version": 1, "ops": [{"op": "image_data_generator", "width_shift_range": 0.9,
                                      "height_shift_range": 0.9, "fill_mode": "constant"}]}  # fmt: skip
COPIES = 4


def _run(out, source, **kwargs):
    config = JobConfig(output=str(out), source=str(source), copies=COPIES, include_original=True, seed=3,
                       policy=HUGE_SHIFTS, image_format="png", progress=False, **kwargs)  # fmt: skip
    return run_job(config, out=open("/dev/null", "w"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same job with the gate on and off (PNG, so that fill pixels are exactly the fill value)."""
    root = tmp_path_factory.mktemp("gate")
    source = make_folder(root / "src", per_class=4)
    on, off = root / "on", root / "off"
    return source, on, _run(on, source), off, _run(off, source, quality_gate=False)


def _gate(recipe: str) -> dict | None:
    steps = [s for s in json.loads(recipe) if s["op"] == "quality_gate"]
    return steps[0]["params"] if steps else None


def _black_share(png: bytes) -> float:
    return float((np.asarray(Image.open(io.BytesIO(png))) == 0).all(axis=-1).mean())


def test_preview_shows_the_copies_the_run_wrote(runs, tmp_path):
    # The preview goes through the same gate: its copies are the run's, re-draws included (it showed first draws).
    source, on, _, _, _ = runs
    rows = {(r["source_key"], r["copy_index"]): r for r in read_parquet(on).to_pylist()}
    policy, redrawn = Policy.from_config(HUGE_SHIFTS), 0
    for path in sorted(source.glob("*/*")):
        key = f"{path.parent.name}/{path.name}"
        image, _ = decode_image(path.read_bytes())
        copies = preview_copies(image, key, path.parent.name, policy, COPIES, seed=3, gate=QualityGate())
        for c, (pixels, steps) in enumerate(copies, 1):
            record = rows[(key, c)]
            assert json.loads(record["recipe"])[1:-1] == json.loads(json.dumps(steps))
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["image"]["bytes"]))), pixels)
            redrawn += steps[-1]["op"] == "quality_gate"
    assert redrawn >= 5
    # The command: gate flags as the run's; a bad bound is one clear error.
    out = tmp_path / "sheet.png"
    argv = ["preview", "--source", str(source), "-n", "2", "--out", str(out), "--max-redraws", "1"]
    assert main(argv) == 0 and Image.open(out).size[0] > 3 * 160
    assert main([*argv[:-2], "--max-fill-fraction", "2"]) == 2


def test_huge_shifts_with_constant_fill_are_redrawn_counted_and_flagged(runs):
    _, on, manifest, _, _ = runs
    rows = read_parquet(on).to_pylist()
    assert len(rows) == len(read_tfrecords(on)) == 12 * (COPIES + 1)
    gates = {(r["source_key"], r["copy_index"]): _gate(r["recipe"]) for r in rows}
    flagged = [g for g in gates.values() if g and g["degenerate"]]
    fixed = [g for g in gates.values() if g and not g["degenerate"]]
    assert len(fixed) >= 5  # enough first draws were degenerate for the test to mean something
    g = manifest["counts"]["quality_gate"]
    assert g["checked"] == 12 * COPIES and all(gates[(k, 0)] is None for k, _ in gates)
    assert g["fixed_by_redraw"] == len(fixed) and g["still_degenerate"] == len(flagged)
    assert g["degenerate_first_draw"] == g["redrawn"] == len(fixed) + len(flagged) == g["reasons"]["fill"]
    assert g["redraws"] == sum(len(x["reasons"]) - 1 for x in fixed + flagged)
    assert all(x["attempt"] == len(x["reasons"]) - 1 and 1 <= x["attempt"] <= 3 for x in fixed)
    assert all(x["attempt"] == 0 and len(x["reasons"]) == 4 for x in flagged)  # 1 + max_redraws, attempt 0 kept
    assert main(["verify", str(on)]) == 0
    # The pixels agree: kept copies are at most half fill (black); flagged ones are not.
    for r in rows:
        gate, share = gates[(r["source_key"], r["copy_index"])], _black_share(r["image"]["bytes"])
        if r["copy_index"] and not (gate and gate["degenerate"]):
            assert share <= 0.53, (r["source_key"], r["copy_index"], share)
        elif gate:
            assert share > 0.45  # the estimate said > 0.5 (it is within a few % of the pixels)


def test_first_draws_are_unchanged_and_redrawn_copies_replay_bit_exactly(runs, capsys, tmp_path):
    source, on, _, off, manifest_off = runs
    assert "quality_gate" not in manifest_off["counts"] and manifest_off["quality_gate"] is None
    before = {(r["source_key"], r["copy_index"]): r for r in read_parquet(off).to_pylist()}
    redrawn = []
    for r in read_parquet(on).to_pylist():
        gate, old = _gate(r["recipe"]), before[(r["source_key"], r["copy_index"])]
        if gate is None or gate["attempt"] == 0:  # clean first draws and flagged copies: the gate-off bytes
            assert r["image"] == old["image"] and (gate or r["recipe"] == old["recipe"])
        else:
            assert r["image"] != old["image"]
            redrawn.append(r)
    r = max(redrawn, key=lambda r: _gate(r["recipe"])["attempt"])
    argv = ["replay", str(on), "--source-key", r["source_key"], "--copy-index", str(r["copy_index"]),
            "--out", str(tmp_path / "c.png")]  # fmt: skip
    assert main(argv) == 0 and "bit-exact" in capsys.readouterr().out
    assert (tmp_path / "c.png").read_bytes() == r["image"]["bytes"]
    # The recorded attempt is the sub-seed that drew the params.
    steps = json.loads(r["recipe"])
    image, _ = decode_image((source / r["source_key"]).read_bytes())
    attempt = _gate(r["recipe"])["attempt"]
    _, again, _ = Policy.from_config(HUGE_SHIFTS).augment(image, 3, r["source_key"], r["copy_index"], attempt=attempt)
    assert again[0]["params"] == steps[1]["params"]


def test_attempt_zero_keeps_the_seeding_of_earlier_versions_and_redraws_use_sub_seeds():
    old = np.random.default_rng([7, *key_digest("a/b.jpg"), 2, 1]).random(4).tolist()
    assert op_rng(7, "a/b.jpg", 2, 1).random(4).tolist() == op_rng(7, "a/b.jpg", 2, 1, attempt=0).random(4).tolist()
    assert op_rng(7, "a/b.jpg", 2, 1).random(4).tolist() == old
    draws = {tuple(op_rng(7, "a/b.jpg", 2, 1, attempt=a).random(4).tolist()) for a in range(5)}
    assert len(draws) == 5
    with pytest.raises(ValueError, match="attempt"):
        op_rng(7, "a/b.jpg", 2, 1, attempt=-1)


def test_near_constant_copies_are_redrawn_a_bounded_number_of_times_then_kept_and_flagged():
    image = photo_like(np.random.default_rng(0), 40, 50)
    dark = Policy.from_config({"version": 1, "ops": [{"op": "brightness", "factor": [0.0, 0.01]}]})
    tally: Counter = Counter()
    augment = QualityGate(max_redraws=2).for_source(dark, image, tally)
    for c in range(1, 6):
        out, steps, _ = augment(image, 0, "k", c)
        gate = steps[-1]["params"]
        assert gate == {"attempt": 0, "reasons": [["constant"]] * 3, "degenerate": True}
        assert np.array_equal(out, dark.augment(image, 0, "k", c)[0])  # the first draw is kept
    assert tally == {"redrawn": 5, "redraws": 10, "degenerate": 5}


def test_identical_copies_are_redrawn_but_a_constant_source_is_not_judged():
    flip = Policy.from_config({"version": 1, "ops": [{"op": "hflip", "p": 0.5}]})
    image = photo_like(np.random.default_rng(1), 40, 50)
    tally: Counter = Counter()
    augment = QualityGate().for_source(flip, image, tally)
    outs = [augment(image, 0, "k", c) for c in range(1, 21)]
    gates = [s[-1]["params"] for _, s, _ in outs if s[-1]["op"] == "quality_gate"]
    assert len(gates) == tally["redrawn"] > 3 and all(g["reasons"][0] == ["identical"] for g in gates)
    # Four unflipped draws in a row (1 in 16) stay identical: kept and flagged; every other copy is flipped.
    assert tally["degenerate"] == sum(np.array_equal(out, image) for out, _, _ in outs) < 5
    # A flat source stays flat under any flip or shift: nothing to re-draw, nothing flagged, no extra draws.
    flat = np.full((40, 50, 3), 90, np.uint8)
    flat[::7, ::5] = 92  # near-constant, not exactly
    tally = Counter()
    augment = QualityGate().for_source(flip, flat, tally)
    assert all(len(augment(flat, 0, "k", c)[1]) == 1 for c in range(1, 21)) and not tally


@pytest.mark.parametrize(
    "op",
    [
        {"op": "image_data_generator", "rotation_range": 60, "width_shift_range": 0.5, "height_shift_range": 0.5,
         "zoom_range": [0.5, 2.0], "shear_range": 30, "fill_mode": "constant"},
        {"op": "affine", "degrees": 60, "translate": [0.5, 0.5], "scale": [0.5, 1.5], "shear": 20},
        {"op": "perspective", "distortion_scale": 0.9},
        {"op": "randaugment", "num_ops": 3, "magnitude": 25,
         "allowed_ops": ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]},
        {"op": "sequence", "ops": [{"op": "random_crop", "height": 30, "width": 50},
                                   {"op": "affine", "translate": [0.5, 0.2], "degrees": 30}]},
    ],
    ids=lambda op: op["op"],
)  # fmt: skip
def test_fill_fraction_from_the_recipe_matches_the_pixels(op):
    white = np.full((60, 80, 3), 255, np.uint8)
    policy = Policy.from_config({"version": 1, "ops": [op]})
    errors = []
    for c in range(1, 40):
        out, steps, _ = policy.augment(white, 0, "k", c)
        errors.append(abs(fill_fraction(steps, 60, 80) - float((out < 128).all(axis=-1).mean())))
    assert max(errors) < 0.06 and np.mean(errors) < 0.02


def test_reflect_and_wrap_borders_are_not_fill_but_nearest_is():
    steps = lambda mode: [{"op": "image_data_generator", "config": {"fill_mode": mode},  # noqa: E731
                           "params": {"theta": 0, "tx": 0, "ty": 60, "shear": 0, "zx": 1, "zy": 1}}]  # fmt: skip
    assert fill_fraction(steps("reflect"), 80, 80) == fill_fraction(steps("wrap"), 80, 80) == 0
    assert fill_fraction(steps("nearest"), 80, 80) == fill_fraction(steps("constant"), 80, 80) == 0.75


def test_expand_fn_counts_redraws_in_beam_metrics():
    data = encode(photo_like(np.random.default_rng(2), 30, 40), "PNG")
    p = beam.Pipeline(runner=FnApiRunner())
    _ = (
        p
        | beam.Create([SourceImage(f"a/{i}.png", 0, "a", data=data) for i in range(4)])
        | beam.ParDo(ExpandFn(HUGE_SHIFTS, copies=5, seed=0, quality_gate=QualityGate().config()))
    )
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    assert counters["records_out"] == 20
    assert counters["quality_gate_redrawn"] > 0 and counters["quality_gate_redraws"] >= counters["quality_gate_redrawn"]


def test_gate_flags(capsys, tmp_path):
    src = make_folder(tmp_path / "src", classes=("a", "b"), per_class=2)
    argv = ["run", "--source", str(src), "--output", str(tmp_path / "o"), "--copies", "2", "--no-progress",
            "--width-shift-range", "0.9", "--fill-mode", "constant", "--max-redraws", "0", "--max-fill-fraction",
            "0.2", "--min-pixel-std", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "still degenerate (kept, flagged in their recipe)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "o" / "beam_expand.json").read_text())
    assert manifest["quality_gate"] == {"max_redraws": 0, "max_fill": 0.2, "min_std": 1.0}
    g = manifest["counts"]["quality_gate"]
    assert g["redraws"] == g["redrawn"] == 0 and g["still_degenerate"] == g["degenerate_first_draw"] > 0
    argv[3:5] = ["--output", str(tmp_path / "p")]
    assert main([*argv, "--no-quality-gate"]) == 0
    assert "quality gate" not in capsys.readouterr().out
    for flag, value in (("--max-redraws", "-1"), ("--max-fill-fraction", "1.5"), ("--min-pixel-std", "-2")):
        assert main([*argv[:5], flag, value]) == 2
        assert flag in capsys.readouterr().err


def test_the_gates_fast_keras_matrix_is_keras_matrix():
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(1, 600, 2))
        params = [rng.uniform(-180, 180), rng.uniform(-80, 80), rng.uniform(-80, 80), rng.uniform(-45, 45),
                  rng.uniform(0.5, 2), rng.uniform(0.5, 2)]  # fmt: skip
        params = [p if rng.random() < 0.7 else v for p, v in zip(params, (0, 0, 0, 0, 1, 1), strict=True)]
        expected, fast = keras_transform_matrix(h, w, *params), keras_inverse(h, w, *params)
        assert (fast is None and expected is None) or np.allclose(fast, expected[:2], rtol=0, atol=1e-9)
    assert keras_inverse(10, 20) is None and keras_transform_matrix(10, 20) is None


def test_the_gate_judges_a_bgra_working_copy_as_it_judges_rgb():
    # A black source with one textured corner: big constant-fill shifts often leave a flat copy. The BGRA working
    # copy's 4th channel (cval where filled, 255 elsewhere) must not make such a copy look textured.
    image = np.zeros((64, 64, 3), np.uint8)
    image[:20, :20] = photo_like(np.random.default_rng(1), 20, 20)
    policy = Policy.from_config({"version": 1, "ops": [{"op": "affine", "translate": [0.4, 0.4],
                                                        "fill_mode": "constant"}]})  # fmt: skip
    gate = QualityGate(max_redraws=2)
    rgb, bgra = gate.for_source(policy, image), gate.for_source(policy, to_working(image))
    flagged = 0
    for c in range(1, 60):
        want, want_steps, _ = rgb(image, 0, "k", c)
        got, got_steps, _ = bgra(to_working(image), 0, "k", c)
        assert got_steps == want_steps
        np.testing.assert_array_equal(cv2.cvtColor(got, cv2.COLOR_BGRA2RGB), want)
        flagged += want_steps[-1]["op"] == "quality_gate"
    assert flagged  # the case is exercised


def test_fill_after_a_crop_is_measured_on_the_crop():
    steps = [
        {"op": "crop", "config": {"top": 0, "left": 0, "height": 32, "width": 32, "cval": 0}, "params": {}},
        {"op": "affine", "config": {"degrees": 0, "translate": [0.9, 0], "scale": [1, 1], "shear": 0,
                                    "fill_mode": "constant", "cval": 0, "interpolation": "bilinear"},
         "params": {"angle": 0.0, "translate": [28, 0], "scale": 1.0, "shear": [0.0, 0.0]}},
    ]  # fmt: skip
    assert fill_fraction(steps, 128, 128) > 0.8  # 28 of 32 columns come from outside the 32x32 crop


@pytest.mark.parametrize("height", [1, 5, 31, 32, 33, 97, 280, 1001])
@pytest.mark.parametrize("width", [1, 2, 32, 45, 370, 3001])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_thumbnail_is_opencv_nearest_resize_of_the_colour_channels(height, width, channels):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, channels), dtype=np.uint8)
    size = (min(width, 32), min(height, 32))
    expected = cv2.resize(np.ascontiguousarray(image[:, :, :3]), size, interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(thumbnail(image), expected.reshape(size[1], size[0], -1))
