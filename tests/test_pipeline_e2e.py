"""End to end: run the job on generated folders, archives and real photos; read the shards back and count."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from beam_jobs.config import JobConfig
from beam_jobs.pipeline import run_job
from tests.fixtures import make_tgz, read_parquet, read_tfrecords
from transforms.codec import decode_image
from transforms.policies import PRESETS

tf = pytest.importorskip("tensorflow")

DEFAULT = PRESETS["imagedatagenerator"]


def run(out: Path, **kwargs) -> dict:
    pipeline_args = kwargs.pop("pipeline_args", [])
    kwargs.setdefault("policy", DEFAULT)
    kwargs.setdefault("progress", False)
    config = JobConfig(output=str(out), **kwargs)
    return run_job(config, pipeline_args, out=open("/dev/null", "w"))


def fingerprint(out: Path) -> set:
    return {
        (r["source_key"], int(r["copy_index"]), int(r["label"]), hashlib.sha256(r["image"]).hexdigest())
        for r in read_tfrecords(out)
    }


def test_folder_run_writes_every_copy_with_its_label(image_folder, tmp_path, cache_dir):
    out = tmp_path / "out"
    manifest = run(out, source=str(image_folder), copies=3, include_original=True, seed=1, cache_dir=str(cache_dir))
    n_images, k = 12, 3
    rows = read_tfrecords(out)
    assert len(rows) == n_images * (k + 1)
    classes = ["cats", "dogs", "owls"]
    by_key: dict[str, set] = {}
    for r in rows:
        folder = r["source_key"].split("/")[0]
        assert r["label_name"] == folder and classes[int(r["label"])] == folder
        by_key.setdefault(r["source_key"], set()).add(int(r["copy_index"]))
        recipe = json.loads(r["recipe"])
        assert recipe[0]["op"] == "decode" and recipe[-1]["op"] == "encode"
        assert (len(recipe) == 2) == (int(r["copy_index"]) == 0)
        img = tf.io.decode_jpeg(r["image"]).numpy()
        assert img.shape == (int(r["height"]), int(r["width"]), 3) == (48, 64, 3)
    assert all(v == {0, 1, 2, 3} for v in by_key.values()) and len(by_key) == n_images

    table = read_parquet(out)
    assert table.num_rows == len(rows)
    assert sorted(zip(table["source_key"].to_pylist(), table["copy_index"].to_pylist(), strict=True)) == sorted(
        (r["source_key"], int(r["copy_index"])) for r in rows
    )
    assert table["image"].to_pylist()[0]["bytes"][:2] == b"\xff\xd8"

    counts = manifest["counts"]
    assert counts["images_in"] == counts["images_ok"] == n_images and counts["records_out"] == len(rows)
    assert counts["per_class"]["dogs"] == {"images_in": 4, "images_ok": 4, "dead_letters": 0, "records_out": 16}
    info = json.loads((out / "dataset_info.json").read_text())
    assert sum(int(n) for n in info["splits"][0]["shardLengths"]) == len(rows)
    assert (out / "label.labels.txt").read_text().split() == classes
    assert (out / "dead_letter.jsonl").read_text() == ""
    assert (out / "_SUCCESS").exists() and not list(tmp_path.glob("out.staging-*"))


def test_tfds_reads_the_output_directory(image_folder, tmp_path, cache_dir):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    run(out, source=str(image_folder), copies=2, cache_dir=str(cache_dir), name="animals")
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].names == ["cats", "dogs", "owls"]
    examples = list(builder.as_dataset(split="train").as_numpy_iterator())
    assert len(examples) == 24
    assert examples[0]["image"].dtype == np.uint8 and examples[0]["image"].shape == (48, 64, 3)


def test_copies_replay_in_keras_from_their_recipe(image_folder, tmp_path, cache_dir):
    keras_idg = tf.keras.preprocessing.image.ImageDataGenerator
    policy = {
        "version": 1,
        "ops": [{"op": "image_data_generator", "rotation_range": 35, "width_shift_range": 0.2,
                 "height_shift_range": 5, "shear_range": 15, "zoom_range": [0.8, 1.3], "horizontal_flip": True,
                 "fill_mode": "reflect", "brightness_range": [0.7, 1.3], "channel_shift_range": 25}],
    }  # fmt: skip
    out = tmp_path / "out"
    run(out, source=str(image_folder), copies=2, policy=policy, image_format="png", cache_dir=str(cache_dir))
    for r in read_tfrecords(out):
        steps = json.loads(r["recipe"])
        source, _ = decode_image((image_folder / r["source_key"]).read_bytes())
        step = steps[1]
        assert step["op"] == "image_data_generator"
        cfg = step["config"]
        gen = keras_idg(fill_mode=cfg["fill_mode"], cval=cfg["cval"], interpolation_order=cfg["interpolation_order"])
        expected = gen.apply_transform(source.astype(np.float32), step["params"])
        copy = tf.io.decode_png(r["image"]).numpy().astype(np.float64)
        diff = np.abs(copy - expected)
        assert diff.mean() < 0.5 and np.mean(diff > 3) < 0.002, r["source_key"]


def test_bad_inputs_become_dead_letters_and_counts_add_up(image_folder, tmp_path, cache_dir):
    (image_folder / "cats" / "zero.jpg").write_bytes(b"")
    (image_folder / "dogs" / "random.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (image_folder / "owls" / "notes.txt").write_text("not an image")
    (image_folder / "README.md").write_text("root files are ignored")
    out = tmp_path / "out"
    manifest = run(out, source=str(image_folder), copies=2, cache_dir=str(cache_dir))
    dead = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert {(d["source_key"], d["reason"]) for d in dead} == {
        ("cats/zero.jpg", "empty_file"),
        ("dogs/random.jpg", "not_an_image"),
    }
    assert all(d["stage"] == "decode" and d["message"] for d in dead)
    c = manifest["counts"]
    assert c["images_in"] == 14 and c["images_ok"] == 12 and c["dead_letters"] == 2
    assert c["images_in"] == c["images_ok"] + c["dead_letters"]
    assert c["records_out"] == 2 * c["images_ok"] == len(read_tfrecords(out))
    assert c["skipped_non_images"] == 1 and c["ignored_files"] == 1


def test_same_records_across_reruns_listing_order_and_worker_counts(image_folder, tmp_path, cache_dir):
    a = tmp_path / "a"
    run(a, source=str(image_folder), copies=2, seed=7, cache_dir=str(cache_dir))
    b = tmp_path / "b"
    run(
        b,
        source=str(image_folder),
        copies=2,
        seed=7,
        cache_dir=str(cache_dir),
        pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    )
    assert fingerprint(a) == fingerprint(b)
    c = tmp_path / "c"
    run(c, source=str(image_folder), copies=2, seed=8, cache_dir=str(cache_dir))
    assert {x[:3] for x in fingerprint(c)} == {x[:3] for x in fingerprint(a)} and fingerprint(c) != fingerprint(a)


def test_archive_and_folder_give_the_same_records_and_the_license(image_folder, tmp_path, cache_dir):
    tgz = make_tgz(image_folder, tmp_path / "animals.tgz", extra={"LICENSE.txt": b"CC BY 2.0 credits"})
    folder_out, tgz_out = tmp_path / "f", tmp_path / "t"
    run(folder_out, source=str(image_folder), copies=2, cache_dir=str(cache_dir))
    manifest = run(tgz_out, source=str(tgz), copies=2, cache_dir=str(cache_dir))
    assert fingerprint(tgz_out) == fingerprint(folder_out)
    assert (tgz_out / "LICENSE.txt").read_bytes() == b"CC BY 2.0 credits"
    assert manifest["name"] == "animals" and (tgz_out / "animals-train.tfrecord-00000-of-00001").exists()


def test_limit_classes_resize_and_shard_rollover(image_folder, tmp_path, cache_dir):
    out = tmp_path / "out"
    manifest = run(
        out, source=str(image_folder), copies=3, limit=5, classes=("dogs", "owls"), image_size=(20, 30),
        max_shard_mb=1, cache_dir=str(cache_dir),
    )  # fmt: skip
    rows = read_tfrecords(out)
    assert len(rows) == 15 and {r["label_name"] for r in rows} <= {"dogs", "owls"}
    assert {(int(r["height"]), int(r["width"])) for r in rows} == {(20, 30)}
    assert manifest["class_names"] == ["dogs", "owls"]
    assert all(json.loads(r["recipe"])[1]["op"] == "resize" for r in rows)


def test_records_per_shard(image_folder, tmp_path, cache_dir):
    out = tmp_path / "out"
    manifest = run(out, source=str(image_folder), copies=2, records_per_shard=6, cache_dir=str(cache_dir))
    lengths = [s["records"] for s in manifest["shards"]["tfrecord"]]
    assert sum(lengths) == 24 and len(lengths) == 4 and max(lengths) == 6  # 3 sources x 2 copies per shard
    info = json.loads((out / "dataset_info.json").read_text())
    assert [int(n) for n in info["splits"][0]["shardLengths"]] == lengths


def test_flowers_mini_real_photos(flowers_mini, tmp_path, cache_dir):
    out = tmp_path / "out"
    manifest = run(out, source=str(flowers_mini), copies=2, include_original=True, cache_dir=str(cache_dir))
    rows = read_tfrecords(out)
    assert manifest["class_names"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert len(rows) == 200 * 3 == read_parquet(out).num_rows
    assert all(r["source_key"].split("/")[0] == r["label_name"] for r in rows)
    assert (out / "LICENSE.txt").exists()
    assert manifest["counts"]["dead_letters"] == 0


def test_every_copy_replays_bit_for_bit_from_its_recipe(image_folder, tmp_path, cache_dir):
    from transforms.replay import ReplayError, replay

    out = tmp_path / "out"
    run(out, source=str(image_folder), copies=2, include_original=True, image_size=(40, 40), cache_dir=str(cache_dir))
    rows = read_tfrecords(out)
    for r in rows:
        assert replay(r["recipe"], (image_folder / r["source_key"]).read_bytes()) == r["image"]
    steps = json.loads(rows[-1]["recipe"])
    steps[-2]["version"] = 99
    with pytest.raises(ReplayError, match="version 99 is not supported"):
        replay(steps, (image_folder / rows[-1]["source_key"]).read_bytes())


def test_the_job_never_imports_tensorflow(image_folder, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from beam_jobs.cli import main; "
        f"rc = main(['run', '--source', {str(image_folder)!r}, '--output', {str(tmp_path / 'o')!r}, "
        "'--copies', '1', '--no-progress']); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
