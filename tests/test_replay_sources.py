"""``beam-expand replay`` finds a copy's source again the way the run read it, for every kind of source the job reads.

Replay once treated every source that was not an image folder as an archive: a list file crashed with
``tarfile.ReadError``, a folder of Parquet or TFRecord files with ``IsADirectoryError``. A source that is gone is
one error saying what to pass, never a traceback.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs.cli import main
from beam_jobs.sinks.writers import tfrecord_frame
from schemas.tf_example import encode_example
from tests.fixtures import encode, make_folder, make_tgz, photo_like, read_parquet


def stored_image(out: Path, key: str, copy_index: int) -> bytes:
    """The encoded image the run stored for one copy (from its Parquet shards)."""
    rows = read_parquet(out).to_pylist()
    (row,) = [r for r in rows if r["source_key"] == key and r["copy_index"] == copy_index and not r["view_index"]]
    return row["image"]["bytes"]


def assert_replays_exactly(capsys, out: str, key: str, stored: bytes, tmp_path: Path, *extra: str) -> None:
    """Replays copy 1 of ``key`` through the CLI and checks it is the stored copy, byte for byte."""
    copy = tmp_path / "replayed"
    capsys.readouterr()
    code = main(["replay", out, "--source-key", key, "--copy-index", "1", "--out", str(copy), *extra])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "bit-exact" in printed.out and copy.read_bytes() == stored


def _images(n: int = 4) -> list[bytes]:
    rng = np.random.default_rng(7)
    return [encode(photo_like(rng, 16, 20), "PNG") for _ in range(n)]


def _image_files(root: Path) -> None:
    (root / "imgs").mkdir()
    for i, data in enumerate(_images()):
        (root / "imgs" / f"{i}.png").write_bytes(data)


def _list_csv(root: Path) -> tuple[list[str], str]:
    _image_files(root)
    (root / "labels.csv").write_text("path,label\nimgs/0.png,cat\nimgs/1.png,dog\nimgs/2.png,cat\nimgs/3.png,dog\n")
    return ["--source", str(root / "labels.csv"), "--source-format", "list"], "imgs/2.png"


def _list_jsonl(root: Path) -> tuple[list[str], str]:
    _image_files(root)
    rows = ['{"path": "imgs/3.png", "label": "dog"}', '{"path": "imgs/1.png", "label": "cat"}']
    (root / "labels.jsonl").write_text("\n".join(rows) + "\n")
    return ["--source", str(root / "labels.jsonl")], "imgs/1.png"


def _tfrecord_folder(root: Path) -> tuple[list[str], str]:
    def example(data: bytes, label: int) -> bytes:
        return encode_example({"image": data, "label": label, "label_name": "", "source_key": "", "copy_index": 0,
                               "view_index": 0, "recipe": "", "height": 16, "width": 20})  # fmt: skip

    (root / "tfr").mkdir()
    images = _images()
    for name, part in (("a.tfrecord", images[:2]), ("b.tfrecord", images[2:])):
        (root / "tfr" / name).write_bytes(b"".join(tfrecord_frame(example(d, i % 2)) for i, d in enumerate(part)))
    return ["--source", str(root / "tfr")], "b.tfrecord#1"


def _parquet_file(root: Path) -> tuple[list[str], str]:
    pq.write_table(pa.table({"img": _images(), "cls": ["b", "a", "b", "a"]}), root / "plain.parquet")
    columns = ["--image-column", "img", "--label-column", "cls"]  # read as the run read it: with its own columns
    return ["--source", str(root / "plain.parquet"), *columns], "plain.parquet#2"


def _parquet_folder(root: Path) -> tuple[list[str], str]:
    (root / "pq").mkdir()
    images = _images()
    pq.write_table(pa.table({"image": images[:2], "label": [0, 1]}), root / "pq" / "a.parquet")
    pq.write_table(pa.table({"image": images[2:], "label": [1, 0]}), root / "pq" / "b.parquet")
    return ["--source", str(root / "pq")], "b.parquet#1"


def _csv_pixels(root: Path) -> tuple[list[str], str]:
    rng = np.random.default_rng(8)
    rows = ["label," + ",".join(f"pixel{i}" for i in range(1, 65))]
    rows += [",".join([str(k % 2)] + [str(v) for v in rng.integers(0, 256, 64)]) for k in range(3)]
    (root / "sign.csv").write_text("\n".join(rows) + "\n")
    return ["--source", str(root / "sign.csv"), "--image-shape", "8,8,1"], "sign.csv#2"


def _webdataset(root: Path) -> tuple[list[str], str]:
    images = _images()
    members = [("s0.png", images[0]), ("s0.cls", b"1"), ("s1.png", images[1]), ("s1.cls", b"0")]
    with tarfile.open(root / "shard-000.tar", "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return ["--source", str(root / "shard-000.tar"), "--source-format", "tar"], "shard-000.tar/s1"


def _archive(root: Path) -> tuple[list[str], str]:
    make_folder(root / "folder", per_class=2)  # packed under a root folder, as flower_photos.tgz is
    return ["--source", str(make_tgz(root / "folder", root / "photos.tgz"))], "dogs/dogs_1.png"


def _named_dataset(root: Path) -> tuple[list[str], str]:
    return ["--dataset", "shapes", "--cache-dir", str(root / "cache"), "--classes", "star", "--limit", "2"], ""


SOURCES: dict[str, Callable[[Path], tuple[list[str], str]]] = {
    "list-csv": _list_csv,
    "list-jsonl": _list_jsonl,
    "tfrecord-folder": _tfrecord_folder,
    "parquet-file": _parquet_file,
    "parquet-folder": _parquet_folder,
    "csv-pixels": _csv_pixels,
    "webdataset": _webdataset,
    "archive": _archive,
    "named-dataset": _named_dataset,
}


def run_source(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """Builds a small source of ``kind``, runs the job on it (2 copies) and returns the output and a key to replay."""
    src = tmp_path / "src"
    src.mkdir()
    flags, key = SOURCES[kind](src)
    out = tmp_path / "out"
    assert main(["run", *flags, "--output", str(out), "--copies", "2", "--no-progress"]) == 0
    if not key:  # a named dataset: any key it wrote
        key = read_parquet(out)["source_key"][0].as_py()
    return out, key


@pytest.mark.parametrize("kind", list(SOURCES))
def test_a_copy_of_every_kind_of_source_replays_bit_exactly(kind, tmp_path, capsys):
    out, key = run_source(tmp_path, kind)
    assert_replays_exactly(capsys, str(out), key, stored_image(out, key, 1), tmp_path)


def test_a_moved_record_source_is_named_with_source_and_a_gone_one_is_one_clear_error(tmp_path, capsys):
    out, key = run_source(tmp_path, "parquet-folder")
    moved = tmp_path / "moved"
    (tmp_path / "src" / "pq").rename(moved)
    capsys.readouterr()
    assert main(["replay", str(out), "--source-key", key, "--copy-index", "1"]) == 2
    err = capsys.readouterr().err
    assert "is gone" in err and "pass --source" in err and "Traceback" not in err
    assert_replays_exactly(capsys, str(out), key, stored_image(out, key, 1), tmp_path, "--source", str(moved))

    pq.write_table(pa.table({"image": _images(1), "label": [0]}), moved / "b.parquet")  # rewritten: one row now
    assert main(["replay", str(out), "--source-key", key, "--copy-index", "1", "--source", str(moved)]) == 2
    assert "no usable record 'b.parquet#1'" in capsys.readouterr().err


def test_a_listed_image_or_an_archive_that_is_gone_is_one_clear_error(tmp_path, capsys):
    out, key = run_source(tmp_path, "list-csv")
    (tmp_path / "src" / key).unlink()
    capsys.readouterr()
    assert main(["replay", str(out), "--source-key", key, "--copy-index", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'src' / key} is gone or unreadable" in err and "list file" in err

    shutil.rmtree(tmp_path / "src")
    shutil.rmtree(out)
    out, key = run_source(tmp_path, "archive")
    (tmp_path / "src" / "photos.tgz").unlink()
    capsys.readouterr()
    assert main(["replay", str(out), "--source-key", key, "--copy-index", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot read archive" in err and "pass --source" in err and "Traceback" not in err
