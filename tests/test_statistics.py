"""Dataset statistics: the ZCA matrix equals Keras's and numpy's; class histograms before and after, per split."""

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from beam_jobs.cli import main
from beam_jobs.statistics import ZcaSumsFn, zca_arrays
from tests.fixtures import encode, make_folder
from transforms.codec import decode_image
from transforms.geometric import Resize

SPLITS = ["--splits", "train=0.7,validation=0.3"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """150 noisy 6x5 PNGs in 3 classes: the 4x4x3 = 48 values of ~105 training images are well conditioned."""
    root = tmp_path_factory.mktemp("zca") / "noisy"
    rng = np.random.default_rng(7)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(50):
            img = np.clip(rng.normal(120 + 20 * "abc".index(c), 50, (6, 5, 3)), 0, 255).astype(np.uint8)
            (root / c / f"{i}.png").write_bytes(encode(img, "PNG"))
    return root


@pytest.fixture(scope="module")
def zca_run(noisy, tmp_path_factory):
    out = tmp_path_factory.mktemp("zca-out") / "out"
    argv = ["run", "--source", str(noisy), "--output", str(out), "--copies", "1", "--image-size", "4,4", "--zca",
            "--no-progress", *SPLITS]  # fmt: skip
    assert main(argv) == 0
    return out


def _train_images(noisy, out) -> np.ndarray:
    """The decoded, resized training sources, as the job saw them (keys from the train shards)."""
    keys = sorted(set(pq.read_table(sorted(str(p) for p in out.glob("*-train.parquet-*"))).column("source_key")
                      .to_pylist()))  # fmt: skip
    resize = Resize(4, 4)
    return np.stack([resize.apply(decode_image((noisy / k).read_bytes())[0], {}) for k in keys])


def _close(ours, theirs, rtol=1e-5):
    return np.max(np.abs(ours - theirs)) <= rtol * np.max(np.abs(theirs))


def test_zca_matrix_equals_keras_image_data_generator_fit(noisy, zca_run):
    tf = pytest.importorskip("tensorflow")
    x = _train_images(noisy, zca_run).astype(np.float64)
    z = np.load(zca_run / "zca.npz")
    assert int(z["images"]) == len(x) and list(z["shape"]) == [4, 4, 3] and float(z["epsilon"]) == 1e-6
    keras = tf.keras.preprocessing.image.ImageDataGenerator
    gen = keras(featurewise_center=True, zca_whitening=True)  # Keras's default float32
    gen.fit(x)
    assert _close(z["mean"], gen.mean, 1e-6) and z["mean"].shape == gen.mean.shape
    assert _close(z["zca_whitening_matrix"], gen.zca_whitening_matrix, 1e-5)
    exact = keras(featurewise_center=True, zca_whitening=True, dtype="float64")
    exact.fit(x)
    assert _close(z["mean"], exact.mean, 1e-12) and _close(z["zca_whitening_matrix"], exact.zca_whitening_matrix, 1e-10)
    # Whitened with the file's mean and matrix, the training data has (almost) identity covariance.
    flat = (x - z["mean"]).reshape(len(x), -1) @ z["zca_whitening_matrix"]
    assert np.allclose(flat.T @ flat / len(x), np.eye(48), atol=1e-3)
    # The note beside the channel statistics.
    stats = json.loads((zca_run / "statistics.json").read_text())
    assert stats["train"]["zca"]["images"] == len(x) and "zca" not in stats["validation"]
    assert np.allclose(stats["train"]["mean"], z["mean"].ravel())


def test_zca_principal_components_equal_numpy_keras2_formula(noisy, zca_run):
    x = _train_images(noisy, zca_run).astype(np.float64)
    z = np.load(zca_run / "zca.npz")
    flat = (x - x.mean(axis=(0, 1, 2))).reshape(len(x), -1)
    sigma = flat.T @ flat / len(flat)
    u, s, _ = np.linalg.svd(sigma)
    assert _close(z["principal_components"], (u * (1 / np.sqrt(s + 1e-6))) @ u.T)


def test_fewer_images_than_values_match_keras3_svd():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (20, 4, 4, 3)).astype(np.uint8)  # n = 20 < d = 48: Keras 3 keeps 20 components
    fn = ZcaSumsFn(48)
    acc = fn.create_accumulator()
    for img in x:
        acc = fn.add_input(acc, img.tobytes())
    ours = zca_arrays(fn.extract_output(acc), (4, 4, 3), 1e-6)["zca_whitening_matrix"]
    flat = (x - x.astype(np.float64).mean(axis=(0, 1, 2))).reshape(20, -1)
    u, s, _ = np.linalg.svd(flat.T, full_matrices=False)
    assert _close(ours, (u * (np.sqrt(20) / (s + 1e-6))) @ u.T)


def test_zca_sums_are_exact_whatever_the_bundling():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, 48, dtype=np.uint8).tobytes() for _ in range(300)]
    fn = ZcaSumsFn(48)

    def combine(parts):
        accs = []
        for part in parts:
            acc = fn.create_accumulator()
            for img in part:
                acc = fn.add_input(acc, img)
            accs.append(fn.compact(acc) if len(accs) % 2 else acc)
        return fn.extract_output(fn.merge_accumulators(accs))

    one = combine([images])
    three = combine([images[200:], images[:7], images[7:200]])
    assert one["n"] == three["n"] == 300
    assert np.array_equal(one["gram"], three["gram"]) and np.array_equal(one["sum"], three["sum"])
    x = np.frombuffer(b"".join(images), np.uint8).reshape(300, 48).astype(np.float64)
    assert np.array_equal(one["gram"], x.T @ x)


def test_zca_file_is_published_and_verified_run_is_deterministic(noisy, zca_run, tmp_path):
    again = tmp_path / "again"
    argv = ["run", "--source", str(noisy), "--output", str(again), "--copies", "1", "--image-size", "4,4", "--zca",
            "--no-progress", *SPLITS]  # fmt: skip
    assert main(argv) == 0
    assert (again / "zca.npz").read_bytes() == (zca_run / "zca.npz").read_bytes()
    assert main(["verify", str(again)]) == 0
    assert main([*argv, "--overwrite"]) == 0  # an earlier run's zca.npz is one of beam-expand's own files
    z = np.load(io.BytesIO((again / "zca.npz").read_bytes()))
    assert set(z.files) == {"mean", "zca_whitening_matrix", "principal_components", "epsilon", "shape", "images"}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--zca"], "--image-size"),
        (["--zca", "--image-size", "64,64"], "3,072"),
        (["--zca", "--image-size", "8,8", "--zca-epsilon", "0"], "--zca-epsilon"),
    ],
)
def test_zca_flag_errors(image_folder, tmp_path, capsys, flags, message):
    assert main(["run", "--source", str(image_folder), "--output", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_class_histograms_before_and_after_per_split(tmp_path):
    src = tmp_path / "imbalanced"
    for name, n in (("common", 12), ("rare", 4)):
        make_folder(src, classes=(name,), per_class=n, size=(16, 20), seed=n)
    out = tmp_path / "out"
    argv = ["run", "--source", str(src), "--output", str(out), "--copies", "3", "--include-original", "--no-progress",
            *SPLITS, "--tta", "flip"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads((out / "statistics.json").read_text())
    for split in ("train", "validation"):
        rows = pq.read_table(sorted(str(p) for p in out.glob(f"*-{split}.parquet-*"))).to_pylist()
        sources = {n: len({r["source_key"] for r in rows if r["label_name"] == n}) for n in ("common", "rare")}
        records = {n: sum(r["label_name"] == n for r in rows) for n in ("common", "rare")}
        assert stats[split]["classes"] == {"sources": sources, "records": records}
        assert stats[split]["images"] == sum(sources.values())
        per_source = 4 if split == "train" else 2  # K + original; the image + its flip
        assert records == {n: per_source * k for n, k in sources.items()}
    manifest = json.loads((out / "beam_expand.json").read_text())
    assert {n: v["images_in"] for n, v in manifest["counts"]["per_class"].items()} == {"common": 12, "rare": 4}
    assert manifest["statistics"] == stats
