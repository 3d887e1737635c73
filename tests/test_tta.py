"""Test-time augmentation sets: evaluation images get a fixed set of views, grouped by source, replayable.

Every run splits a generated folder 60/40 by key hash, writes PNG (so pixels compare exactly) and reads the
shards back with tf.data and pyarrow.
"""

import io
import json
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_jobs.cli import main
from tests.fixtures import make_folder, read_parquet, read_tfrecords
from transforms.codec import decode_image
from transforms.replay import replay
from transforms.tta import five_crop_windows

SPLITS = ["--splits", "train=0.6,validation=0.4"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("tta") / "animals", per_class=5, size=(48, 64))


def _run(source, out, *flags, copies="2"):
    argv = ["run", "--source", str(source), "--output", str(out), "--copies", copies, "--image-format", "png",
            "--no-progress", *SPLITS, *flags]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "beam_expand.json").read_text())


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _views(rows, split="validation"):
    """source_key -> {view_index: row} for one split (every view is copy 0)."""
    groups = defaultdict(dict)
    for r in rows:
        if r["split"] == split:
            assert int(r["copy_index"]) == 0
            assert int(r["view_index"]) not in groups[r["source_key"]], "a view is written twice"
            groups[r["source_key"]][int(r["view_index"])] = r
    return groups


def _split_rows(out):
    """Every TFRecord record, read with tf.data, with the split its shard name gives."""
    import tensorflow as tf

    from schemas.tf_example import tf_feature_spec

    rows = []
    for split in ("train", "validation"):
        files = sorted(str(p) for p in out.glob(f"*-{split}.tfrecord-*"))
        ds = tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, tf_feature_spec()))
        rows += [{**{k: (v.decode() if isinstance(v, bytes) and k != "image" else v) for k, v in r.items()},
                  "split": split} for r in ds.as_numpy_iterator()]  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def plain(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "out"
    _run(source, out)
    return out


@pytest.fixture(scope="module")
def flip(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("flip") / "out"
    return out, _run(source, out, "--tta", "flip")


def test_flip_adds_one_mirrored_view_per_evaluation_image(source, flip, capsys):
    out, manifest = flip
    rows = _split_rows(out)
    groups = _views(rows)
    assert groups and all(sorted(g) == [0, 1] for g in groups.values())
    for key, g in groups.items():
        original = decode_image((source / key).read_bytes())[0]
        view0, view1 = _pixels(g[0]["image"]), _pixels(g[1]["image"])
        assert np.array_equal(view0, original)
        assert np.array_equal(view1, np.fliplr(view0))
        assert g[1]["label"] == g[0]["label"] and g[1]["label_name"] == key.split("/")[0]
        for view in g.values():  # every view replays bit for bit from its recipe and the source
            assert replay(view["recipe"], (source / key).read_bytes()) == view["image"]
    # Counts add up: train keeps K copies per image, evaluation images 1 + 1 views; verify agrees.
    per_split = manifest["counts"]["per_split"]
    assert per_split["validation"]["records_out"] == 2 * per_split["validation"]["images_ok"] == 2 * len(groups)
    assert per_split["train"]["records_out"] == 2 * per_split["train"]["images_ok"]
    assert manifest["counts"]["records_out"] == len(rows) == read_parquet(out).num_rows
    assert manifest["tta"]["view_names"] == ["identity", "hflip"]
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    key = sorted(groups)[0]
    assert main(["replay", str(out), "--source-key", key, "--copy-index", "0", "--view-index", "1"]) == 0
    assert "view 1: bit-exact" in capsys.readouterr().out


def test_train_split_and_view_zero_are_what_a_run_without_tta_writes(plain, flip):
    def by_record(rows):
        return {(r["split"], r["source_key"], int(r["copy_index"]), int(r["view_index"])): r for r in rows}

    without, with_tta = by_record(_split_rows(plain)), by_record(_split_rows(flip[0]))
    assert {k for k in with_tta if k[3] == 0} == set(without)
    for k, r in without.items():
        assert with_tta[k]["image"] == r["image"] and with_tta[k]["recipe"] == r["recipe"]
    assert all(k[0] == "validation" for k in with_tta if k[3] > 0)
    assert all(int(r["view_index"]) == 0 for r in without.values())


def test_ten_crop_views_are_torchvision_crops_of_the_image_and_of_its_mirror(source, tmp_path):
    out = tmp_path / "out"
    # 48x64 images, 33x47 crops: the centre offsets (7.5, 8.5) round half to even, as torchvision's round().
    manifest = _run(source, out, "--tta", "ten_crop", "--tta-crop-size", "33,47", copies="1")
    windows = [(0, 0), (0, 17), (15, 0), (15, 17), (8, 8)]
    assert five_crop_windows(48, 64, 33, 47) == windows
    table = pq.read_table(sorted(str(p) for p in out.glob("*-validation.parquet-*"))).to_pylist()
    groups = _views([{**r, "image": r["image"]["bytes"], "split": "validation"} for r in table])
    assert groups and all(sorted(g) == list(range(11)) for g in groups.values())
    for key, g in groups.items():
        original = decode_image((source / key).read_bytes())[0]
        mirrored = np.fliplr(original)
        for i, (top, left) in enumerate(windows):
            assert np.array_equal(_pixels(g[1 + i]["image"]), original[top : top + 33, left : left + 47])
            assert np.array_equal(_pixels(g[6 + i]["image"]), mirrored[top : top + 33, left : left + 47])
            assert (g[1 + i]["height"], g[1 + i]["width"]) == (33, 47)
        assert replay(g[7]["recipe"], (source / key).read_bytes()) == g[7]["image"]
    assert manifest["counts"]["per_split"]["validation"]["records_out"] == 11 * len(groups)
    assert main(["verify", str(out)]) == 0


def test_five_crop_default_size_is_seven_eighths_of_each_side(source, tmp_path):
    out = tmp_path / "out"
    _run(source, out, "--tta", "five_crop", "--image-size", "32,40", copies="1")
    groups = _views(_split_rows(out))
    sizes = {(int(r["height"]), int(r["width"])) for g in groups.values() for v, r in g.items() if v}
    assert sizes == {(28, 35)}  # round(0.875 * 32), round(0.875 * 40)
    assert all(sorted(g) == list(range(6)) for g in groups.values())


def test_policy_views_are_seeded_per_view_and_deterministic(source, plain, tmp_path):
    spec = "hflip|affine(degrees=20, fill_mode='reflect'):3"
    first = _run(source, tmp_path / "a", "--tta", spec)
    _run(source, tmp_path / "b", "--tta", spec)
    rows_a, rows_b = _split_rows(tmp_path / "a"), _split_rows(tmp_path / "b")
    key = lambda r: (r["split"], r["source_key"], int(r["copy_index"]), int(r["view_index"]))  # noqa: E731
    assert sorted((key(r), r["image"]) for r in rows_a) == sorted((key(r), r["image"]) for r in rows_b)
    groups = _views(rows_a)
    assert all(sorted(g) == [0, 1, 2, 3] for g in groups.values())
    for k, g in groups.items():
        views = [g[v]["image"] for v in (1, 2, 3)]
        assert len(set(views)) == 3, "views of one image must differ (each view has its own seed)"
        for v in (1, 2, 3):
            steps = json.loads(g[v]["recipe"])
            assert [s["op"] for s in steps] == ["decode", "hflip", "affine", "encode"]
            assert replay(g[v]["recipe"], (source / k).read_bytes()) == g[v]["image"]
    # The training copies are untouched by --tta.
    train_plain = {key(r): r["image"] for r in _split_rows(plain) if r["split"] == "train"}
    assert {key(r): r["image"] for r in rows_a if r["split"] == "train"} == train_plain
    assert first["tta"]["views"] == 3 and main(["verify", str(tmp_path / "a")]) == 0


def test_tta_exports_name_every_view(source, tmp_path):
    import tarfile

    out = tmp_path / "out"
    _run(source, out, "--tta", "flip", "--formats", "tfrecord,imagefolder,webdataset", copies="1")
    names = {p.name for p in (out / "images" / "validation").rglob("*.png")}
    originals = {n for n in names if not n.endswith("_view1.png")}
    assert originals and names == originals | {n.replace(".png", "_view1.png") for n in originals}
    with tarfile.open(next(out.glob("*-validation-*.tar"))) as tar:
        metas = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    assert sorted(m["view_index"] for m in metas) == sorted([0, 1] * len(originals))


def test_image_smaller_than_the_crop_is_a_dead_letter_and_counts_add_up(tmp_path):
    from tests.fixtures import encode, photo_like
    from transforms.seeding import assign_split

    root = make_folder(tmp_path / "mixed", classes=("a", "b"), per_class=4, size=(50, 70))
    rng = np.random.default_rng(5)
    tiny = [f"{c}/tiny_{i}.png" for c in ("a", "b") for i in range(4)]
    for key in tiny:
        (root / key).write_bytes(encode(photo_like(rng, 30, 30), "PNG"))
    manifest = _run(root, tmp_path / "out", "--tta", "five_crop", "--tta-crop-size", "40,60", copies="1")
    dead = [json.loads(line) for line in (tmp_path / "out" / "dead_letter.jsonl").read_text().splitlines()]
    in_validation = {k for k in tiny if assign_split(k, [("train", 0.6), ("validation", 0.4)]) == "validation"}
    assert in_validation and {d["source_key"] for d in dead} == in_validation  # tiny training images are fine
    assert {(d["stage"], d["reason"]) for d in dead} == {("tta", "smaller_than_tta_crop")}
    c = manifest["counts"]
    assert c["images_in"] == c["images_ok"] + c["dead_letters"] == 16
    assert main(["verify", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tta", "flip"], "--splits"),
        ([*SPLITS, "--tta", "sideways"], "flip, five_crop, ten_crop or POLICY:M"),
        ([*SPLITS, "--tta", "light"], "POLICY:M"),
        ([*SPLITS, "--tta", "light:0"], "M >= 1"),
        ([*SPLITS, "--tta", "flip", "--tta-crop-size", "20,20"], "five_crop and ten_crop only"),
        ([*SPLITS, "--tta-crop-size", "20,20"], "goes with --tta"),
        ([*SPLITS, "--tta", "ten_crop", "--tta-crop-size", "1.5"], "fraction in (0, 1]"),
        ([*SPLITS, "--tta", "five_crop", "--tta-crop-size", "40,40", "--image-size", "32,32"], "larger than"),
        ([*SPLITS, "--tta", "hflip:2", "--copies", "1"], None),  # a valid spec: runs
        (["--splits", "train=1.0", "--tta", "flip"], "every source of this run is in the augmented split"),
    ],
)
def test_tta_flag_errors_are_one_clear_message(source, tmp_path, capsys, flags, message):
    code = main(["run", "--source", str(source), "--output", str(tmp_path / "o"), "--no-progress", *flags])
    if message is None:
        assert code == 0
        return
    assert code == 2
    assert message in capsys.readouterr().err


def test_tta_policy_with_a_label_map_is_refused(source, tmp_path, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"version": 1, "ops": [{"op": "hflip"}], "label_map": {"hflip": {"cats": "dogs"}}}))
    argv = ["run", "--source", str(source), "--output", str(tmp_path / "o"), *SPLITS, "--tta", f"{policy}:2"]
    assert main(argv) == 2
    assert "label_map" in capsys.readouterr().err
    argv = ["run", "--source", str(source), "--output", str(tmp_path / "o"), *SPLITS, "--policy", str(policy),
            "--tta", "flip"]  # fmt: skip
    assert main(argv) == 2
    assert "flipped view would need another label" in capsys.readouterr().err


def test_plain_runs_write_view_index_zero_in_both_formats(plain):
    assert {int(r["view_index"]) for r in read_tfrecords(plain)} == {0}
    assert set(read_parquet(plain).column("view_index").to_pylist()) == {0}
