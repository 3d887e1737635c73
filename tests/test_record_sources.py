"""Record-format inputs: TFRecord / TFDS dirs, Parquet (HF and plain), CSV pixel rows, WebDataset tars, lists.

Corrupt shards and rows in each are dead-lettered with their location while the rest is processed.
"""

import bz2
import errno
import gzip
import io
import json
import lzma
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_jobs.errors import UserError
from beam_jobs.sinks.writers import tfrecord_frame
from schemas.tf_example import encode_example
from tests.fixtures import encode, photo_like, read_tfrecords
from tests.test_pipeline_e2e import fingerprint, run
from tests.test_replay_sources import assert_replays_exactly, stored_image


def dead(out):
    return {d["source_key"]: d["reason"] for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}


def test_a_tfds_directory_and_hf_parquet_shards_are_inputs(image_folder, tmp_path, cache_dir, capsys):
    first = tmp_path / "first"
    run(first, source=str(image_folder), copies=1, include_original=True, cache_dir=str(cache_dir), name="animals")
    by_key = {(r["source_key"], int(r["copy_index"])): r for r in read_tfrecords(first)}

    second = tmp_path / "second"
    manifest = run(second, source=str(first), copies=2, cache_dir=str(cache_dir))  # detected: TFDS tfrecord dir
    assert manifest["source"]["kind"] == "tfrecord" and manifest["class_names"] == ["cats", "dogs", "owls"]
    rows = read_tfrecords(second)
    assert len(rows) == 24 * 2
    # every new record's label is its source record's label
    shard = next(first.glob("*.tfrecord-*")).name
    originals = [r for (k, c), r in sorted(by_key.items())]
    for r in rows:
        path, index = r["source_key"].split("#")
        assert path == shard
        assert r["label_name"] in ("cats", "dogs", "owls")
    assert {r["label_name"] for r in rows} == {r["label_name"] for r in originals}

    third = tmp_path / "third"
    manifest = run(third, source=str(first / "*.parquet-*"), copies=1, cache_dir=str(cache_dir))
    assert manifest["source"]["kind"] == "parquet" and manifest["class_names"] == ["cats", "dogs", "owls"]
    assert manifest["counts"]["records_out"] == 24
    # the dataset folder as a Parquet source: its data/ folder (Hugging Face's layout) mirrors the same shards
    fourth = tmp_path / "fourth"
    manifest = run(fourth, source=str(first), source_format="parquet", copies=1, cache_dir=str(cache_dir))
    assert manifest["counts"]["images_in"] == 24 and manifest["counts"]["records_out"] == 24
    # a copy of each replays from its record, found in the shards as the run found them
    tfrecord_key, parquet_key = f"{shard}#7", f"{next(first.glob('*.parquet-*')).name}#7"
    for out, key in ((second, tfrecord_key), (third, parquet_key), (fourth, parquet_key)):
        assert_replays_exactly(capsys, str(out), key, stored_image(out, key, 1), tmp_path)


def test_plain_parquet_columns_csv_pixels_webdataset_and_list_files(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    imgs = [photo_like(rng, 16, 20) for _ in range(4)]

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"img": [encode(i, "PNG") for i in imgs], "cls": ["b", "a", "b", None]}), plain)
    out = tmp_path / "o1"
    m = run(out, source=str(plain), copies=1, cache_dir=str(cache_dir),
            **{"image_key": "img", "label_key": "cls"})  # fmt: skip
    assert m["class_names"] == ["a", "b"] and m["counts"]["images_ok"] == 3
    assert dead(out) == {"plain.parquet#3": "missing_label"}

    pixels = tmp_path / "sign.csv"
    lines = ["label," + ",".join(f"pixel{i}" for i in range(1, 65))]
    for k in range(3):
        lines.append(",".join([str(k % 2)] + [str(v) for v in rng.integers(0, 256, 64)]))
    lines.append("1," + ",".join(["7"] * 63))  # wrong length
    lines.append("0," + ",".join(["300"] * 64))  # outside 0..255
    pixels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o2"
    m = run(out, source=str(pixels), copies=2, cache_dir=str(cache_dir), source_format="csv", image_shape=(8, 8, 1))
    assert m["class_names"] == ["0", "1"] and m["counts"]["records_out"] == 6
    assert dead(out) == {"sign.csv#4": "bad_row_length", "sign.csv#5": "bad_pixel_value"}
    assert {(int(r["height"]), int(r["width"])) for r in read_tfrecords(out)} == {(8, 8)}

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in [("s0.jpg", encode(imgs[0], "JPEG")), ("s0.cls", b"1"), ("s1.png", encode(imgs[1], "PNG")),
                           ("s1.json", b'{"label": 0}'), ("s2.png", encode(imgs[2], "PNG"))]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "o3"
    m = run(out, source=str(shard), copies=1, cache_dir=str(cache_dir), source_format="tar")
    assert sorted(r["source_key"] for r in read_tfrecords(out)) == ["shard-000.tar/s0", "shard-000.tar/s1"]
    assert dead(out) == {"shard-000.tar/s2": "missing_label"}

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(imgs):
        (folder / f"{i}.png").write_bytes(encode(img, "PNG"))
    listing = tmp_path / "labels.csv"
    listing.write_text("path,label\nimgs/0.png,cat\nimgs/1.png,dog\nimgs/2.png,cat\nimgs/missing.png,dog\n")
    out = tmp_path / "o4"
    m = run(out, source=str(listing), copies=1, cache_dir=str(cache_dir), source_format="list")
    assert m["class_names"] == ["cat", "dog"] and dead(out) == {"imgs/missing.png": "unreadable"}
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"path": "imgs/3.png", "label": "dog"}\n')
    m = run(tmp_path / "o5", source=str(jsonl), copies=1, cache_dir=str(cache_dir))
    assert m["counts"]["records_out"] == 1


def test_corrupt_record_inputs_are_dead_lettered_with_their_location(tmp_path, cache_dir):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    data.mkdir()
    rec = lambda i, label: encode_example({"image": encode(photo_like(rng, 12, 12), "PNG"), "label": label,  # noqa: E731
                                           "label_name": "x", "source_key": f"k{i}", "copy_index": 0, "view_index": 0,
                                           "recipe": "", "height": 12, "width": 12})  # fmt: skip
    frames = [tfrecord_frame(rec(i, i % 2)) for i in range(5)]
    bad = bytearray(frames[2])
    bad[-1] ^= 0xFF  # data CRC
    (data / "a.tfrecord").write_bytes(frames[0] + frames[1] + bytes(bad) + frames[3] + frames[4])
    (data / "b.tfrecord").write_bytes(frames[3] + frames[4][:-10])  # truncated
    out = tmp_path / "o"
    m = run(out, source=str(data), copies=1, cache_dir=str(cache_dir))
    assert dead(out) == {"a.tfrecord#2": "corrupt_record", "b.tfrecord#1": "corrupt_record"}
    assert m["counts"]["images_ok"] == 3 and m["counts"]["images_in"] == 5

    pdir = tmp_path / "pq"
    pdir.mkdir()
    good = pa.table({"image": [encode(photo_like(rng, 12, 12), "PNG"), None], "label": [0, 1]})
    pq.write_table(good, pdir / "a.parquet")
    pq.write_table(pa.table({"picture": [b"x"], "label": [0]}), pdir / "b.parquet")  # other schema
    (pdir / "c.parquet").write_bytes((pdir / "a.parquet").read_bytes()[:-30])  # no footer
    nolabel = pa.table({"image": [encode(photo_like(rng, 12, 12), "PNG")], "label": pa.array([None], pa.int64())})
    pq.write_table(nolabel, pdir / "d.parquet")
    out = tmp_path / "p"
    m = run(out, source=str(pdir), copies=1, cache_dir=str(cache_dir))
    assert dead(out) == {"a.parquet#1": "missing_image", "b.parquet": "schema_mismatch", "c.parquet": "corrupt_shard",
                         "d.parquet#0": "missing_label"}  # fmt: skip
    assert m["counts"]["images_ok"] == 1 and m["counts"]["images_in"] == 5


def tf_example(image: bytes, label) -> bytes:
    """A ``tf.train.Example`` with an ``image`` and a ``label`` (int, bytes or float list)."""
    import tensorflow as tf

    kind = {int: "int64_list", bytes: "bytes_list", float: "float_list"}[type(label)]
    value = {"int64_list": tf.train.Int64List, "bytes_list": tf.train.BytesList, "float_list": tf.train.FloatList}
    features = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(**{kind: value[kind](value=[label])})}  # fmt: skip
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def webdataset(path, members: list[tuple[str, bytes]]):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def names_by_key(out, manifest) -> dict[str, str]:
    """source_key -> label_name of the written records, checking that every label indexes its own name."""
    rows = read_tfrecords(out)
    assert all(manifest["class_names"][int(r["label"])] == r["label_name"] for r in rows)
    for name, c in manifest["counts"]["per_class"].items():
        assert c["images_in"] == c["images_ok"] + c["dead_letters"], name
    return {r["source_key"]: r["label_name"] for r in rows}


def test_a_label_keeps_its_own_name(tmp_path, cache_dir):
    rng = np.random.default_rng(3)
    png = lambda: encode(photo_like(rng, 8, 8), "PNG")  # noqa: E731

    pixels = tmp_path / "px.csv"
    labels = [0, 0, 1, 1, 2, 2, -1]
    pixels.write_text("".join(f"{v}," + ",".join(["9"] * 16) + "\n" for v in labels))
    out = tmp_path / "csv"
    m = run(out, source=str(pixels), copies=1, cache_dir=str(cache_dir), source_format="csv", image_shape=(4, 4, 1))
    assert m["class_names"] == ["-1", "0", "1", "2"]
    assert names_by_key(out, m) == {f"px.csv#{i}": str(v) for i, v in enumerate(labels)}

    tfr = tmp_path / "tfr"
    tfr.mkdir()
    (tfr / "a.tfrecord").write_bytes(b"".join(tfrecord_frame(tf_example(png(), v)) for v in [0, 1, 2, -1, 0.5]))
    out = tmp_path / "tfr_out"
    m = run(out, source=str(tfr), copies=1, cache_dir=str(cache_dir))
    assert m["class_names"] == ["-1", "0", "1", "2"] and dead(out) == {"a.tfrecord#4": "unknown_label"}
    assert names_by_key(out, m) == {"a.tfrecord#0": "0", "a.tfrecord#1": "1", "a.tfrecord#2": "2", "a.tfrecord#3": "-1"}
    (tfr / "label.labels.txt").write_text("cat\ndog\n")  # TFDS names: an int is an index into them
    out = tmp_path / "tfds_out"
    m = run(out, source=str(tfr), copies=1, cache_dir=str(cache_dir))
    assert m["class_names"] == ["cat", "dog"] and names_by_key(out, m) == {"a.tfrecord#0": "cat", "a.tfrecord#1": "dog"}
    assert set(dead(out).values()) == {"unknown_label"} and len(dead(out)) == 3

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"image": [png() for _ in range(4)], "label": [0, 1, 2, -1]}), plain)
    out = tmp_path / "pq_out"
    m = run(out, source=str(plain), copies=1, cache_dir=str(cache_dir))
    assert names_by_key(out, m) == {"plain.parquet#0": "0", "plain.parquet#1": "1", "plain.parquet#2": "2",
                                    "plain.parquet#3": "-1"}  # fmt: skip

    shard = tmp_path / "mixed.tar"
    members = [("s0.png", png()), ("s0.cls", b"cat"), ("s1.png", png()), ("s1.cls", b"dog"), ("s2.png", png()),
               ("s2.cls", b"1"), ("s3.png", png()), ("s3.json", b'{"label": [1]}')]  # fmt: skip
    webdataset(shard, members)
    out = tmp_path / "wds_out"
    m = run(out, source=str(shard), copies=1, cache_dir=str(cache_dir), source_format="tar")
    assert m["class_names"] == ["1", "cat", "dog"] and dead(out) == {"mixed.tar/s3": "unknown_label"}
    assert names_by_key(out, m) == {"mixed.tar/s0": "cat", "mixed.tar/s1": "dog", "mixed.tar/s2": "1"}

    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "b.png").write_bytes(png())
    listing = tmp_path / "mixed.csv"
    listing.write_text("path,label\na.png,cat\nb.png,1\n")
    out = tmp_path / "list_out"
    m = run(out, source=str(listing), copies=1, cache_dir=str(cache_dir), source_format="list")
    assert names_by_key(out, m) == {"a.png": "cat", "b.png": "1"}


def test_a_repeated_key_is_a_dead_letter_under_its_own_class(tmp_path, cache_dir):
    rng = np.random.default_rng(4)
    png = lambda: encode(photo_like(rng, 8, 8), "PNG")  # noqa: E731
    shard = tmp_path / "dup.tar"
    webdataset(shard, [("s0.png", png()), ("s0.cls", b"0"), ("s1.png", png()), ("s1.cls", b"1"),
                       ("s0.jpg", encode(photo_like(rng, 8, 8), "JPEG")), ("s0.cls", b"1")])  # fmt: skip
    out = tmp_path / "wds"
    m = run(out, source=str(shard), copies=1, cache_dir=str(cache_dir), source_format="tar")
    assert names_by_key(out, m) == {"dup.tar/s0": "0", "dup.tar/s1": "1"}  # the first s0 is kept
    assert dead(out) == {"dup.tar/s0 (duplicate 2)": "duplicate_key"}
    per_class = {n: (c["images_in"], c["images_ok"]) for n, c in m["counts"]["per_class"].items()}
    assert per_class == {"0": (1, 1), "1": (2, 1)}

    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(png())
    listing = tmp_path / "dup.csv"
    listing.write_text("a.png,cat\nb.png,dog\na.png,cat\na.png,dog\n")  # a.png twice as cat, then as dog
    out = tmp_path / "list"
    m = run(out, source=str(listing), copies=1, cache_dir=str(cache_dir), source_format="list")
    assert dead(out) == {"dup.csv#3": "duplicate_key", "dup.csv#4": "duplicate_key"}
    per_class = {n: (c["images_in"], c["images_ok"]) for n, c in m["counts"]["per_class"].items()}
    assert per_class == {"cat": (2, 1), "dog": (2, 1)}


def wds_samples(first: int, last: int) -> list[tuple[str, bytes]]:
    """The members of WebDataset samples ``s<first>``..``s<last - 1>``: an image, a ``.json`` and a ``.cls``."""
    rng = np.random.default_rng(first)
    return [m for i in range(first, last) for m in ((f"s{i}.png", encode(photo_like(rng, 8, 8), "PNG")),
            (f"s{i}.json", json.dumps({"label": i % 2}).encode()), (f"s{i}.cls", str(i % 2).encode()))]  # fmt: skip


def broken_shard(tmp_path, how: str) -> bytes:
    """A shard of samples s0..s4 that breaks off at sample s3."""
    webdataset(tmp_path / "x.tar", wds_samples(0, 5))
    data = (tmp_path / "x.tar").read_bytes()
    cls = next(m for m in tarfile.open(tmp_path / "x.tar") if m.name == "s3.cls")
    if how == "cut_in_a_member":  # s3 has its image and its .json, and loses its .cls
        return data[: cls.offset_data + 1]
    assert how == "corrupt_header"  # tarfile stops there without an error
    return data[: cls.offset + 3] + bytes([data[cls.offset + 3] ^ 0xFF]) + data[cls.offset + 4 :]


@pytest.mark.parametrize("how", ["cut_in_a_member", "corrupt_header"])
def test_a_webdataset_shard_that_breaks_off_dead_letters_the_sample_at_the_break(tmp_path, how):
    from beam_jobs.sources.records import RecordOptions, scan_webdataset

    (tmp_path / "a.tar").write_bytes(broken_shard(tmp_path, how))
    scanned = list(scan_webdataset(str(tmp_path / "a.tar"), str(tmp_path) + "/", RecordOptions(), False))
    assert {it.key: it.error for it in scanned if it.error} == {"a.tar/s3": "archive_damaged"}
    assert [it.key for it in scanned if not it.error] == ["a.tar/s0", "a.tar/s1", "a.tar/s2"]
    assert [it.label for it in scanned if it.key == "a.tar/s3"] == [1]  # its class, as far as it was read


def shard_with_data_after_its_end(tmp_path, kind: str, compress=bytes) -> bytes:
    """A shard of samples s0..s2, whole, with data after its end-of-archive marker that is no damage.

    ``pixz_index``: non-zero bytes after the marker in the compressed stream, as pixz appends its file index;
    ``appended``: a second shard of s3, s4 after the first one's marker (GNU tar without -i stops at the marker);
    ``after_the_stream``: bytes after the compressed stream (xz stream padding, zeros, junk), which a decompressor
    fed them raises at.
    """
    webdataset(tmp_path / "x.tar", wds_samples(0, 3))
    tar = (tmp_path / "x.tar").read_bytes()
    if kind == "pixz_index":
        return compress(tar + bytes.fromhex("dbae14d62e324ca6") + b"s0.png\0" + bytes(range(1, 256)) * 40)
    if kind == "appended":
        webdataset(tmp_path / "y.tar", wds_samples(3, 5))
        return compress(tar + (tmp_path / "y.tar").read_bytes())
    assert kind == "after_the_stream"
    return compress(tar) + (bytes(20480) if compress is lzma.compress else b"\x01trailing" * 2000)


AFTER_END_KINDS = [("pixz_index", c) for c in ("none", "gz", "bz2", "xz")] + [("appended", "none")] + [
    ("after_the_stream", c) for c in ("gz", "bz2", "xz")]  # fmt: skip
COMPRESS = {"none": bytes, "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize(("kind", "comp"), AFTER_END_KINDS, ids=[f"{k}-{c}" for k, c in AFTER_END_KINDS])
def test_a_webdataset_shard_with_data_after_its_end_of_archive_marker_is_whole(tmp_path, kind, comp):
    # Earlier any data after the marker was damage: the shard's last sample, read whole, was dead-lettered (or a
    # made-up archive_damaged item keyed by the shard was added), for pixz shards, padded .xz and .bz2 with
    # trailing bytes. What follows a marker is never read, as GNU tar and tarfile do.
    from beam_jobs.sources.records import RecordOptions, scan_webdataset

    (tmp_path / "a.tar").write_bytes(shard_with_data_after_its_end(tmp_path, kind, COMPRESS[comp]))
    scanned = list(scan_webdataset(str(tmp_path / "a.tar"), str(tmp_path) + "/", RecordOptions(), True))
    assert [(it.key, it.error) for it in scanned] == [("a.tar/s0", None), ("a.tar/s1", None), ("a.tar/s2", None)]
    assert all(it.data for it in scanned)


def test_the_job_on_webdataset_shards_that_break_off(tmp_path, cache_dir):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.tar").write_bytes(broken_shard(tmp_path, "cut_in_a_member"))
    (shards / "b.tar").write_bytes(b"<html><body>404 Not Found</body></html>")  # no tar at all
    (shards / "c.tar").write_bytes(shard_with_data_after_its_end(tmp_path, "pixz_index"))  # whole: no dead letter
    (shards / "d.tgz").write_bytes(shard_with_data_after_its_end(tmp_path, "after_the_stream", gzip.compress))
    out = tmp_path / "o"
    m = run(out, source=str(shards), copies=1, cache_dir=str(cache_dir), source_format="tar")
    assert dead(out) == {"a.tar/s3": "archive_damaged", "b.tar": "archive_damaged"}
    whole = {"s0": "0", "s1": "1", "s2": "0"}
    assert names_by_key(out, m) == {f"{s}/{k}": v for s in ("a.tar", "c.tar", "d.tgz") for k, v in whole.items()}
    c = m["counts"]
    assert c["images_in"] == 11 == c["images_ok"] + c["dead_letters"] and c["images_ok"] == 9
    assert m["counts"]["per_class"]["1"]["dead_letters"] == 1  # s3, under the label its .json gave


def test_pixel_rows_that_are_not_utf8_are_one_clear_error(tmp_path, capsys, cache_dir):
    from beam_jobs.cli import main

    pixels = tmp_path / "px.csv"
    pixels.write_bytes(b"0," + b"9," * 15 + b"9\ncaf\xe9," + b"9," * 15 + b"9\n")  # a Latin-1 label on line 2
    argv = ["run", "--source", str(pixels), "--output", str(tmp_path / "o"), "--no-progress", "--image-shape", "4,4,1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text (line 2)" in err and "Traceback" not in err and not (tmp_path / "o").exists()
    pixels.write_bytes("\ufeff0,".encode() + b"9," * 15 + b"9\n1," + b"7," * 15 + b"7\n")  # Excel's "CSV UTF-8"
    m = run(tmp_path / "bom", source=str(pixels), copies=1, cache_dir=str(cache_dir), image_shape=(4, 4, 1))
    assert m["class_names"] == ["0", "1"] and m["counts"]["images_ok"] == 2


def list_run(tmp_path, cache_dir, name: str, content: bytes | str):
    """Runs the job on a list file ``name`` naming ``a.png`` and ``b.png`` (written beside it)."""
    rng = np.random.default_rng(5)
    for image in ("a.png", "b.png"):
        (tmp_path / image).write_bytes(encode(photo_like(rng, 8, 8), "PNG"))
    listing = tmp_path / name
    listing.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / f"out_{name}"
    m = run(out, source=str(listing), copies=1, cache_dir=str(cache_dir), source_format="list")
    return m, dead(out), names_by_key(out, m)


def test_messy_list_files(tmp_path, cache_dir):
    bom = "\ufeff".encode()
    m, bad, names = list_run(tmp_path, cache_dir, "bom.csv", bom + b"path,label\na.png,cat\nb.png,dog\n")
    assert m["class_names"] == ["cat", "dog"] and not bad and names == {"a.png": "cat", "b.png": "dog"}
    m, bad, names = list_run(tmp_path, cache_dir, "ws.csv", "filepath,class\na.png, cat\n b.png ,cat \n")
    assert m["class_names"] == ["cat"] and not bad and names == {"a.png": "cat", "b.png": "cat"}
    m, bad, names = list_run(tmp_path, cache_dir, "bom.jsonl", bom + b'{"path": "a.png", "label": "cat"}\n')
    assert names == {"a.png": "cat"}
    lines = ['{"path": "a.png", "label": "cat"}', '{"path": "b.png", "label": "dog"', '["b.png", "dog"]', "",
             '{"path": 7, "label": "dog"}', "{}"]  # fmt: skip
    m, bad, names = list_run(tmp_path, cache_dir, "bad.jsonl", "\n".join(lines) + "\n")
    assert names == {"a.png": "cat"}
    assert bad == {"bad.jsonl#2": "bad_row", "bad.jsonl#3": "bad_row", "bad.jsonl#5": "bad_row",
                   "bad.jsonl#6": "missing_image"}  # fmt: skip


def test_an_unusable_list_file_is_a_user_error(tmp_path, cache_dir):
    (tmp_path / "latin1.csv").write_bytes("a.png,caf\xe9\n".encode("latin-1"))
    (tmp_path / "photo.jpg").write_bytes(encode(photo_like(np.random.default_rng(6), 8, 8), "JPEG"))
    for source, message in [("latin1.csv", "UTF-8"), ("photo.jpg", "UTF-8"), (".", "a CSV or JSONL file")]:
        with pytest.raises(UserError, match=message):
            run(tmp_path / "out", source=str(tmp_path / source), copies=1, cache_dir=str(cache_dir),
                source_format="list")  # fmt: skip


def test_a_tfrecord_label_that_is_not_utf8_is_a_dead_letter(tmp_path, cache_dir):
    rng = np.random.default_rng(7)
    data = tmp_path / "tfr"
    data.mkdir()
    labels = [b"cat", b"caf\xe9", b"dog"]
    frames = [tfrecord_frame(tf_example(encode(photo_like(rng, 8, 8), "PNG"), v)) for v in labels]
    (data / "a.tfrecord").write_bytes(b"".join(frames))
    out = tmp_path / "o"
    m = run(out, source=str(data), copies=1, cache_dir=str(cache_dir))
    assert dead(out) == {"a.tfrecord#1": "unknown_label"}
    assert names_by_key(out, m) == {"a.tfrecord#0": "cat", "a.tfrecord#2": "dog"}


def test_a_parquet_file_with_a_corrupt_page_keeps_the_rows_before_it(tmp_path, cache_dir):
    rng = np.random.default_rng(8)
    images = [encode(photo_like(rng, 8, 8), "PNG") for _ in range(8)]
    data = tmp_path / "pq"
    data.mkdir()
    path = data / "a.parquet"
    pq.write_table(pa.table({"image": images * 50, "label": [0, 1] * 200}), path, row_group_size=100)
    damaged = bytearray(path.read_bytes())
    start = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    damaged[start + 40 : start + 400] = bytes(b ^ 0x5A for b in damaged[start + 40 : start + 400])
    path.write_bytes(bytes(damaged))
    out = tmp_path / "o"
    m = run(out, source=str(data), copies=1, cache_dir=str(cache_dir))
    assert dead(out) == {"a.parquet#200": "corrupt_shard"}  # row groups 0 and 1 are read; the rest is one dead letter
    assert (m["counts"]["images_in"], m["counts"]["images_ok"]) == (201, 200)


def test_a_parquet_image_column_of_paths_is_a_schema_mismatch(tmp_path, cache_dir):
    data = tmp_path / "pq"
    data.mkdir()
    pq.write_table(pa.table({"image": ["a.jpg", "b.jpg"], "label": [0, 1]}), data / "a.parquet")
    good = encode(photo_like(np.random.default_rng(9), 8, 8), "PNG")
    pq.write_table(pa.table({"image": [good], "label": [1]}), data / "b.parquet")
    out = tmp_path / "o"
    m = run(out, source=str(data), copies=1, cache_dir=str(cache_dir))
    assert dead(out) == {"a.parquet": "schema_mismatch"} and m["counts"]["images_ok"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --image-shape H,W,C"),  # detected from the .csv suffix, as --source-format csv says
        (["--image-shape", "0,4,1"], "--image-shape must be H,W,C"),
        (["--image-shape", "4,4,2"], "--image-shape must be H,W,C"),
    ],
)
def test_pixel_rows_need_a_valid_image_shape(capsys, tmp_path, extra, message):
    from beam_jobs.cli import main

    pixels = tmp_path / "px.csv"
    pixels.write_text("0," + ",".join(["9"] * 16) + "\n")
    argv = ["run", "--source", str(pixels), "--output", str(tmp_path / "o"), "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_blank_lines_in_pixel_rows_are_skipped(tmp_path, cache_dir):
    pixels = tmp_path / "px.csv"
    pixels.write_text("0," + ",".join(["9"] * 16) + "\r\n\r\n1," + ",".join(["7"] * 16) + "\n\n\n")
    out = tmp_path / "o"
    m = run(out, source=str(pixels), copies=1, cache_dir=str(cache_dir), image_shape=(4, 4, 1))
    assert dead(out) == {} and m["counts"]["images_ok"] == 2


def test_rgba_pixel_rows_keep_their_colours(tmp_path, cache_dir):
    pixels = tmp_path / "px.csv"
    pixels.write_text("0," + ",".join(["255,0,0,255"] * 4) + "\n")  # 2x2 opaque red
    out = tmp_path / "o"
    run(out, source=str(pixels), copies=0, include_original=True, cache_dir=str(cache_dir), image_shape=(2, 2, 4),
        image_format="png")  # fmt: skip
    image = np.array(Image.open(io.BytesIO(read_tfrecords(out)[0]["image"])).convert("RGB"))
    assert (image == [255, 0, 0]).all()


def test_parquet_shards_that_name_other_classes_are_refused(tmp_path, cache_dir):
    def hf_shard(path, names):
        image = pa.array([{"bytes": encode(photo_like(np.random.default_rng(10), 8, 8), "PNG"), "path": None}])
        meta = {"info": {"features": {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": names}}}}
        table = pa.table({"image": image, "label": pa.array([0], pa.int64())})
        pq.write_table(table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()}), path)

    data = tmp_path / "pq"
    data.mkdir()
    hf_shard(data / "train-00000-of-00002.parquet", ["cat", "dog"])
    hf_shard(data / "train-00001-of-00002.parquet", ["dog", "owl"])
    with pytest.raises(UserError, match="train-00001-of-00002.parquet.*'dog', 'owl'"):
        run(tmp_path / "o", source=str(data), copies=1, cache_dir=str(cache_dir))


def test_a_record_folder_named_like_a_pattern_is_read_as_a_folder(image_folder, tmp_path):
    # "shards[1]" was read as a glob (matching "shards1"): "no tfrecord files found".
    import shutil

    from beam_jobs.cli import main

    made = tmp_path / "made"
    assert main(["run", "--source", str(image_folder), "--output", str(made), "--copies", "1", "--no-progress"]) == 0
    folder = tmp_path / "shards[1]"
    folder.mkdir()
    shutil.copy(next(made.glob("*.tfrecord-*")), folder / "data.tfrecord")
    out = tmp_path / "out"
    assert main(["run", "--source", str(folder), "--output", str(out), "--copies", "1", "--no-progress"]) == 0
    assert json.loads((out / "beam_expand.json").read_text())["counts"]["records_out"] == 12


def test_a_record_file_whose_name_is_not_utf8_is_one_clear_error(image_folder, tmp_path, capsys):
    # Its records' keys hold the name: the run crashed in Beam's string coder with a traceback.
    import os
    import shutil

    from beam_jobs.cli import main

    made = tmp_path / "made"
    assert main(["run", "--source", str(image_folder), "--output", str(made), "--copies", "1", "--no-progress"]) == 0
    folder = tmp_path / "shards"
    folder.mkdir()
    shutil.copy(next(made.glob("*.tfrecord-*")), os.fsdecode(bytes(folder) + b"/caf\xe9.tfrecord"))
    capsys.readouterr()
    assert main(["run", "--source", str(folder), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "is not valid UTF-8; rename it" in capsys.readouterr().err


def test_labels_found_in_the_wild_keep_their_meaning(tmp_path, cache_dir):
    # Regressions a review found: OpenImages-style labels ("/m/01yrx") and one blank label stopped the whole run;
    # a pandas int column with a missing value (float64) dead-lettered everything; "001" became class "1".
    m, dead_letters, names = list_run(tmp_path, cache_dir, "mid.csv", "a.png,/m/01yrx\nb.png,/m/0bt9lr\n")
    assert m["class_names"] == ["/m/01yrx", "/m/0bt9lr"] and not dead_letters and len(names) == 2
    m, dead_letters, names = list_run(tmp_path, cache_dir, "zeros.csv", "file_name,species\na.png,001\nb.png,002\n")
    assert m["class_names"] == ["001", "002"] and names == {"a.png": "001", "b.png": "002"} and not dead_letters

    rng = np.random.default_rng(6)
    png = lambda: encode(photo_like(rng, 8, 8), "PNG")  # noqa: E731
    plain = tmp_path / "floats.parquet"
    column = pa.array([0.0, 1.0, 2.0, float("nan"), None, None], pa.float64())
    pq.write_table(pa.table({"image": [png() for _ in range(6)], "label": column}), plain)
    out = tmp_path / "floats_out"
    m = run(out, source=str(plain), copies=1, cache_dir=str(cache_dir))
    assert m["class_names"] == ["0", "1", "2"] and len(names_by_key(out, m)) == 3
    assert dead(out) == {f"floats.parquet#{i}": "missing_label" for i in (3, 4, 5)}

    blank = tmp_path / "blank.parquet"
    pq.write_table(pa.table({"image": [png(), png()], "label": ["cat", " "]}), blank)
    out = tmp_path / "blank_out"
    m = run(out, source=str(blank), copies=1, cache_dir=str(cache_dir))
    assert m["class_names"] == ["cat"] and dead(out) == {"blank.parquet#1": "missing_label"}


def test_a_record_source_without_one_usable_record_is_refused(tmp_path, capsys):
    # It used to publish an empty dataset and exit 0 (one "warning" line), e.g. for a wrong --label-key.
    from beam_jobs.cli import main

    rng = np.random.default_rng(7)
    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"image": [encode(photo_like(rng, 8, 8), "PNG")] * 3, "species": [0, 1, 0]}), data)
    out = tmp_path / "out"
    assert main(["run", "--source", str(data), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no usable parquet records" in err and "1 schema_mismatch" in err and "--label-key" in err
    assert main(["run", "--source", str(data), "--output", str(out), "--no-progress", "--label-key", "species"]) == 0
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.tfrecord").write_bytes(b"")
    capsys.readouterr()
    assert main(["run", "--source", str(tmp_path / "empty"), "--output", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "none found (1 file(s) without records)" in capsys.readouterr().err


def test_float_labels_in_lists_and_refusals_after_selection_and_in_preview(tmp_path, cache_dir, capsys):
    # A review of the mends: whole-number floats counted only in Parquet; a --limit or --classes leaving no usable
    # record still published an empty dataset; preview on record files crashed reading them as an archive.
    from beam_jobs.cli import main

    m, dead_letters, names = list_run(tmp_path, cache_dir, "f.csv", "a.png,0.0\nb.png,1.0\n")
    assert m["class_names"] == ["0", "1"] and names == {"a.png": "0", "b.png": "1"}
    jsonl = '{"path": "a.png", "label": 2.0}\n{"path": "b.png", "label": NaN}\n'
    m, dead_letters, names = list_run(tmp_path, cache_dir, "f.jsonl", jsonl)
    assert names == {"a.png": "2"} and dead_letters == {"b.png": "missing_label"}

    rng = np.random.default_rng(8)
    data = tmp_path / "few.parquet"
    pq.write_table(pa.table({"image": [encode(photo_like(rng, 8, 8), "PNG")] * 3, "label": [None, None, 1]}), data)
    capsys.readouterr()
    assert main(["run", "--source", str(data), "--output", str(tmp_path / "o"), "--no-progress", "--limit", "2"]) == 2
    assert "no usable parquet records" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["preview", "--source", str(data), "--out", str(tmp_path / "p.png")]) == 2
    assert "preview reads image folders, archives and list files" in capsys.readouterr().err


def test_a_listed_path_has_one_key_and_a_clean_one_keeps_its_own():
    from beam_jobs.sources.records import listed_path

    # Keys seed every copy: a path normalised already must keep its key, or every dataset's copies would change.
    for clean in ("a/x.jpg", "x.jpg", "../imgs/x.jpg", "/data/a/x.jpg", "a b/x y.JPG"):
        assert listed_path("/lists", clean)[0] == clean
    for spelling in ("./a/x.jpg", "a//x.jpg", "a/./x.jpg", "b/../a/x.jpg", "a/x.jpg/"):
        assert listed_path("/lists", spelling) == ("a/x.jpg", "/lists/a/x.jpg")
    assert listed_path("/lists", "b/../../x.jpg") == ("../x.jpg", "/lists/../x.jpg")  # read above the list: allowed
    assert listed_path(".", "//data/./a/x.jpg") == ("/data/a/x.jpg", "/data/a/x.jpg")
    # An object's name is exact; a relative path in a list on an object store climbs out of its folder by text.
    assert listed_path("/lists", "gs://b/a//x.jpg") == ("gs://b/a//x.jpg", "gs://b/a//x.jpg")
    assert listed_path("gs://b/lists", "../imgs/./x.jpg") == ("../imgs/x.jpg", "gs://b/imgs/x.jpg")
    assert listed_path("gs://b/lists", "../../x.jpg") == ("../../x.jpg", "gs://b/lists/../../x.jpg")  # no object


def test_a_file_listed_under_several_spellings_is_expanded_once(tmp_path, cache_dir):
    # ./a/x.png, a//x.png and a/./x.png were three more sources of a/x.png: the same image expanded four times.
    rng = np.random.default_rng(9)
    lists, imgs = tmp_path / "lists", tmp_path / "lists" / "a"
    imgs.mkdir(parents=True)
    for name in ("x.png", "y.png", "z.png"):
        (imgs / name).write_bytes(encode(photo_like(rng, 8, 8), "PNG"))
    (tmp_path / "up.png").write_bytes(encode(photo_like(rng, 8, 8), "PNG"))
    rows = ["a/x.png,cat", "./a/x.png,cat", "a//x.png,dog", "a/./x.png,cat", "b/../a/x.png,cat", f"{imgs}/x.png,cat",
            "./a/y.png,dog", "a/z.png,", "a//z.png,cat", "../up.png,dog", "../lists/../up.png,dog"]  # fmt: skip
    (lists / "l.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    m = run(out, source=str(lists / "l.csv"), copies=2, cache_dir=str(cache_dir), source_format="list")
    assert names_by_key(out, m) == {"a/x.png": "cat", "a/y.png": "dog", "../up.png": "dog"}
    # A dead first listing (no label) keeps its path too: every key names one row.
    dup = {f"l.csv#{n}": "duplicate_key" for n in (2, 3, 4, 5, 6, 9, 11)}
    assert dead(out) == {**dup, "a/z.png": "missing_label"}
    c = m["counts"]
    assert (c["images_in"], c["images_ok"], c["dead_letters"], c["records_out"]) == (11, 3, 8, 6)
    rows_by_key = [r["source_key"] for r in read_tfrecords(out)]
    assert sorted(rows_by_key) == sorted(["a/x.png", "a/y.png", "../up.png"] * 2)

    # The normalised key is the clean listing's key: the same copies, bit for bit.
    (lists / "clean.csv").write_text("a/y.png,dog\n")
    (lists / "messy.csv").write_text("./a//y.png,dog\n")
    for name in ("clean", "messy"):
        run(tmp_path / name, source=str(lists / f"{name}.csv"), copies=2, cache_dir=str(cache_dir), name="y",
            source_format="list")  # fmt: skip
    assert fingerprint(tmp_path / "clean") == fingerprint(tmp_path / "messy")


def test_a_list_file_whose_paths_lead_nowhere_is_refused(tmp_path, capsys):
    # Every listed image missing (paths written relative to another folder) published an empty dataset, exit 0.
    from beam_jobs.cli import main

    rng = np.random.default_rng(10)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "lists").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(encode(photo_like(rng, 8, 8), "PNG"))
    listing = tmp_path / "lists" / "labels.csv"
    # Three paths relative to the wrong folder, a folder, and a row without a label.
    listing.write_text("path,label\nimgs/0.png,cat\nimgs/1.png,dog\nimgs/2.png,cat\n../imgs,dog\nimgs/9.png,\n")
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"], ["--max-bad-fraction", "0.5"]):
        capsys.readouterr()
        assert main(["run", "--source", str(listing), "--source-format", "list", "--output", str(out),
                     "--no-progress", *extra]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert "no usable list records" in err and "all 5 would be dead letters (4 unreadable, 1 missing_label)" in err
        assert f"e.g. imgs/0.png (no file at {tmp_path}/lists/imgs/0.png), imgs/1.png (no file at " in err
        assert f"relative to the list file's folder {tmp_path}/lists " in err
        assert "Traceback" not in err and not out.exists()
    # Preview plans as a run does: the same message, not an empty contact sheet.
    jsonl = tmp_path / "lists" / "labels.jsonl"
    jsonl.write_text('{"path": "imgs/0.png", "label": "cat"}\n')
    assert main(["preview", "--source", str(jsonl), "--out", str(tmp_path / "p.png")]) == 2
    assert "(1 unreadable), e.g. imgs/0.png (no file at" in capsys.readouterr().err
    # Rows that are no rows, or have no label under --label-key: the message names them, there is no path to blame.
    jsonl.write_text('{"path": "imgs/0.png", "class": "cat"}\n[1]\n')
    assert main(["run", "--source", str(jsonl), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(1 missing_label, 1 bad_row), e.g. imgs/0.png (missing_label), labels.jsonl#2 (bad_row); " in err
    assert "--label-key" in err and "relative to" not in err
    # Relative to the list file's folder, as the message says: the run works.
    jsonl.write_text("".join(f'{{"path": "../imgs/{i}.png", "label": "cat"}}\n' for i in range(3)))
    assert main(["run", "--source", str(jsonl), "--output", str(out), "--no-progress", "--copies", "1"]) == 0
    assert sorted(r["source_key"] for r in read_tfrecords(out)) == [f"../imgs/{i}.png" for i in range(3)]


# --- damage is a dead letter; a failed read is none (it raises, and a retry reads the file again) ---------------


def _parquet_bytes(compression: str = "snappy", compressible: bool = False) -> bytes:
    """A Parquet file of 50 distinct 8 KB "images" in row groups of 10, without dictionary pages.

    Random bytes keep it over pyarrow's 64 KB footer read (so a failed read of row group 2 comes after rows were
    read); compressible ones make its pages real compressed data (random bytes are stored as they are).
    """
    rng = np.random.default_rng(11)
    images = [(f"image {i} " * 820).encode() if compressible else rng.bytes(8192) for i in range(50)]
    buf = io.BytesIO()
    table = pa.table({"image": images, "label": [i % 2 for i in range(50)]})
    pq.write_table(table, buf, row_group_size=10, compression=compression, use_dictionary=False)
    return buf.getvalue()


def _flipped(data: bytes, start: int, end: int) -> bytes:
    damaged = bytearray(data)
    damaged[start:end] = bytes(b ^ 0xFF for b in damaged[start:end])
    return bytes(damaged)


def _page(data: bytes, group: int) -> int:
    """Where row group ``group``'s image column starts (its first page header)."""
    return pq.ParquetFile(io.BytesIO(data)).metadata.row_group(group).column(0).data_page_offset


def _footer(data: bytes) -> int:
    """Where the footer (thrift FileMetaData) starts: its length sits before the closing magic bytes."""
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little")


def _broken_footer(data: bytes) -> bytes:
    return _flipped(data, _footer(data) + 10, _footer(data) + 60)


def _wrong_footer_length(data: bytes) -> bytes:
    return data[:-8] + (10**8).to_bytes(4, "little") + data[-4:]


def _broken_page_header(data: bytes) -> bytes:
    return _flipped(data, _page(data, 2), _page(data, 2) + 8)


# What pyarrow 25 raises for each kind of damage: ArrowInvalid, or a bare OSError (errno None), never the error a
# failed read raised. The scan makes each one corrupt_shard, keyed by the file or by the first row not read.
PARQUET_DAMAGE = {
    "cut short": (lambda d: d[: len(d) // 2], pa.ArrowInvalid, "magic bytes not found", "a.parquet"),
    "empty": (lambda d: b"", pa.ArrowInvalid, "file size is 0 bytes", "a.parquet"),
    "footer": (_broken_footer, OSError, "Couldn't deserialize thrift", "a.parquet"),
    "footer length": (_wrong_footer_length, pa.ArrowInvalid, "size reported by", "a.parquet"),
    "page header": (_broken_page_header, OSError, "Deserializing page header failed", "a.parquet#20"),
}
DECOMPRESSION = {"snappy": "Corrupt snappy compressed data", "zstd": "ZSTD decompression failed",
                 "gzip": "GZipCodec failed"}  # fmt: skip


def _scan(path: str, root: str) -> list:
    from beam_jobs.sources.records import RecordOptions, scan_parquet

    return list(scan_parquet(path, root, RecordOptions(), with_data=False))


def _pyarrow_error(data: bytes) -> BaseException | None:
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        for group in range(pf.num_row_groups):
            pf.read_row_group(group)
    except Exception as e:  # noqa: BLE001 (the point is which one)
        return e
    return None


@pytest.mark.parametrize("kind", PARQUET_DAMAGE)
def test_damaged_parquet_is_a_dead_letter_as_pyarrow_reports_it(tmp_path, kind):
    damage, error_type, message, key = PARQUET_DAMAGE[kind]
    data = damage(_parquet_bytes())
    error = _pyarrow_error(data)
    assert type(error) is error_type and message in str(error) and getattr(error, "errno", None) is None
    (tmp_path / "a.parquet").write_bytes(data)
    items = _scan(str(tmp_path / "a.parquet"), str(tmp_path) + "/")
    assert [(it.key, it.error) for it in items if it.error] == [(key, "corrupt_shard")]
    assert len(items) == (1 if key == "a.parquet" else 21)  # a damaged page keeps the rows before it


@pytest.mark.parametrize("compression", DECOMPRESSION)
def test_a_page_that_fails_to_decompress_is_a_dead_letter(tmp_path, compression):
    data = _parquet_bytes(compression, compressible=True)
    middle = _page(data, 2) + (_page(data, 3) - _page(data, 2)) // 3  # inside the compressed page, past its header
    data = _flipped(data, middle, middle + 16)
    error = _pyarrow_error(data)
    assert type(error) is OSError and DECOMPRESSION[compression] in str(error) and error.errno is None
    (tmp_path / "a.parquet").write_bytes(data)
    items = _scan(str(tmp_path / "a.parquet"), str(tmp_path) + "/")
    assert [(it.key, it.error) for it in items if it.error] == [("a.parquet#20", "corrupt_shard")]


class ServiceUnavailable(Exception):
    """An object store client's own error (google.api_core's are no OSError)."""

    code = 503


READ_FAILURES = [
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    TimeoutError("The read operation timed out"),
    PermissionError(errno.EACCES, "Permission denied"),
    FileNotFoundError(errno.ENOENT, "No such file or directory"),  # gone between two reads
    OSError("plain"),  # no errno: as bare as pyarrow's own OSErrors for damage
    ServiceUnavailable("503 GET: backend error"),
]


@pytest.fixture
def stored():
    """The in-memory object store (``tests/objectstore.py``), emptied before and after."""
    from tests import objectstore as store

    store.OBJECTS.clear()
    store.FAILURES.clear()
    yield store
    store.OBJECTS.clear()
    store.FAILURES.clear()


def _failing_scan(store, fmt: str, data: bytes, start: int, end: int, error: BaseException):
    """Scans ``data`` as a ``fmt`` file whose reads of ``[start, end)`` fail; returns (items read, error raised)."""
    from beam_jobs.sources.records import SCANNERS, RecordOptions

    path = f"objstore://bucket/src/a.{fmt}"
    store.OBJECTS[path] = (data, 0.0)
    store.FAILURES[path] = (start, end, error)
    items = []
    try:
        for item in SCANNERS[fmt](path, "objstore://bucket/src/", RecordOptions(), with_data=True):
            items.append(item)
    except Exception as e:  # noqa: BLE001 (the point is which one)
        return items, e
    return items, None


def _raised_for(raised, error: BaseException, path_end: str) -> bool:
    from beam_jobs.errors import SourceReadError

    return isinstance(raised, SourceReadError) and raised.__cause__ is error and path_end in str(raised)


@pytest.mark.parametrize("error", READ_FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["footer", "page"])
def test_a_failed_parquet_read_raises_and_dead_letters_nothing(stored, error, where):
    data = _parquet_bytes()
    start = len(data) - 8 if where == "footer" else _page(data, 2)  # the footer, or row group 2 (rows 20-29)
    items, raised = _failing_scan(stored, "parquet", data, start, start + 1, error)
    assert _raised_for(raised, error, "a.parquet") and not [it for it in items if it.error]
    assert len(items) == (0 if where == "footer" else 20)  # the rows read before it were no dead letters either


@pytest.mark.parametrize("error", READ_FAILURES, ids=lambda e: type(e).__name__)
def test_a_failed_read_of_the_class_names_raises_rather_than_dropping_them(stored, error):
    # Without the ClassLabel names every label would be read as a class of its own: another dataset.
    from beam_jobs.sources.records import parquet_class_names

    data = _parquet_bytes()
    stored.OBJECTS["objstore://bucket/src/a.parquet"] = (data, 0.0)
    stored.FAILURES["objstore://bucket/src/a.parquet"] = (len(data) - 8, len(data), error)
    with pytest.raises(Exception) as raised:
        parquet_class_names("objstore://bucket/src/a.parquet", "label")
    assert _raised_for(raised.value, error, "a.parquet")


@pytest.mark.parametrize("error", READ_FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("fmt", ["tfrecord", "tar"])
def test_a_failed_tfrecord_or_webdataset_read_raises_and_dead_letters_nothing(stored, tmp_path, fmt, error):
    rng = np.random.default_rng(12)
    images = [encode(photo_like(rng, 64, 64), "PNG") for _ in range(10)]
    if fmt == "tfrecord":
        data = b"".join(tfrecord_frame(tf_example(image, i % 2)) for i, image in enumerate(images))
    else:
        webdataset(tmp_path / "a.tar", [m for i, image in enumerate(images) for m in
                                        ((f"s{i}.png", image), (f"s{i}.cls", str(i % 2).encode()))])  # fmt: skip
        data = (tmp_path / "a.tar").read_bytes()
    middle = len(data) // 2
    items, raised = _failing_scan(stored, fmt, data, middle, middle + 1, error)
    assert _raised_for(raised, error, f"a.{fmt}") and not [it for it in items if it.error] and 0 < len(items) < 10


def test_a_failed_read_is_remembered_whatever_a_decoder_makes_of_it(stored, tmp_path):
    # Should a decoder swallow the file's error and report damage of its own, check() still says it was a failed read.
    from beam_jobs.errors import SourceReadError
    from beam_jobs.sources.reads import open_source

    path = "objstore://bucket/src/a.bin"
    stored.OBJECTS[path] = (b"0123456789", 0.0)
    stored.FAILURES[path] = (5, 6, ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    with open_source(path) as f:
        assert f.read(5) == b"01234"
        f.check()  # nothing failed yet
        with pytest.raises(SourceReadError):
            f.read(5)
        with pytest.raises(SourceReadError, match="ConnectionResetError"):
            f.check()
    (tmp_path / "local.bin").write_bytes(b"x")
    with open_source(str(tmp_path / "local.bin")) as f:
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"y")  # a probe's answer passes as it is: no failed read
        assert f.failure is None
