"""Sources: folder listing rules, streamed archives with hostile member names, and verified downloads."""

import gzip
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from beam_jobs.errors import UserError
from beam_jobs.sources import datasets
from beam_jobs.sources.archive import list_archive, safe_name
from beam_jobs.sources.datasets import RemoteDataset, resolve
from beam_jobs.sources.listing import list_folder, select
from tests.fixtures import make_folder, make_tgz


def test_folder_listing_sorts_classes_and_reports_other_files(image_folder):
    (image_folder / "stray.jpg").write_bytes(b"x")
    (image_folder / "owls" / ".DS_Store").write_bytes(b"x")
    (image_folder / "owls" / "labels.csv").write_text("x")
    (image_folder / "cats" / "nested").mkdir()
    (image_folder / "cats" / "nested" / "deep.jpg").write_bytes(b"x")
    listing = list_folder(str(image_folder))
    assert listing.class_names == ["cats", "dogs", "owls"]
    assert listing.per_class() == {"cats": 5, "dogs": 4, "owls": 4}
    assert "cats/nested/deep.jpg" in {s.key for s in listing.images}
    assert set(listing.ignored) == {"stray.jpg", "owls/.DS_Store"} and listing.skipped == ["owls/labels.csv"]
    assert all(not s.key.startswith("/") for s in listing.images)


def test_limit_is_a_stable_sample_and_classes_reindex(image_folder):
    listing = list_folder(str(image_folder))
    a = select(listing, None, 5)
    assert [s.key for s in a.images] == [s.key for s in select(listing, None, 5).images] and len(a.images) == 5
    b = select(listing, ["owls", "dogs"], None)
    assert b.class_names == ["dogs", "owls"] and {s.label for s in b.images if s.label_name == "owls"} == {1}
    with pytest.raises(UserError, match="unknown class"):
        select(listing, ["zebras"], None)


@pytest.mark.parametrize(
    ("name", "safe"),
    [("a/b.jpg", "a/b.jpg"), ("./a//b.jpg", "a/b.jpg"), ("../x.jpg", None), ("/abs/x.jpg", None),
     ("a/../../x.jpg", None), ("C:\\x.jpg", None)],
)  # fmt: skip
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_archive_listing_ignores_hostile_members(image_folder, tmp_path):
    tgz = tmp_path / "evil.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for path in sorted(image_folder.rglob("*.jpg")):
            tar.add(path, arcname=f"root/{path.relative_to(image_folder).as_posix()}")
        for name in ["../escape.jpg", "/abs/x.jpg", "root/__MACOSX/cats/._a.jpg"]:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("root/cats/link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    listing, prefix, _ = list_archive(str(tgz))
    assert prefix == "root/"  # hostile names are set aside before the root folder is found
    assert listing.class_names == ["cats", "dogs", "owls"] and len(listing.images) == 6
    assert {"../escape.jpg", "/abs/x.jpg", "root/cats/link.jpg", "__MACOSX/cats/._a.jpg"} <= set(listing.ignored)
    assert not (tmp_path / "escape.jpg").exists() and not Path("/abs").exists()


@pytest.mark.parametrize("junk", ["__MACOSX/flower_photos/daisy/._daisy_0.jpg", "README.txt", ".DS_Store"])
def test_junk_beside_the_root_folder_does_not_hide_it(tmp_path, junk):
    """A ``__MACOSX/`` folder or a file beside ``flower_photos/`` is ignored and listed; classes stay the folders."""
    folder = make_folder(tmp_path / "src", classes=("daisy", "roses"), per_class=3)
    tgz = make_tgz(folder, tmp_path / "a.tgz")
    with tarfile.open(tgz) as src, tarfile.open(tmp_path / "b.tgz", "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo(junk)
        info.size = 4
        dst.addfile(info, io.BytesIO(b"junk"))
    listing, prefix, _ = list_archive(str(tmp_path / "b.tgz"))
    assert prefix == "flower_photos/" and listing.class_names == ["daisy", "roses"]
    assert listing.per_class() == {"daisy": 3, "roses": 3} and junk in listing.ignored


@pytest.mark.parametrize("extra", [None, "README.md"])
def test_an_archive_of_one_class_folder_is_that_class(tmp_path, extra):
    """``cats/*.jpg`` (with or without a file beside it): a folder is a root only with class folders beneath it."""
    folder = make_folder(tmp_path / "src", classes=("cats",), per_class=3)
    if extra:
        (folder / extra).write_bytes(b"notes")
    with tarfile.open(tmp_path / "one.tgz", "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix())
    listing, prefix, _ = list_archive(str(tmp_path / "one.tgz"))
    assert prefix == "" and listing.class_names == ["cats"] and listing.per_class() == {"cats": 3}


class _Server:
    def __init__(self, directory: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.RequestHandlerClass.log_message = lambda *a: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served_archive(image_folder, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    tgz = make_tgz(image_folder, www / "flower_photos.tgz", extra={"LICENSE.txt": b"credits"})
    with _Server(www) as server:
        yield server, tgz


def _pin(monkeypatch, url: str, data: bytes, sha256: str | None = None):
    spec = RemoteDataset(url, "flower_photos.tgz", len(data), sha256 or hashlib.sha256(data).hexdigest(), "d", "h")
    monkeypatch.setitem(datasets.DATASETS, "flowers", spec)


def test_download_verifies_caches_and_reuses(served_archive, cache_dir, monkeypatch):
    server, tgz = served_archive
    _pin(monkeypatch, server.url("flower_photos.tgz"), tgz.read_bytes())
    first = resolve("flowers", None, None, str(cache_dir))
    assert first.kind == "archive" and Path(first.path).read_bytes() == tgz.read_bytes()
    listing, prefix, license_bytes = list_archive(first.path)
    assert prefix == "flower_photos/" and license_bytes == b"credits" and len(listing.images) == 12
    server.httpd.shutdown()  # a second resolve must use (and re-verify) the cache, not the network
    assert resolve("flowers", None, None, str(cache_dir)).path == first.path


def test_checksum_mismatch_fails_clearly_and_caches_nothing(served_archive, cache_dir, monkeypatch):
    server, tgz = served_archive
    _pin(monkeypatch, server.url("flower_photos.tgz"), tgz.read_bytes(), sha256="0" * 64)
    with pytest.raises(UserError, match="failed verification: sha256 is .*nothing was cached.*SOURCE="):
        resolve("flowers", None, None, str(cache_dir))
    assert not [f for f in (cache_dir / "downloads").iterdir()]


def test_unreachable_url_names_source_as_the_way_out(cache_dir, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    _pin(monkeypatch, f"http://127.0.0.1:{port}/flower_photos.tgz", b"x")
    with pytest.raises(UserError, match="cannot reach .*SOURCE="):
        resolve("flowers", None, None, str(cache_dir))


def test_source_overrides_and_custom_sha(served_archive, cache_dir, tmp_path):
    server, tgz = served_archive
    # A mirror URL is not held to the official checksum ...
    assert resolve("flowers", server.url("flower_photos.tgz"), None, str(cache_dir)).kind == "archive"
    # ... unless --sha256 is given.
    with pytest.raises(UserError, match="sha256"):
        resolve("flowers", str(tgz), "f" * 64, str(cache_dir))
    assert resolve("flowers", str(tgz), hashlib.sha256(tgz.read_bytes()).hexdigest(), str(cache_dir)).kind == "archive"
    with pytest.raises(UserError, match="does not exist"):
        resolve("flowers", str(tmp_path / "nope"), None, str(cache_dir))
    with pytest.raises(UserError, match="unknown dataset 'tulips'"):
        resolve("tulips", None, None, str(cache_dir))


def test_shapes_is_generated_deterministically(tmp_path):
    a = resolve("shapes", None, None, str(tmp_path / "a"))
    b = resolve("shapes", None, None, str(tmp_path / "b"))
    files = sorted(p.relative_to(a.path) for p in Path(a.path).rglob("*.png"))
    assert len(files) == 300 and len({f.parts[0] for f in files}) == 6
    assert all((Path(a.path) / f).read_bytes() == (Path(b.path) / f).read_bytes() for f in files[::37])
    assert not os.listdir(tmp_path / "a") == []


def _oxford_archive(path, numbers, top="jpg"):
    from tests.fixtures import encode, photo_like

    with tarfile.open(path, "w:gz") as tar:
        for n in numbers:
            data = encode(photo_like(__import__("numpy").random.default_rng(n), 24, 32), "JPEG")
            info = tarfile.TarInfo(f"{top}/image_{n:04d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_flowers17_labels_come_from_the_image_number(tmp_path, cache_dir, monkeypatch):
    from tests.test_pipeline_e2e import read_tfrecords, run

    www = tmp_path / "www"
    www.mkdir()
    tgz = _oxford_archive(www / "17flowers.tgz", [1, 80, 81, 1360])
    with _Server(www) as server:
        spec = RemoteDataset(server.url("17flowers.tgz"), "17flowers.tgz", None,
                             hashlib.sha256(tgz.read_bytes()).hexdigest(), "d", "h", labels="flowers17")  # fmt: skip
        monkeypatch.setitem(datasets.DATASETS, "flowers17", spec)
        manifest = run(tmp_path / "out", dataset="flowers17", copies=1, cache_dir=str(cache_dir))
    labels = {r["source_key"]: r["label_name"] for r in read_tfrecords(tmp_path / "out")}
    assert labels == {"image_0001.jpg": "daffodil", "image_0080.jpg": "daffodil", "image_0081.jpg": "snowdrop",
                      "image_1360.jpg": "pansy"}  # fmt: skip
    assert len(manifest["class_names"]) == 17


def test_a_damaged_oxford_archive_keeps_the_images_before_the_damage_and_says_so(tmp_path, cache_dir):
    from tests.test_pipeline_e2e import run

    tgz = _oxford_archive(tmp_path / "whole.tgz", range(1, 21))
    tar = gzip.decompress(tgz.read_bytes())
    header = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()[16].offset
    damaged = tmp_path / "17flowers.tgz"  # a flipped byte in a member's header: tarfile stops there, in silence
    damaged.write_bytes(gzip.compress(tar[: header + 3] + bytes([tar[header + 3] ^ 0xFF]) + tar[header + 4 :]))
    manifest = run(tmp_path / "out", dataset="flowers17", source=str(damaged), copies=1, cache_dir=str(cache_dir))
    c = manifest["counts"]
    assert c["images_in"] == 16 == c["images_ok"] + c["dead_letters"]
    assert "archive damaged after 16 members" in manifest["listing"]["problems"][0]


def test_flowers102_labels_and_official_splits_from_mat_files(tmp_path, cache_dir, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    from tests.test_pipeline_e2e import read_tfrecords, run

    www = tmp_path / "www"
    www.mkdir()
    tgz = _oxford_archive(www / "102flowers.tgz", [1, 2, 3, 4])
    scipy_io.savemat(www / "imagelabels.mat", {"labels": [[77, 1, 102, 77]]})
    scipy_io.savemat(www / "setid.mat", {"trnid": [[1, 3]], "valid": [[2]], "tstid": [[4]]}, do_compression=True)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    with _Server(www) as server:
        extras = tuple((n, server.url(n), (www / n).stat().st_size, digest(www / n))
                       for n in ("imagelabels.mat", "setid.mat"))  # fmt: skip
        spec = RemoteDataset(server.url("102flowers.tgz"), "102flowers.tgz", tgz.stat().st_size, digest(tgz), "d",
                             "h", labels="flowers102", extras=extras)  # fmt: skip
        monkeypatch.setitem(datasets.DATASETS, "flowers102", spec)
        manifest = run(tmp_path / "out", dataset="flowers102", copies=2, cache_dir=str(cache_dir))
    rows = read_tfrecords(tmp_path / "out")
    names = manifest["class_names"]
    assert len(names) == 102 and names[0] == "pink primrose"
    by_key = {}
    for r in rows:
        by_key.setdefault(r["source_key"], []).append(r)
    assert by_key["image_0001.jpg"][0]["label_name"] == names[76] and by_key["image_0003.jpg"][0]["label"] == 101
    assert manifest["counts"]["per_split"] == {
        "train": {"images_ok": 2, "records_out": 4},  # augmented
        "validation": {"images_ok": 1, "records_out": 1},  # originals only
        "test": {"images_ok": 1, "records_out": 1},
    }
