"""Class balancing: an imbalanced folder comes out balanced, deterministically, and the plan is recorded."""

import json

from beam_jobs.balance import plan_copies
from beam_jobs.cli import main
from schemas.source import SourceImage
from tests.fixtures import make_folder, read_tfrecords


def _imbalanced(tmp_path):
    root = tmp_path / "imbalanced"
    for name, n in (("common", 40), ("rare", 10), ("rarest", 5)):
        make_folder(root, classes=(name,), per_class=n, size=(16, 20), seed=n)
    return root


def test_balance_with_originals_brings_every_class_to_the_largest(capsys, tmp_path):
    src = _imbalanced(tmp_path)
    out = tmp_path / "out"
    argv = ["run", "--source", str(src), "--output", str(out), "--copies", "1", "--include-original", "--balance",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "copy plan" in text and "rarest" in text
    manifest = json.loads((out / "beam_expand.json").read_text())
    per_class = {k: v["records_out"] for k, v in manifest["counts"]["per_class"].items()}
    assert per_class == {"common": 80, "rare": 80, "rarest": 80}
    rows = read_tfrecords(out)
    assert sum(1 for r in rows if r["label_name"] == "rarest" and int(r["copy_index"]) == 0) == 5
    assert manifest["copy_plan"]["rare"] == {"images": 10, "records": 80, "copies_per_image": [7, 7]}
    assert main(["verify", str(out)]) == 0


def test_balance_with_splits_balances_the_training_split_only(tmp_path):
    src = _imbalanced(tmp_path)
    out = tmp_path / "out"
    argv = ["run", "--source", str(src), "--output", str(out), "--copies", "1", "--include-original", "--balance",
            "--splits", "train=0.7,validation=0.3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((out / "beam_expand.json").read_text())
    rows = read_tfrecords(out)
    train = [r for r in rows if r["source_key"] in manifest["copies_per_source"]]
    held_out = [r for r in rows if r["source_key"] not in manifest["copies_per_source"]]
    per_class = {n: sum(1 for r in train if r["label_name"] == n) for n in ("common", "rare", "rarest")}
    largest = max(per_class.values())
    assert all(largest - n <= 1 for n in per_class.values()), per_class  # balanced (to the record)
    assert held_out and all(int(r["copy_index"]) == 0 for r in held_out)  # evaluation images: originals only
    assert len(held_out) == manifest["counts"]["per_split"]["validation"]["images_ok"]
    assert main(["verify", str(out)]) == 0


def test_uneven_plans_are_deterministic_and_never_drop_inputs():
    images = [SourceImage(f"a/{i}.png", 0, "a") for i in range(3)] + [
        SourceImage(f"b/{i}.png", 1, "b") for i in range(7)
    ]
    per_source, summary = plan_copies(images, ["a", "b"], copies=2, include_original=False, target_per_class=10)
    assert sorted(per_source[f"a/{i}.png"] for i in range(3)) == [3, 3, 4]  # 10 copies over 3 images
    assert all(per_source[f"b/{i}.png"] >= 1 for i in range(7)) and summary["b"]["records"] == 10
    assert plan_copies(list(reversed(images)), ["a", "b"], 2, False, target_per_class=10)[0] == per_source
    small, _ = plan_copies(images, ["a", "b"], copies=2, include_original=False, target_per_class=2)
    assert min(small.values()) == 1  # a class over its target still keeps one record per image


def test_copies_per_class(tmp_path):
    src = _imbalanced(tmp_path)
    out = tmp_path / "out"
    argv = ["run", "--source", str(src), "--output", str(out), "--copies", "1", "--copies-per-class",
            "rarest=4,rare=2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    per_class = {k: v["records_out"] for k, v in json.loads((out / "beam_expand.json").read_text())["counts"][
        "per_class"].items()}  # fmt: skip
    assert per_class == {"common": 40, "rare": 20, "rarest": 20}


def test_dataset_statistics_match_numpy_over_the_same_images(image_folder, tmp_path):
    import numpy as np

    from transforms.codec import decode_image

    out = tmp_path / "out"
    argv = ["run", "--source", str(image_folder), "--output", str(out), "--copies", "1", "--no-progress",
            "--splits", "train=0.6,validation=0.4"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads((out / "statistics.json").read_text())
    for split in ("train", "validation"):
        keys = sorted(_keys_in_split(out, split))
        pixels = np.concatenate([decode_image((image_folder / k).read_bytes())[0].reshape(-1, 3) for k in keys])
        assert stats[split]["images"] == len(keys)
        assert np.allclose(stats[split]["mean"], pixels.mean(axis=0), atol=1e-9)
        assert np.allclose(stats[split]["std"], pixels.std(axis=0), atol=1e-6)


def _keys_in_split(out, split):
    import tensorflow as tf

    keys = set()
    for path in sorted(out.glob(f"*-{split}.tfrecord-*")):
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            keys.add(tf.train.Example.FromString(raw).features.feature["source_key"].bytes_list.value[0].decode())
    return keys
