"""MixUp and CutMix across the whole dataset: soft labels in both formats, partners, pixels, determinism, counts."""

import json
import re
import shutil
from collections import Counter

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs.cli import main
from beam_jobs.errors import UserError
from beam_jobs.mixing import plan_partners
from schemas.record import field_names
from schemas.source import SourceImage
from tests.fixtures import make_folder, photo_like, read_parquet, read_tfrecords
from tests.test_pipeline_e2e import run
from transforms.codec import decode_image
from transforms.mix import MixSpec, cutmix_box, draw, is_mixed, mix_step_pixels, mixup
from transforms.policies import Policy
from transforms.replay import ReplayError, replay

tf = pytest.importorskip("tensorflow")

CLASSES = ["cats", "dogs", "owls"]


def make_source(root):
    """Three classes of six images; owls are smaller (40x56), so some partners must be resized."""
    make_folder(root, classes=("cats", "dogs"), per_class=6, size=(48, 64), seed=0)
    return make_folder(root, classes=("owls",), per_class=6, size=(40, 56), seed=1)


@pytest.fixture(scope="module")
def mixup_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixup")
    src = make_source(tmp / "animals")
    out = tmp / "out"
    manifest = run(out, source=str(src), copies=3, include_original=True, seed=3, image_format="png", mixup=0.4,
                   splits=(("train", 0.75), ("validation", 0.25)), cache_dir=str(tmp / "cache"))  # fmt: skip
    return src, out, manifest


@pytest.fixture(scope="module")
def cutmix_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cutmix")
    src = make_source(tmp / "animals")
    out = tmp / "out"
    manifest = run(out, source=str(src), copies=3, seed=5, image_format="png", cutmix=1.0,
                   mix_partners="other-class", cache_dir=str(tmp / "cache"))  # fmt: skip
    return src, out, manifest


def mix_step(record):
    return next((s for s in json.loads(record["recipe"]) if s["op"] == "mix"), None)


def split_rows(out, split):
    return pq.read_table(sorted(str(p) for p in out.glob(f"*-{split}.parquet-*"))).to_pylist()


def test_soft_labels_read_back_with_tf_data_and_pyarrow(mixup_run):
    _, out, manifest = mixup_run
    rows = read_tfrecords(out)
    table = read_parquet(out)
    assert table.column_names == field_names(mixed=True)
    assert table.schema.field("soft_label").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("mix_lambda").type == pa.float32()
    parquet = {(r["source_key"], r["copy_index"]): r for r in table.drop_columns(["image"]).to_pylist()}
    assert len(rows) == len(parquet) == manifest["counts"]["records_out"]
    mixed = 0
    for r in rows:
        soft, lam, label, label_b = r["soft_label"], float(r["mix_lambda"]), int(r["label"]), int(r["label_b"])
        assert soft.dtype == np.float32 and soft.shape == (3,)
        assert abs(float(soft.sum()) - 1.0) < 1e-6 and 0.5 <= lam <= 1.0
        assert CLASSES[label] == r["label_name"]
        if label != label_b:
            assert soft[label] == pytest.approx(lam, abs=1e-6) and soft[label_b] == pytest.approx(1 - lam, abs=1e-6)
            assert np.count_nonzero(soft) == 2
        else:
            assert soft[label] == 1.0 and np.count_nonzero(soft) == 1
        step = mix_step(r)
        if step is None:  # originals (copy 0) of both splits are never mixed
            assert int(r["copy_index"]) == 0 and lam == 1.0 and label_b == label
        else:
            mixed += 1
            own, partner, weight_a = r["source_key"].split("/")[0], step["params"]["partner"], step["params"]["lambda"]
            dominant, other = (own, partner["label_name"]) if weight_a >= 0.5 else (partner["label_name"], own)
            assert r["label_name"] == dominant and CLASSES[label_b] == other  # lambda >= 0.5 -> the source's class
            assert lam == pytest.approx(max(weight_a, 1 - weight_a), abs=1e-6)
        p = parquet[(r["source_key"], int(r["copy_index"]))]
        assert (p["label"], p["label_b"], p["mix_lambda"]) == (label, label_b, lam)
        assert np.array_equal(np.float32(p["soft_label"]), soft)
    train_images = manifest["counts"]["per_split"]["train"]["images_ok"]
    assert mixed == 3 * train_images == manifest["counts"]["mix"]["mixed"]
    assert manifest["counts"]["mix"] == {"mixed": mixed, "unmixed": 0, "no_partner": 0, "partner_unusable": 0}
    assert main(["verify", str(out)]) == 0


def test_partners_are_in_the_same_split_and_each_source_is_one_partner_per_copy(mixup_run):
    _, out, _ = mixup_run
    train, validation = split_rows(out, "train"), split_rows(out, "validation")
    train_keys = {r["source_key"] for r in train}
    assert train_keys and validation and not train_keys & {r["source_key"] for r in validation}
    per_copy: dict[int, Counter] = {}
    for r in train:
        step = mix_step(r)
        if r["copy_index"] == 0:
            assert step is None
            continue
        partner = step["params"]["partner"]
        assert partner["source_key"] in train_keys and partner["source_key"] != r["source_key"]
        assert partner["copy_index"] == r["copy_index"]
        per_copy.setdefault(r["copy_index"], Counter())[partner["source_key"]] += 1
    assert sorted(per_copy) == [1, 2, 3]
    assert all(c == Counter(dict.fromkeys(train_keys, 1)) for c in per_copy.values())  # balanced fan-out
    for r in validation:  # evaluation data stays real: originals only, one-hot
        assert r["copy_index"] == 0 and mix_step(r) is None and r["mix_lambda"] == 1.0
        assert r["soft_label"] == [float(i == r["label"]) for i in range(3)]


@pytest.mark.parametrize("which", ["mixup_run", "cutmix_run"])
def test_mixed_pixels_equal_the_formula_over_both_sources_copies(which, request):
    src, out, manifest = request.getfixturevalue(which)
    policy, seed = Policy.from_config(manifest["policy"]), manifest["seed"]
    spec = MixSpec.from_config(manifest["mix"])
    checked = resized = 0
    for r in read_tfrecords(out):
        step = mix_step(r)
        if step is None:
            continue
        key, c, partner = r["source_key"], int(r["copy_index"]), step["params"]["partner"]
        a, _, _ = policy.augment(decode_image((src / key).read_bytes())[0], seed, key, c, key.split("/")[0])
        b_key = partner["source_key"]
        b, _, _ = policy.augment(decode_image((src / b_key).read_bytes())[0], seed, b_key, c, b_key.split("/")[0])
        h, w = a.shape[:2]
        if b.shape != a.shape:
            b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
            resized += 1
            assert partner["steps"][-1]["op"] == "resize"
        drawn = draw(seed, key, c, spec)
        lam = step["params"]["lambda"]
        if step["config"]["mode"] == "mixup":
            assert lam == drawn.lam and step["params"]["box"] is None
            expected = np.rint(lam * a.astype(np.float64) + (1 - lam) * b.astype(np.float64)).astype(np.uint8)
        else:
            y0, y1, x0, x1 = step["params"]["box"]
            assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
            assert lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (h * w), abs=1e-12)  # lambda from the real box
            expected = a.copy()
            expected[y0:y1, x0:x1] = b[y0:y1, x0:x1]
        got = tf.io.decode_png(r["image"]).numpy()
        assert np.array_equal(got, expected), (key, c)
        assert replay(r["recipe"], (src / key).read_bytes(), (src / b_key).read_bytes()) == r["image"]
        checked += 1
    assert checked == manifest["counts"]["mix"]["mixed"] > 0 and resized > 0


def test_replay_command_reads_the_partner_source(mixup_run, cutmix_run, capsys):
    for src, out, _ in (mixup_run, cutmix_run):
        r = next(r for r in read_tfrecords(out) if mix_step(r) is not None)
        argv = ["replay", str(out), "--source-key", r["source_key"], "--copy-index", str(int(r["copy_index"]))]
        assert main(argv) == 0
        assert "bit-exact" in capsys.readouterr().out
        with pytest.raises(ReplayError, match="its source bytes are needed"):
            replay(r["recipe"], (src / r["source_key"]).read_bytes())


def test_other_class_partners_and_cutmix_labels(cutmix_run, capsys):
    _, out, manifest = cutmix_run
    rows = read_tfrecords(out)
    modes = Counter()
    for r in rows:
        step = mix_step(r)
        modes[step["config"]["mode"]] += 1
        own, other = r["source_key"].split("/")[0], step["params"]["partner"]["label_name"]
        assert own != other and {r["label_name"], CLASSES[int(r["label_b"])]} == {own, other}
    assert modes == {"cutmix": len(rows)} and len(rows) == 18 * 3
    assert main(["verify", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "mixing: cutmix alpha 1; 100% of augmented copies; partners: other-class" in info
    assert "mixed 54, unmixed 0, no_partner 0, partner_unusable 0" in info
    from beam_jobs.report import _samples

    # The report shows one source per class with all its copies, whichever class a mix gave each copy.
    samples = _samples(str(out), manifest)
    assert set(samples) == set(CLASSES)
    assert all(len(rs) == 3 and len({r["source_key"] for r in rs}) == 1 for rs in samples.values())
    assert (out / "report.html").exists() and len(list((out / "report").glob("samples_*.png"))) == 3


def test_same_class_partners_and_mix_fraction(tmp_path):
    src = make_source(tmp_path / "animals")
    out = tmp_path / "out"
    manifest = run(out, source=str(src), copies=4, seed=1, mixup=0.2, cutmix=1.0, mix_fraction=0.5,
                   mix_partners="same-class", cache_dir=str(tmp_path / "cache"))  # fmt: skip
    spec = MixSpec.from_config(manifest["mix"])
    modes = Counter()
    for r in read_tfrecords(out):
        step = mix_step(r)
        key, c = r["source_key"], int(r["copy_index"])
        assert (step is not None) == is_mixed(1, key, c, 0.5) == (draw(1, key, c, spec) is not None)
        if step is None:
            assert float(r["mix_lambda"]) == 1.0 and int(r["label_b"]) == int(r["label"])
            continue
        modes[step["config"]["mode"]] += 1
        assert step["params"]["partner"]["label_name"] == key.split("/")[0] == r["label_name"]
        assert float(r["soft_label"][int(r["label"])]) == 1.0  # same class: the soft label stays one-hot
    counts = manifest["counts"]["mix"]
    assert counts["mixed"] + counts["unmixed"] == 72 and counts["mixed"] == sum(modes.values())
    assert 21 <= counts["mixed"] <= 51 and set(modes) == {"mixup", "cutmix"}  # about half, both modes
    assert main(["verify", str(out)]) == 0


def test_a_partner_that_does_not_decode_leaves_its_requesters_unmixed_and_counted(tmp_path):
    src = make_folder(tmp_path / "animals", per_class=3)
    (src / "dogs" / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    out = tmp_path / "out"
    manifest = run(out, source=str(src), copies=2, mixup=0.4, image_format="png", cache_dir=str(tmp_path / "c"))
    c = manifest["counts"]
    assert (c["images_in"], c["images_ok"], c["dead_letters"], c["records_out"]) == (10, 9, 1, 18)
    # every source is a partner once per copy index, so the broken one was planned twice
    assert c["mix"] == {"mixed": 16, "unmixed": 0, "no_partner": 0, "partner_unusable": 2}
    skipped = [r for r in read_tfrecords(out) if "skipped" in mix_step(r)["params"]]
    assert len(skipped) == 2
    for r in skipped:
        assert mix_step(r)["params"] == {"skipped": "partner_unusable", "partner": {"source_key": "dogs/broken.jpg"}}
        assert float(r["mix_lambda"]) == 1.0 and int(r["label_b"]) == int(r["label"])
        assert replay(r["recipe"], (src / r["source_key"]).read_bytes()) == r["image"]  # an unmixed copy
    assert main(["verify", str(out)]) == 0


def fingerprint(out):
    return sorted(
        (r["source_key"], int(r["copy_index"]), int(r["label"]), int(r["label_b"]), r["soft_label"].tobytes(),
         r["recipe"], r["image"])
        for r in read_tfrecords(out)
    )  # fmt: skip


def test_two_workers_and_another_listing_order_give_identical_bytes(tmp_path):
    a = make_source(tmp_path / "a" / "animals")
    b = tmp_path / "b" / "animals"
    for path in sorted(a.rglob("*.*"), reverse=True):  # created in the opposite order
        (b / path.relative_to(a)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, b / path.relative_to(a))
    args = {"copies": 2, "seed": 7, "mixup": 0.3, "cutmix": 1.0, "mix_fraction": 0.7}
    run(tmp_path / "oa", source=str(a), cache_dir=str(tmp_path / "c"), **args)
    two = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    run(tmp_path / "ob", source=str(b), cache_dir=str(tmp_path / "c"), pipeline_args=two, **args)
    fa = fingerprint(tmp_path / "oa")
    assert len(fa) == 36 and fa == fingerprint(tmp_path / "ob")
    assert 10 < sum('"lambda"' in recipe for *_, recipe, _ in fa) < 36  # mixed and unmixed copies both compared


def test_tfds_hugging_face_and_keras_read_the_soft_labels(mixup_run, tmp_path):
    _, out, manifest = mixup_run
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["soft_label"].shape == (3,)
    assert builder.info.features["label_b"].names == CLASSES
    n_train = sum(1 for _ in builder.as_dataset(split="train"))
    assert n_train == manifest["counts"]["per_split"]["train"]["records_out"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))  # a private cache (see test_consumers)
    assert ds["train"].features["label_b"].names == CLASSES and len(ds["train"][0]["soft_label"]) == 3
    # The README's recipe: soft labels as targets of categorical cross-entropy.
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "soft_label": tf.io.FixedLenFeature([3], tf.float32)}

    def parse(x):
        r = tf.io.parse_single_example(x, spec)
        return tf.image.resize(tf.io.decode_png(r["image"], channels=3), (32, 32)) / 255.0, r["soft_label"]

    files = sorted(str(p) for p in out.glob("*-train.tfrecord-*"))
    model = tf.keras.Sequential([tf.keras.Input((32, 32, 3)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(3)])
    model.compile("sgd", tf.keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(tf.data.TFRecordDataset(files).map(parse).batch(8), epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def images(spec):
    """SourceImages from ``{class index: count}``; keys ``c<label>/<i>.png``."""
    return [SourceImage(f"c{label}/{i}.png", label, f"c{label}") for label, n in spec.items() for i in range(n)]


def test_partner_plans_are_permutations_within_their_groups_and_deterministic():
    sources = images({0: 10, 1: 7, 2: 1})
    label = {s.key: s.label for s in sources}
    copies = {s.key: (5 if s.key.endswith("/0.png") else 3) for s in sources}  # a balancing plan: K differs
    every = lambda k: True  # noqa: E731
    plan = plan_partners(sources, 0, MixSpec(mixup=0.2), copies.get, every)
    assert {k: len(v) for k, v in plan.items()} == copies
    for c in (1, 2, 3):  # any: a permutation without fixed points, per copy index
        mapping = {k: v[c - 1] for k, v in plan.items()}
        assert sorted(mapping.values()) == sorted(mapping) and all(k != p for k, p in mapping.items())
    assert plan == plan_partners(list(reversed(sources)), 0, MixSpec(mixup=0.2), copies.get, every)
    assert plan != plan_partners(sources, 1, MixSpec(mixup=0.2), copies.get, every)

    same = plan_partners(sources, 0, MixSpec(mixup=0.2, partners="same-class"), copies.get, every)
    assert "c2/0.png" not in same  # alone in its class: no partner
    for c in (1, 2, 3):
        mapping = {k: v[c - 1] for k, v in same.items()}
        assert all(label[k] == label[p] and k != p for k, p in mapping.items())
        assert sorted(mapping.values()) == sorted(mapping)

    other = plan_partners(sources, 0, MixSpec(cutmix=1.0, partners="other-class"), copies.get, every)
    assert all(label[k] != label[p] for k, ps in other.items() for p in ps)
    assert len(other) == len(sources)

    train_only = lambda k: not k.startswith("c1/")  # noqa: E731
    split = plan_partners(sources, 0, MixSpec(mixup=0.2), copies.get, train_only)
    assert all(train_only(k) and train_only(p) for k, ps in split.items() for p in ps)


def test_mix_fraction_selects_about_that_share_of_copies():
    sources = images({0: 300, 1: 300})
    plan = plan_partners(sources, 0, MixSpec(mixup=0.2, fraction=0.3), lambda k: 5, lambda k: True)
    share = sum(p is not None for ps in plan.values() for p in ps) / 3000
    assert 0.27 < share < 0.33


def test_cutmix_box_follows_timm():
    # timm rand_bbox with margin 0: cut = int(side * sqrt(1 - lam)), corners at centre -+ cut // 2, clipped.
    for lam, h, w, cy, cx in [(0.5, 48, 64, 10, 60), (0.9, 40, 56, 0, 0), (0.2, 30, 30, 29, 15), (1.0, 8, 8, 4, 4)]:
        box, corrected = cutmix_box(lam, h, w, ((cy + 0.5) / h, (cx + 0.5) / w))
        cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        expected = [int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h)),
                    int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))]  # fmt: skip
        assert box == expected
        assert corrected == 1 - (box[1] - box[0]) * (box[3] - box[2]) / (h * w)
    a, b = np.full((2, 2, 3), 10, np.uint8), np.full((2, 2, 3), 21, np.uint8)
    assert mixup(a, b, 0.5).max() == 16 and mixup(a, b, 0.0).max() == 21  # rint(15.5) rounds half to even


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mixup", "0"], r"--mixup ALPHA must be > 0"),
        (["--cutmix", "-1"], r"--cutmix ALPHA must be > 0"),
        (["--mixup", "nan"], r"--mixup ALPHA must be > 0"),
        (["--mixup", "0.2", "--mix-fraction", "0"], r"--mix-fraction must be in \(0, 1\]"),
        (["--cutmix", "1", "--mix-fraction", "1.5"], r"--mix-fraction must be in \(0, 1\]"),
        (["--mix-fraction", "0.5"], r"need --mixup ALPHA and/or --cutmix ALPHA"),
        (["--mix-partners", "same-class"], r"need --mixup ALPHA and/or --cutmix ALPHA"),
        (["--mixup", "0.2", "--refresh", "--incremental"], r"--incremental cannot be combined with --mixup"),
        (["--mixup", "0.2", "--mix-partners", "other-class", "--classes", "cats"], r"other-class needs two classes"),
        (["--cutmix", "1", "--limit", "1"], r"--mix-partners any needs two images"),
    ],
)
def test_mix_flag_errors_are_one_clear_line(capsys, image_folder, tmp_path, extra, message):
    argv = ["run", "--source", str(image_folder), "--output", str(tmp_path / "o"), "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err), err


def test_an_unknown_partner_mode_is_refused_by_argparse(capsys, image_folder, tmp_path):
    with pytest.raises(SystemExit):
        main(["run", "--source", str(image_folder), "--output", str(tmp_path / "o"), "--mixup", "0.2",
              "--mix-partners", "nearby"])  # fmt: skip
    assert "invalid choice: 'nearby'" in capsys.readouterr().err


def test_other_class_with_one_class_is_a_user_error_from_python():
    with pytest.raises(UserError, match="two classes"):
        plan_partners(images({0: 4}), 0, MixSpec(mixup=0.2, partners="other-class"), lambda k: 2, lambda k: True)


def test_pair_with_partners_then_expand_on_a_pinned_runner(tmp_path):
    import apache_beam as beam
    from apache_beam.internal import pickler
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from beam_jobs.mixing import OfferPartnerBytesFn
    from beam_jobs.ptransforms import ExpandImages
    from tests.fixtures import encode, photo_like
    from transforms.expand import DEAD_LETTER, ExpandFn
    from transforms.policies import PRESETS

    rng = np.random.default_rng(2)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(encode(photo_like(rng, 30, 40), "PNG"))
    sources = [
        SourceImage("a/1.png", 0, "a", path=str(tmp_path / "a" / "1.png")),  # read by the offer step
        SourceImage("b/2.png", 1, "b", data=encode(photo_like(rng, 20, 24), "PNG")),  # archive-style bytes
        SourceImage("b/3.png", 1, "b", data=encode(photo_like(rng, 30, 40), "JPEG")),
        SourceImage("b/gone.png", 1, "b", path=str(tmp_path / "b" / "gone.png")),  # unreadable: a dead letter
    ]
    spec = MixSpec(mixup=0.5, cutmix=1.0)
    plan = plan_partners(sources, 0, spec, lambda k: 2, lambda k: True)
    expected = [(k, c, "partner_unusable" if plan[k][c - 1] == "b/gone.png" else "mixed")
                for k in ("a/1.png", "b/2.png", "b/3.png") for c in (1, 2)]  # fmt: skip
    assert any(state == "partner_unusable" for *_, state in expected)
    args = {"policy_config": PRESETS["light"], "copies": 2, "seed": 0, "class_names": ["a", "b"],
            "mix": spec.to_config()}  # fmt: skip
    for fn in (OfferPartnerBytesFn(plan), ExpandFn(**args)):
        assert type(pickler.loads(pickler.dumps(fn))) is type(fn)
    with BeamTestPipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(sources) | ExpandImages(mix_partners=plan, **args)
        states = out.records | "State" >> beam.Map(lambda r: (r["source_key"], r["copy_index"], r["mix_state"]))
        assert_that(states, equal_to(expected))
        dead = out[DEAD_LETTER] | "Reason" >> beam.Map(lambda d: (d["source_key"], d["stage"], d["reason"]))
        assert_that(dead, equal_to([("b/gone.png", "read", "unreadable")]), label="dead letters")


def test_a_partner_redrawn_by_the_quality_gate_is_mixed_as_written(tmp_path):
    # Huge shifts with constant fill make many first draws degenerate: the gate re-draws them. A mixed copy must
    # then blend in the partner's copy as the partner's own record holds it (the kept attempt), not the first draw.
    src = make_source(tmp_path / "animals")
    out = tmp_path / "out"
    policy = {"version": 1, "ops": [{"op": "affine", "translate": [0.6, 0.6], "fill_mode": "constant"}]}
    manifest = run(out, source=str(src), copies=3, seed=7, image_format="png", mixup=0.4, policy=policy,
                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
    assert manifest["counts"]["quality_gate"]["redrawn"] > 0
    rows = {(r["source_key"], r["copy_index"]): r for r in split_rows(out, "train")}
    checked = 0
    for r in rows.values():
        step = mix_step(r)
        if step is None or "skipped" in step["params"]:
            continue
        partner = step["params"]["partner"]
        written = json.loads(rows[(partner["source_key"], partner["copy_index"])]["recipe"])
        own = [s for s in written if s["op"] not in ("decode", "encode", "mix")]
        # the partner's steps: decode, its own ops (as written), then a resize when its size differs
        assert partner["steps"][1 : len(own) + 1] == own, "the mix used another draw than the partner's written copy"
        checked += any(s["op"] == "quality_gate" for s in own)
    assert checked > 0  # some partners were re-drawn by the gate
    assert main(["verify", str(out)]) == 0


def test_a_partner_with_another_channel_count_takes_the_copys():
    rgb = photo_like(np.random.default_rng(0), 8, 8)
    grey = rgb[:, :, :1].copy()
    step = {"config": {"mode": "cutmix"}, "params": {"lambda": 0.5, "box": [0, 4, 0, 8]}}
    out = mix_step_pixels(rgb, grey, step)
    assert out.shape == rgb.shape and np.array_equal(out[:4], np.repeat(grey, 3, axis=2)[:4])
    out = mix_step_pixels(grey, rgb, {"config": {"mode": "mixup"}, "params": {"lambda": 1.0}})
    assert out.shape == grey.shape and np.array_equal(out, grey)
