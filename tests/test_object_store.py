"""A run whose source and output are on an object store (GCS/S3 semantics, in memory: ``tests/objectstore.py``).

Object stores have no folders: a folder source or output "exists" only as a prefix, and a folder is deleted only
as a prefix. Both were missed before (``--source gs://bucket/folder`` was refused as missing, ``--output`` was never
found non-empty, and the run's ``.tmp`` was published with the dataset).
"""

import hashlib
import os
import shutil
import time

import numpy as np
import pytest

from beam_jobs import paths
from beam_jobs.cli import main
from tests import objectstore as store
from tests.fixtures import encode, make_tgz, photo_like, read_parquet
from tests.test_pipeline_e2e import fingerprint
from tests.test_replay_sources import assert_replays_exactly, stored_image

SRC, OUT = "objstore://bucket/photos", "objstore://bucket/expanded"


@pytest.fixture
def objects(image_folder):
    store.OBJECTS.clear()
    store.FAILURES.clear()
    store.upload_folder(image_folder, SRC)
    yield store.OBJECTS
    store.OBJECTS.clear()
    store.FAILURES.clear()


def _run(source: str, output: str, *extra: str) -> int:
    return main(["run", "--source", source, "--output", output, "--copies", "2", "--no-progress", *extra])


def test_a_run_reads_and_writes_an_object_store_as_it_does_a_disk(objects, image_folder, tmp_path, capsys):
    assert _run(SRC, OUT, "--records-per-shard", "5") == 0
    assert _run(str(image_folder), str(tmp_path / "local"), "--records-per-shard", "5") == 0
    keys = store.download_folder(OUT, tmp_path / "remote")
    # Only the dataset was published: nothing temporary, no staging left beside it.
    assert not [k for k in keys if k.startswith(".tmp") or "/plan/" in k]
    assert not [p for p in objects if ".staging-" in p or ".old-" in p]
    assert {"beam_expand.json", "_SUCCESS", "report.html"} <= set(keys)
    assert (
        fingerprint(tmp_path / "remote") == fingerprint(tmp_path / "local")
        and len(fingerprint(tmp_path / "local")) == 24
    )
    assert main(["verify", OUT]) == 0
    capsys.readouterr()

    # A non-empty output is refused without --overwrite; with it, the new dataset replaces every old object.
    assert _run(SRC, OUT) == 2
    assert "is not empty" in capsys.readouterr().err
    assert _run(SRC, OUT, "--overwrite") == 0
    shards = sorted(k for k in store.download_folder(OUT, tmp_path / "again") if ".tfrecord-" in k)
    assert shards == ["photos-train.tfrecord-00000-of-00001"]
    assert read_parquet(tmp_path / "again").num_rows == 24
    assert main(["verify", OUT]) == 0


def test_every_format_and_command_works_on_an_object_store(objects, tmp_path, capsys):
    formats = "tfrecord,parquet,webdataset,imagefolder"
    assert _run(SRC, OUT, "--formats", formats) == 0
    keys = store.download_folder(OUT, tmp_path / "remote")
    assert len([k for k in keys if k.startswith("images/train/")]) == 24
    assert [k for k in keys if k.endswith(".tar")] == ["photos-train-00000-of-00001.tar"]
    capsys.readouterr()
    assert main(["info", OUT]) == 0 and "24 records in 1 imagefolder" in capsys.readouterr().out
    assert main(["verify", OUT]) == 0 and main(["report", OUT]) == 0
    capsys.readouterr()
    replay = ["replay", OUT, "--source-key", "dogs/dogs_1.png", "--copy-index", "2", "--out", str(tmp_path / "c")]
    assert main(replay) == 0 and "bit-exact" in capsys.readouterr().out  # the source read back from the store too
    assert main(["preview", "--source", SRC, "-n", "2", "--out", str(tmp_path / "p.png")]) == 0


def test_archive_and_record_sources_on_an_object_store(objects, image_folder, tmp_path, capsys):
    tgz = make_tgz(image_folder, tmp_path / "photos.tgz")
    objects["objstore://bucket/photos.tgz"] = (tgz.read_bytes(), 0.0)
    assert _run("objstore://bucket/photos.tgz", OUT) == 0
    assert _run(str(tgz), str(tmp_path / "local")) == 0
    store.download_folder(OUT, tmp_path / "remote")
    assert fingerprint(tmp_path / "remote") == fingerprint(tmp_path / "local")
    stored = stored_image(tmp_path / "remote", "dogs/dogs_1.png", 1)
    assert_replays_exactly(capsys, OUT, "dogs/dogs_1.png", stored, tmp_path)  # the member streamed from the store
    # The expanded TFRecord shards, read back from the store as the next job's source (one record = one image).
    assert _run(OUT, "objstore://bucket/again", "--copies", "1") == 0
    assert main(["verify", "objstore://bucket/again"]) == 0
    store.download_folder("objstore://bucket/again", tmp_path / "again")
    assert read_parquet(tmp_path / "again").num_rows == 24  # 24 inputs x 1 copy
    key = f"{next((tmp_path / 'remote').glob('*.tfrecord-*')).name}#5"  # replay finds the record on the store too
    assert_replays_exactly(capsys, "objstore://bucket/again", key, stored_image(tmp_path / "again", key, 1), tmp_path)


def test_a_list_file_on_an_object_store_replays(objects, tmp_path, capsys):
    objects["objstore://bucket/labels.csv"] = (b"photos/dogs/dogs_1.png,dogs\nphotos/cats/cats_0.jpg,cats\n", 0.0)
    assert _run("objstore://bucket/labels.csv", OUT, "--source-format", "list") == 0
    store.download_folder(OUT, tmp_path / "remote")
    stored = stored_image(tmp_path / "remote", "photos/dogs/dogs_1.png", 1)
    assert_replays_exactly(capsys, OUT, "photos/dogs/dogs_1.png", stored, tmp_path)


def test_folder_markers_and_pattern_characters_are_no_trouble(objects, image_folder, tmp_path):
    # The GCS console and TensorFlow's gfile make empty "folder/" objects: an empty output folder is still empty, and
    # a source folder with a marker is still a folder. "[" and "*" in names are characters, not patterns.
    objects["objstore://bucket/fresh/"] = (b"", 0.0)
    assert _run(SRC, "objstore://bucket/fresh") == 0
    odd = "objstore://bucket/photos [v1]*"
    store.upload_folder(image_folder, odd)
    objects[odd + "/"] = (b"", 0.0)
    assert _run(odd, "objstore://bucket/odd") == 0
    assert main(["verify", "objstore://bucket/odd"]) == 0
    assert _run(odd + "/", "objstore://bucket/odd") == 2  # not empty now: refused without --overwrite
    # A marker listed before the files does not hide them; a local folder's name is literal too.
    objects["objstore://bucket/nested/sub/"] = (b"", 0.0)
    objects["objstore://bucket/nested/sub/f.jpg"] = (b"x", 0.0)
    assert paths.exists("objstore://bucket/nested") and paths.is_dir("objstore://bucket/nested")
    assert [m.path for m in paths.files_under("objstore://bucket/nested", limit=1)] == [
        "objstore://bucket/nested/sub/f.jpg"
    ]
    local = tmp_path / "photos [v1]"
    shutil.copytree(image_folder, local)
    assert _run(str(local), str(tmp_path / "out")) == 0 and main(["verify", str(tmp_path / "out")]) == 0


def test_an_object_store_output_with_pattern_characters_is_refused(objects, capsys):
    # Beam's GCS filesystem deletes by pattern: --overwrite into "exp[1]/out" deleted "exp1/out"'s objects.
    assert _run(SRC, "objstore://bucket/exp1/out") == 0
    before = {p for p in objects if p.startswith("objstore://bucket/exp1/")}
    capsys.readouterr()
    assert _run(SRC, "objstore://bucket/exp[1]/out") == 2
    assert "cannot hold '*', '?' or '['" in capsys.readouterr().err
    assert {p for p in objects if p.startswith("objstore://bucket/exp1/")} == before


def test_an_object_gone_after_the_listing_is_a_dead_letter(objects, tmp_path, monkeypatch):
    # Object stores raise their own errors on reading a missing object (GCS: NotFound, not an OSError): it is
    # still a dead letter with a reason, not a failed run.
    import json

    from beam_jobs import pipeline

    build = pipeline.build_pipeline

    def build_then_delete(*args, **kwargs):
        out = build(*args, **kwargs)
        del objects[f"{SRC}/cats/cats_1.png"]
        return out

    monkeypatch.setattr(pipeline, "build_pipeline", build_then_delete)
    assert _run(SRC, OUT) == 0
    store.download_folder(OUT, tmp_path / "o")
    dead = [json.loads(line) for line in (tmp_path / "o" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["reason"], d["error_type"]) for d in dead] == [("cats/cats_1.png", "unreadable",
                                                                                "NotFound")]  # fmt: skip
    assert read_parquet(tmp_path / "o").num_rows == 22


def test_passing_trouble_reading_fails_the_run_rather_than_dropping_images(objects, monkeypatch):
    # Throttling or expired credentials say nothing about the image: the bundle fails (Beam retries it; the local
    # runner fails the run), no image is dead-lettered for it.
    class TooManyRequests(Exception):
        code = 429

    def throttled(self, path, *args, **kwargs):
        raise TooManyRequests(f"429 GET {path}: rate limit exceeded")

    monkeypatch.setattr(store.ObjectStoreFileSystem, "open", throttled)
    with pytest.raises(Exception, match="rate limit exceeded"):
        _run(SRC, OUT)
    assert not [p for p in objects if p.startswith(OUT + "/")]  # nothing published


def _parquet_source(objects, image_folder) -> tuple[str, int]:
    """Stores the folder's 12 images as one Parquet file in row groups of 2; returns its path and group 3's offset."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    table = pa.table({"image": [p.read_bytes() for p in files], "label": [p.parent.name for p in files]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=2, use_dictionary=False)
    path = "objstore://bucket/records/a.parquet"
    objects[path] = (buf.getvalue(), 0.0)
    return path, pq.ParquetFile(buf).metadata.row_group(3).column(0).data_page_offset


def test_a_failed_read_of_a_record_source_stops_the_launcher_with_one_clear_error(
    objects, image_folder, tmp_path, capsys
):
    # A reset connection says nothing about the rows: they were dead-lettered as corrupt_shard (a dataset without
    # them was published, or, as here, the source refused as holding no usable record). A rerun reads them all.
    path, group3 = _parquet_source(objects, image_folder)
    store.FAILURES[path] = (group3, group3 + 1, ConnectionResetError(104, "Connection reset by peer"))
    assert _run(path, OUT) == 1
    err = capsys.readouterr().err
    assert f"beam-expand: error: cannot read {path} (ConnectionResetError: [Errno 104]" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not [p for p in objects if p.startswith(OUT + "/")]
    store.FAILURES.clear()  # the storage answers again: the same command reads every row
    assert _run(path, OUT) == 0
    store.download_folder(OUT, tmp_path / "o")
    assert len(set(read_parquet(tmp_path / "o").column("source_key").to_pylist())) == 12
    assert not (tmp_path / "o" / "dead_letter.jsonl").read_text().strip()


def test_a_failed_read_of_a_record_file_in_a_worker_fails_the_bundle_not_the_rows(
    objects, image_folder, monkeypatch, capsys
):
    # The listing read the file; the worker's read breaks off: no row becomes a dead letter, the bundle fails (Beam
    # retries it; the local runner fails the run) and nothing is published.
    from beam_jobs import pipeline

    path, group3 = _parquet_source(objects, image_folder)
    build = pipeline.build_pipeline

    def build_then_fail_reads(*args, **kwargs):
        out = build(*args, **kwargs)
        store.FAILURES[path] = (group3, group3 + 1, TimeoutError("The read operation timed out"))
        return out

    monkeypatch.setattr(pipeline, "build_pipeline", build_then_fail_reads)
    assert _run(path, OUT) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"beam-expand: error: cannot read {path} (TimeoutError: The read operation timed out)")
    assert not [p for p in objects if p.startswith(OUT + "/")]


def test_a_bucket_is_a_source_but_not_an_output(objects, image_folder, capsys):
    store.upload_folder(image_folder, "objstore://photos-bucket")
    assert _run("objstore://photos-bucket", OUT) == 0
    assert main(["verify", OUT]) == 0
    capsys.readouterr()
    assert _run(SRC, "objstore://some-bucket/") == 2
    assert "is a whole bucket: give a folder in it" in capsys.readouterr().err
    # A bucket of TFRecord shards (one copied from the dataset just written) is a record source.
    shard = next(p for p in objects if p.startswith(OUT + "/") and ".tfrecord-" in p)
    objects["objstore://shards-bucket/data.tfrecord"] = objects[shard]
    assert _run("objstore://shards-bucket", "objstore://bucket/from-shards") == 0
    assert main(["verify", "objstore://bucket/from-shards"]) == 0


def test_a_missing_object_store_source_is_one_clear_error(objects, capsys):
    assert _run("objstore://bucket/nothing-here", OUT) == 2
    assert "--source objstore://bucket/nothing-here does not exist" in capsys.readouterr().err


def test_a_list_file_on_an_object_store_reads_paths_above_its_folder(objects, tmp_path):
    # "../photos/x.png" was read as the object "lists/../photos/x.png", which no store holds: all unreadable.
    import json

    rows = ["../photos/cats/cats_0.jpg", "./../photos/dogs/dogs_1.png", "../photos/./cats/cats_0.jpg"]
    text = "".join(json.dumps({"path": p, "label": p.split("/")[-2]}) + "\n" for p in rows)
    objects["objstore://bucket/lists/labels.jsonl"] = (text.encode(), 0.0)
    assert _run("objstore://bucket/lists/labels.jsonl", OUT) == 0
    store.download_folder(OUT, tmp_path / "o")
    dead = [json.loads(line) for line in (tmp_path / "o" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["reason"]) for d in dead] == [("labels.jsonl#3", "duplicate_key")]
    keys = sorted(set(read_parquet(tmp_path / "o")["source_key"].to_pylist()))
    assert keys == ["../photos/cats/cats_0.jpg", "../photos/dogs/dogs_1.png"]


def test_a_list_naming_only_missing_objects_publishes_nothing(objects, capsys):
    # Objects are not looked at before the run: every one was an `unreadable` dead letter, and the empty dataset
    # was published with exit 0. The refused run's dead letters are kept on the store beside the output.
    import json

    text = "".join(json.dumps({"path": f"gone/{i}.jpg", "label": "cats"}) + "\n" for i in range(3))
    objects["objstore://bucket/lists/labels.jsonl"] = (text.encode(), 0.0)
    assert _run("objstore://bucket/lists/labels.jsonl", OUT) == 1
    err = capsys.readouterr().err
    kept = f"{OUT}.refused/dead_letter.jsonl"
    assert "all 3 inputs were dead-lettered" in err and "3 unreadable" in err and f"is in {kept}" in err
    assert not [p for p in objects if p.startswith(OUT + "/") or ".staging-" in p]
    assert [json.loads(line)["source_key"] for line in objects[kept][0].decode().splitlines()] == [
        "gone/0.jpg", "gone/1.jpg", "gone/2.jpg",
    ]  # fmt: skip
    assert _run(SRC, OUT) == 0 and not [p for p in objects if ".refused" in p]  # gone once the output has a result


ROOT = "objstore://bucket/refreshed"
_HOURS = 3600


def _pointer_in_the_store(monkeypatch):
    """``LATEST`` as an object of the in-memory store, compared and replaced as ``refresh`` does on gs:// (its gs://
    code needs google-cloud-storage's client): everything else of a refresh runs on the store as it is."""
    from beam_jobs import refresh

    def read_latest(root):
        path = root.rstrip("/") + "/LATEST"
        version = store.OBJECTS[path][0].decode().strip() if path in store.OBJECTS else None
        return version, version

    def swap_latest(root, version, expected):
        assert read_latest(root)[1] == expected
        store.OBJECTS[root.rstrip("/") + "/LATEST"] = (version.encode() + b"\n", time.time())

    monkeypatch.setattr(refresh, "read_latest", read_latest)
    monkeypatch.setattr(refresh, "swap_latest", swap_latest)


def _latest(root=ROOT) -> str:
    return store.OBJECTS[root + "/LATEST"][0].decode().strip()


def _version_folders(root=ROOT) -> list[str]:
    prefix = root + "/versions/"
    return sorted({p[len(prefix) :].split("/")[0] for p in store.OBJECTS if p.startswith(prefix)})


def _stage(root, files: dict[str, float], copy_of: str | None = None) -> str:
    """A refresh's staging folder as ``_run_once`` names it (for its own new version): ``files`` maps names to
    their ages in seconds; ``copy_of`` adds a whole version's objects, manifest included, written just now."""
    from beam_jobs import refresh
    from beam_jobs.pipeline import staging_dir

    version = refresh.new_version(hashlib.sha256(str(time.time()).encode()).hexdigest())
    staging = staging_dir(refresh.version_dir(root, version), os.urandom(6).hex())
    for name, age in files.items():
        store.OBJECTS[f"{staging}/{name}"] = (b"x" * 100, time.time() - age)
    if copy_of:
        source = refresh.version_dir(root, copy_of) + "/"
        for path, (data, _) in list(store.OBJECTS.items()):
            if path.startswith(source):
                store.OBJECTS[f"{staging}/{path[len(source) :]}"] = (data, time.time())
    return staging.rsplit("/", 1)[-1]


def test_a_refresh_on_an_object_store_removes_killed_runs_staging_and_prunes_versions_only(
    objects, monkeypatch, capsys
):
    _pointer_in_the_store(monkeypatch)
    assert _run(SRC, ROOT, "--refresh") == 0
    first = _latest()
    killed = _stage(ROOT, {".tmp/plan/part-0": 30 * _HOURS, "photos-train.tfrecord-00000-of-00001": 7 * _HOURS})
    # A refresh in progress: its plan was written long ago, its shards and manifest just now. A folder is judged by
    # its newest object (its plan, judged alone, was deleted under the running job).
    running = _stage(ROOT, {".tmp/plan/part-0": 30 * _HOURS}, copy_of=first)
    objects[SRC + "/cats/new.png"] = (encode(photo_like(np.random.default_rng(9), 48, 64), "PNG"), time.time())
    capsys.readouterr()
    assert _run(SRC, ROOT, "--refresh", "--keep-versions", "2") == 0
    assert "removed 1 abandoned staging folder(s)" in capsys.readouterr().out
    second = _latest()
    # The running refresh's staging (with its manifest) is no version: both real ones are kept.
    assert second != first and _version_folders() == sorted([first, second, running])
    assert not [p for p in objects if killed in p]
    assert f"{ROOT}/versions/{running}/.tmp/plan/part-0" in objects
    assert main(["verify", f"{ROOT}/versions/{second}"]) == 0


def test_clean_stale_on_an_object_store_judges_a_staging_folder_by_its_newest_object(objects):
    from beam_jobs.sinks.publish import clean_stale

    old, new = time.time() - 7 * _HOURS, time.time()
    objects.update({f"{OUT}.staging-dead/.tmp/plan/p": (b"x", old), f"{OUT}.staging-dead/s": (b"x", old),
                    f"{OUT}.staging-live/.tmp/plan/p": (b"x", old), f"{OUT}.staging-live/s": (b"x", new)})  # fmt: skip
    assert clean_stale(OUT) == [f"{OUT}.staging-dead"]
    live = sorted(p for p in objects if ".staging-" in p)
    assert live == [f"{OUT}.staging-live/.tmp/plan/p", f"{OUT}.staging-live/s"]
