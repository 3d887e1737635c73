"""Same inputs, config and seed give the same set of records: across retries, hash seeds and listing order."""

import json
import os
import shutil
import subprocess
import sys

from tests.fixtures import make_folder, read_tfrecords
from tests.test_pipeline_e2e import fingerprint, run
from transforms import expand


def test_retried_bundles_give_the_same_records_without_duplicates(image_folder, tmp_path, cache_dir, monkeypatch):
    a = tmp_path / "a"
    run(a, source=str(image_folder), copies=3, cache_dir=str(cache_dir))
    marked = {"cats/cats_1.png", "dogs/dogs_2.jpg", "owls/owls_3.png"}
    failed: set[str] = set()
    real = expand.expand_image

    def flaky(data, key, *args, **kwargs):
        if key in marked and key not in failed:
            failed.add(key)
            raise RuntimeError(f"injected failure for {key}")
        return real(data, key, *args, **kwargs)

    monkeypatch.setattr(expand, "expand_image", flaky)
    b = tmp_path / "b"
    manifest = run(b, source=str(image_folder), copies=3, cache_dir=str(cache_dir),
                   pipeline_args=["--runner=BundleBasedDirectRunner"])  # fmt: skip
    assert failed == marked  # every marked element failed once, and its bundle was retried
    rows = read_tfrecords(b)
    assert len(rows) == len({(r["source_key"], int(r["copy_index"])) for r in rows}) == 36
    assert fingerprint(b) == fingerprint(a) and manifest["counts"]["records_out"] == 36


def test_python_hash_seed_does_not_change_the_records(image_folder, tmp_path):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"h{seed}"
        cmd = [sys.executable, "-m", "beam_jobs.cli", "run", "--source", str(image_folder), "--output", str(out),
               "--copies", "2", "--no-progress", "--policy", "randaugment"]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
        outs.append(fingerprint(out))
    assert outs[0] == outs[1]


def test_listing_order_does_not_matter(tmp_path, cache_dir):
    a = make_folder(tmp_path / "a" / "animals")
    b = tmp_path / "b" / "animals"
    for path in sorted(a.rglob("*.*"), reverse=True):  # created in the opposite order
        target = b / path.relative_to(a)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    run(tmp_path / "oa", source=str(a), copies=2, cache_dir=str(cache_dir))
    run(tmp_path / "ob", source=str(b), copies=2, cache_dir=str(cache_dir))
    assert fingerprint(tmp_path / "oa") == fingerprint(tmp_path / "ob")
    ma = json.loads((tmp_path / "oa" / "beam_expand.json").read_text())["listing"]["images"]
    mb = json.loads((tmp_path / "ob" / "beam_expand.json").read_text())["listing"]["images"]
    drop_mtime = lambda entries: [{k: v for k, v in e.items() if k != "mtime"} for e in entries]  # noqa: E731
    assert drop_mtime(ma) == drop_mtime(mb)
