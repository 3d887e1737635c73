"""Per-class rules and label maps, end to end through the pipeline."""

import json

import pytest

from beam_jobs.config import JobConfig
from beam_jobs.pipeline import run_job
from tests.fixtures import make_folder, read_tfrecords
from transforms.registry import PolicyError
from transforms.replay import replay


def _run(src, out, policy, copies=6):
    config = JobConfig(output=str(out), source=str(src), copies=copies, policy=policy, progress=False,
                       image_format="png")  # fmt: skip
    return run_job(config, [], out=open("/dev/null", "w"))


def test_banned_ops_never_touch_their_class(tmp_path):
    src = make_folder(tmp_path / "digits", classes=("six", "seven"), per_class=3)
    policy = {
        "version": 1,
        "ops": [{"op": "image_data_generator", "rotation_range": 10, "horizontal_flip": True, "vertical_flip": True},
                {"op": "randaugment", "num_ops": 3}],
        "classes": {"six": {"ban": ["flip", "rotate", "geometric"]}},
    }  # fmt: skip
    _run(src, tmp_path / "out", policy)
    flips = {"six": 0, "seven": 0}
    for r in read_tfrecords(tmp_path / "out"):
        steps = {s["op"]: s for s in json.loads(r["recipe"])}
        if r["label_name"] == "six":
            assert "image_data_generator" not in steps  # the whole geometric op is banned for six
            colour_only = {"Identity", "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
                           "AutoContrast", "Equalize"}  # fmt: skip
            assert {o["name"] for o in steps["randaugment"]["params"]["ops"]} <= colour_only
        else:
            p = steps["image_data_generator"]["params"]
            flips["seven"] += p["flip_horizontal"] + p["flip_vertical"]
    assert flips["seven"] > 0


def test_label_map_swaps_labels_of_flipped_copies_and_says_so(tmp_path):
    src = make_folder(tmp_path / "signs", classes=("left_arrow", "right_arrow", "stop"), per_class=3)
    policy = {
        "version": 1,
        "ops": [{"op": "hflip", "p": 0.5}],
        "label_map": {"hflip": {"left_arrow": "right_arrow", "right_arrow": "left_arrow"}},
    }
    _run(src, tmp_path / "out", policy)
    names = (tmp_path / "out" / "label.labels.txt").read_text().split()
    swapped = kept = 0
    for r in read_tfrecords(tmp_path / "out"):
        steps = json.loads(r["recipe"])
        flipped = steps[1]["params"]["flip"]
        source_class = r["source_key"].split("/")[0]
        assert names[int(r["label"])] == r["label_name"]
        if flipped and source_class != "stop":
            assert r["label_name"] != source_class and steps[2]["op"] == "label_map"
            assert steps[2]["params"] == {"from": source_class, "to": r["label_name"]}
            swapped += 1
        else:
            assert r["label_name"] == source_class and all(s["op"] != "label_map" for s in steps)
            kept += 1
        assert replay(r["recipe"], (src / r["source_key"]).read_bytes()) == r["image"]
    assert swapped and kept


def test_rules_naming_unknown_classes_are_refused_before_the_run(tmp_path):
    src = make_folder(tmp_path / "signs", classes=("a", "b"), per_class=1)
    policy = {"version": 1, "ops": [{"op": "hflip"}], "label_map": {"hflip": {"a": "zebra"}}}
    with pytest.raises(PolicyError, match="unknown class.*zebra"):
        _run(src, tmp_path / "out", policy)
    with pytest.raises(PolicyError, match="events: hflip"):
        _run(src, tmp_path / "out", {"version": 1, "ops": [{"op": "hflip"}], "label_map": {"twirl": {}}})


def test_a_source_whose_every_copy_changes_class_is_still_counted_under_its_own(tmp_path):
    src = make_folder(tmp_path / "signs", classes=("left_arrow", "right_arrow"), per_class=3)
    policy = {"version": 1, "ops": [{"op": "hflip", "p": 1.0}],
              "label_map": {"hflip": {"left_arrow": "right_arrow", "right_arrow": "left_arrow"}}}  # fmt: skip
    manifest = _run(src, tmp_path / "out", policy, copies=2)
    per_class = manifest["counts"]["per_class"]
    for name in ("left_arrow", "right_arrow"):
        assert per_class[name]["images_in"] == per_class[name]["images_ok"] == 3  # sources, by their own class
        assert per_class[name]["records_out"] == 6  # every copy of the other class, relabelled
