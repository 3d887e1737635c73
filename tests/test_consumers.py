"""The written dataset in the tools people train with: splits, Keras, TFDS, Hugging Face datasets, DuckDB."""

import json

import numpy as np
import pytest

from tests.fixtures import make_folder, read_tfrecords
from tests.test_pipeline_e2e import run

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splits")
    src = make_folder(tmp / "animals", per_class=10)
    out = tmp / "out"
    manifest = run(out, source=str(src), copies=3, name="animals", cache_dir=str(tmp / "cache"),
                   splits=(("train", 0.7), ("validation", 0.3)))  # fmt: skip
    return src, out, manifest


def test_splits_are_leak_free_and_only_train_is_augmented(split_dataset):
    _, out, manifest = split_dataset
    per_split = manifest["counts"]["per_split"]
    assert per_split["train"]["images_ok"] + per_split["validation"]["images_ok"] == 30
    assert 10 < per_split["train"]["images_ok"] < 30
    keys = {}
    for shard_split in ("train", "validation"):
        for path in sorted(out.glob(f"animals-{shard_split}.tfrecord-*")):
            ds = tf.data.TFRecordDataset(str(path))
            for raw in ds.as_numpy_iterator():
                ex = tf.train.Example.FromString(raw)
                key = ex.features.feature["source_key"].bytes_list.value[0].decode()
                copy = ex.features.feature["copy_index"].int64_list.value[0]
                keys.setdefault(key, set()).add((shard_split, copy))
    for copies in keys.values():
        assert len({s for s, _ in copies}) == 1  # every copy of a source is in one split
        split = next(iter(copies))[0]
        assert {c for _, c in copies} == ({1, 2, 3} if split == "train" else {0})  # evaluation data stays real
    info = json.loads((out / "dataset_info.json").read_text())
    assert sorted(s["name"] for s in info["splits"]) == ["train", "validation"]


def test_tfds_reads_every_split(split_dataset):
    tfds = pytest.importorskip("tensorflow_datasets")
    _, out, manifest = split_dataset
    builder = tfds.builder_from_directory(str(out))
    assert set(builder.info.splits) == {"train", "validation"}
    n_val = sum(1 for _ in builder.as_dataset(split="validation"))
    assert n_val == manifest["counts"]["per_split"]["validation"]["records_out"]


def test_a_keras_model_trains_a_step_on_the_tfrecord_output(split_dataset):
    _, out, _ = split_dataset
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(x):
        r = tf.io.parse_single_example(x, spec)
        image = tf.image.resize(tf.io.decode_jpeg(r["image"], channels=3), (32, 32)) / 255.0
        return image, r["label"]

    files = sorted(str(p) for p in out.glob("animals-train.tfrecord-*"))
    ds = tf.data.TFRecordDataset(files).map(parse).batch(8)
    model = tf.keras.Sequential([tf.keras.Input((32, 32, 3)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(3)])
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_hugging_face_datasets_decodes_images_and_class_names(split_dataset):
    datasets = pytest.importorskip("datasets")
    _, out, _ = split_dataset
    files = sorted(str(p) for p in out.glob("animals-train.parquet-*"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.features["label"].names == ["cats", "dogs", "owls"]
    assert type(ds.features["image"]).__name__ == "Image"
    image = ds[0]["image"]
    assert image.size == (64, 48) and ds[0]["label_name"] == ["cats", "dogs", "owls"][ds[0]["label"]]


def test_duckdb_counts_rows_per_label(split_dataset):
    duckdb = pytest.importorskip("duckdb")
    _, out, manifest = split_dataset
    rows = duckdb.sql(
        f"SELECT label_name, count(*) AS n FROM read_parquet('{out}/animals-*.parquet-*') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    expected = {k: v["records_out"] for k, v in manifest["counts"]["per_class"].items()}
    assert dict(rows) == expected


def test_input_splits_of_a_tfds_directory_are_kept(split_dataset, tmp_path):
    _, out, manifest = split_dataset
    again = tmp_path / "again"
    m = run(again, source=str(out), copies=2, cache_dir=str(tmp_path / "cache"))
    # validation records (copy 0) stay unaugmented in validation; train records get 2 copies each
    assert (
        m["counts"]["per_split"]["validation"]["records_out"]
        == manifest["counts"]["per_split"]["validation"]["records_out"]
    )
    assert (
        m["counts"]["per_split"]["train"]["records_out"] == 2 * manifest["counts"]["per_split"]["train"]["records_out"]
    )
    assert {r["source_key"].split("#")[0].split(".")[0] for r in read_tfrecords(again)} >= {"animals-validation"}


def test_webdataset_and_image_folder_exports(image_folder, tmp_path):
    import tarfile

    from beam_jobs.cli import main

    out = tmp_path / "out"
    argv = ["run", "--source", str(image_folder), "--output", str(out), "--copies", "2", "--no-progress",
            "--formats", "tfrecord,webdataset,imagefolder", "--name", "animals"]  # fmt: skip
    assert main(argv) == 0
    files = sorted((out / "images" / "train").rglob("*.*"))
    assert len(files) == 24 and {f.parent.name for f in files} == {"cats", "dogs", "owls"}
    assert (out / "images" / "train" / "dogs" / "dogs_1_png_2.jpg").exists()  # <class>/<source>_<ext>_<copy>.<ext>
    shard = next(out.glob("animals-train-*.tar"))
    with tarfile.open(shard) as tar:
        names = tar.getnames()
        sample = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    assert len(names) == 24 * 3 and {n.rsplit(".", 1)[1] for n in names} == {"jpg", "cls", "json"}
    assert sample["label_name"] in ("cats", "dogs", "owls") and sample["recipe"][0]["op"] == "decode"
    assert main(["verify", str(out)]) == 0
    # and the export reads back as an input
    again = tmp_path / "again"
    assert main(["run", "--source", str(out / "images" / "train"), "--output", str(again), "--copies", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert len(read_tfrecords(again)) == 24


def test_export_names_are_unique_per_source(tmp_path):
    """Sources that differ only in their extension or in characters a file name cannot keep get their own files."""
    import tarfile

    from beam_jobs.cli import main
    from tests.fixtures import encode, photo_like

    src = make_folder(tmp_path / "src", classes=("cat", "dog"), per_class=2)
    rng = np.random.default_rng(3)
    for key in ("cat/cat_0.png", "dog/a b.jpg", "dog/a_b.jpg", "dog/a#b.jpg"):
        (src / key).write_bytes(encode(photo_like(rng, 20, 30), "PNG" if key.endswith(".png") else "JPEG"))
    out = tmp_path / "out"
    argv = ["run", "--source", str(src), "--output", str(out), "--copies", "2", "--no-progress",
            "--formats", "tfrecord,webdataset,imagefolder"]  # fmt: skip
    assert main(argv) == 0
    files = sorted((out / "images" / "train").rglob("*.*"))
    assert len(files) == 8 * 2 and {f.parent.name for f in files} == {"cat", "dog"}
    assert (out / "images" / "train" / "cat" / "cat_0_png_1.jpg").exists()  # a clean key keeps a readable name
    assert {len(list((out / "images" / "train" / c).iterdir())) for c in ("cat", "dog")} == {6, 10}
    with tarfile.open(next(out.glob("*-train-*.tar"))) as tar:
        keys = [n.split(".", 1)[0] for n in tar.getnames() if n.endswith(".cls")]
    assert len(keys) == len(set(keys)) == 16
    assert main(["verify", str(out)]) == 0


def test_export_folders_of_class_names_that_are_no_folder_name(tmp_path):
    """Labels such as ``T-shirt/top`` are kept in the records; their export folder is one safe path component."""
    from beam_jobs.cli import main
    from tests.fixtures import encode, photo_like

    rng = np.random.default_rng(4)
    (tmp_path / "imgs").mkdir()
    labels = ["T-shirt/top", "T-shirt_top", ".hidden", "a\\b"]
    rows = ["path,label"]
    for i, label in enumerate(labels):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(encode(photo_like(rng, 16, 20), "PNG"))
        rows.append(f"imgs/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = ["run", "--source", str(tmp_path / "labels.csv"), "--source-format", "list", "--output", str(out),
            "--copies", "1", "--no-progress", "--formats", "tfrecord,imagefolder"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(r["label_name"] for r in read_tfrecords(out)) == sorted(labels)  # labels unchanged
    folders = [p for p in (out / "images" / "train").iterdir()]
    assert len(folders) == 4 and all(p.is_dir() and not p.name.startswith(".") for p in folders)
    assert "T-shirt_top" in {p.name for p in folders}  # a name that is a folder name already is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "labels.csv", "out"]
    assert main(["verify", str(out)]) == 0


def test_a_class_name_that_reads_as_a_path_stays_inside_the_export(tmp_path):
    """A label such as ``../../x`` (or OpenImages' ``/m/01yrx``) names a class; its export folder is one safe name."""
    from beam_jobs.cli import main
    from tests.fixtures import encode, photo_like

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "0.png").write_bytes(encode(photo_like(np.random.default_rng(5), 16, 20), "PNG"))
    (tmp_path / "imgs" / "1.png").write_bytes((tmp_path / "imgs" / "0.png").read_bytes())
    (tmp_path / "labels.csv").write_text("imgs/0.png,cat\nimgs/1.png,../../escaped\n")
    out = tmp_path / "deep" / "out"
    argv = ["run", "--source", str(tmp_path / "labels.csv"), "--source-format", "list", "--output", str(out),
            "--copies", "1", "--no-progress", "--formats", "tfrecord,imagefolder"]  # fmt: skip
    assert main(argv) == 0
    # the label escaped nothing: every "escaped" path is a folder right under images/train
    escaped = [p for p in tmp_path.rglob("*escaped*")]
    assert escaped and all(p.parent == out / "images" / "train" for p in escaped if p.is_dir())
    assert len(list((out / "images" / "train").rglob("*.jpg"))) == 2


def test_hugging_face_loads_the_directory_without_data_files(split_dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, out, manifest = split_dataset
    # A private cache: HF keys a local directory's cache by its name and file patterns, so another run's "out"
    # in the shared ~/.cache would be returned instead.
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "validation"}
    assert ds["validation"].num_rows == manifest["counts"]["per_split"]["validation"]["records_out"]
