"""Refresh mode: versioned outputs, LATEST swapped atomically, no-op reruns, incremental reuse, racing refreshes."""

import hashlib
import json
import os

import pytest

from beam_jobs import refresh
from beam_jobs.cli import main
from beam_jobs.errors import JobFailed
from tests.fixtures import encode, one_clean_line, photo_like, read_tfrecords, run_command
from tests.test_pipeline_e2e import fingerprint


def _refresh(src, root, *extra):
    return main(["run", "--source", str(src), "--output", str(root), "--copies", "2", "--no-progress", "--refresh",
                 *extra])  # fmt: skip


def test_refresh_publishes_versions_and_skips_unchanged_reruns(capsys, image_folder, tmp_path):
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    first = (root / "LATEST").read_text().strip()
    current = root / "current"
    assert current.is_symlink() and len(read_tfrecords(current)) == 24
    assert main(["verify", str(current)]) == 0
    capsys.readouterr()
    assert _refresh(image_folder, root) == 0
    assert "up to date" in capsys.readouterr().out
    assert (root / "LATEST").read_text().strip() == first and len(list((root / "versions").iterdir())) == 1
    (image_folder / "cats" / "new.png").write_bytes(
        encode(photo_like(__import__("numpy").random.default_rng(9), 48, 64), "PNG")
    )
    assert _refresh(image_folder, root) == 0
    second = (root / "LATEST").read_text().strip()
    assert second != first and len(read_tfrecords(root / "current")) == 26
    assert len(read_tfrecords(root / "versions" / first)) == 24  # the earlier version is untouched


def test_incremental_refresh_reuses_unchanged_sources(capsys, image_folder, tmp_path):
    import numpy as np

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    old = fingerprint(root / "current")
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    (image_folder / "owls" / "owls_9.png").write_bytes(encode(photo_like(np.random.default_rng(43), 48, 64), "PNG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    assert "11 unchanged sources reused" in capsys.readouterr().out
    manifest = json.loads((root / "current" / "beam_expand.json").read_text())
    assert len(manifest["reused_sources"]) == 11 and "dogs/dogs_0.jpg" not in manifest["reused_sources"]
    new = fingerprint(root / "current")
    unchanged = {r for r in old if r[0] != "dogs/dogs_0.jpg"}
    assert unchanged <= new and len(new) == 26  # reused copies are byte-identical; changed/new ones re-expanded
    # and a full (non-incremental) expansion of the same inputs gives exactly the same records
    full = tmp_path / "full"
    assert main(["run", "--source", str(image_folder), "--output", str(full), "--copies", "2", "--no-progress"]) == 0
    assert fingerprint(full) == new
    # and the same statistics: the reused sources' pixels count too (they were left out: mean/std of the 2 new images)
    stats = json.loads((root / "current" / "statistics.json").read_text())
    assert stats == json.loads((full / "statistics.json").read_text()) and stats["train"]["images"] == 13


def test_incremental_reuse_counts_sources_under_their_own_class(capsys, image_folder, tmp_path):
    # A label map moves flipped cats to dogs; a reused source whose first copy was flipped is still
    # one image of its own class (it was counted under its first record's class).
    import numpy as np

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "ops": [{"op": "hflip", "p": 0.5}],
                                  "label_map": {"hflip": {"cats": "dogs"}}}))  # fmt: skip
    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental", "--policy", str(policy)) == 0
    (image_folder / "owls" / "owls_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(7), 48, 64), "JPEG"))
    assert _refresh(image_folder, root, "--incremental", "--policy", str(policy)) == 0
    assert "11 unchanged sources reused" in capsys.readouterr().out
    full = tmp_path / "full"
    argv = ["run", "--source", str(image_folder), "--output", str(full), "--copies", "2", "--no-progress"]
    assert main([*argv, "--policy", str(policy)]) == 0
    counts = [json.loads((d / "beam_expand.json").read_text())["counts"]["per_class"] for d in (root / "current", full)]
    assert counts[0] == counts[1]
    assert {n: c["images_ok"] for n, c in counts[0].items()} == {"cats": 4, "dogs": 4, "owls": 4}
    assert counts[0]["cats"]["records_out"] != 8  # some copies did move (else the test would prove nothing)
    assert main(["verify", str(root / "current")]) == 0


def test_incremental_refresh_re_expands_a_relabelled_source(capsys, image_folder, tmp_path):
    # A list file can give the same bytes another label: those records must be made again, not copied.
    images = sorted(image_folder.glob("*/*"))
    listing = tmp_path / "labels.csv"

    def write(relabel: bool):
        rows = [f"{p},{'dogs' if relabel and p == images[0] else p.parent.name}" for p in images]
        listing.write_text("path,label\n" + "\n".join(rows) + "\n")

    write(False)
    root = tmp_path / "root"
    assert _refresh(listing, root, "--incremental", "--source-format", "list") == 0
    write(True)
    capsys.readouterr()
    assert _refresh(listing, root, "--incremental", "--source-format", "list") == 0
    assert f"{len(images) - 1} unchanged sources reused" in capsys.readouterr().out
    records = [r for r in read_tfrecords(root / "current") if r["source_key"].endswith(images[0].name)]
    assert len(records) == 2 and {r["label_name"] for r in records} == {"dogs"}
    assert main(["verify", str(root / "current")]) == 0
    # New bytes under the same path and label: a local list file's images are looked at (size, time) before the run.
    import numpy as np

    images[1].write_bytes(encode(photo_like(np.random.default_rng(5), 48, 64), "PNG" if images[1].suffix == ".png"
                                 else "JPEG"))  # fmt: skip
    capsys.readouterr()
    assert _refresh(listing, root, "--incremental", "--source-format", "list") == 0
    assert f"{len(images) - 1} unchanged sources reused" in capsys.readouterr().out


def _all_records(out):
    """Every record as (key, copy, label, image digest), duplicates kept, sorted."""
    rows = read_tfrecords(out)
    return sorted(
        (r["source_key"], int(r["copy_index"]), int(r["label"]), hashlib.sha256(r["image"]).digest()) for r in rows
    )


def _full_run(src, out, *extra):
    assert main(["run", "--source", str(src), "--output", str(out), "--copies", "2", "--no-progress", *extra]) == 0
    return fingerprint(out)


def test_incremental_balanced_refresh_replans_a_class_that_grew(capsys, image_folder, tmp_path):
    # With --balance a source's K follows the largest class: one more cat gives two dogs and two owls a third copy.
    # Reusing those sources' earlier two copies left dogs and owls short of the cats (8, 8 and 10 records).
    import numpy as np

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental", "--balance") == 0
    (image_folder / "cats" / "cats_9.png").write_bytes(encode(photo_like(np.random.default_rng(7), 48, 64), "PNG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental", "--balance") == 0
    assert "8 unchanged sources reused" in capsys.readouterr().out
    manifest = json.loads((root / "current" / "beam_expand.json").read_text())
    assert {c: v["records_out"] for c, v in manifest["counts"]["per_class"].items()} == {"cats": 10, "dogs": 10,
                                                                                         "owls": 10}  # fmt: skip
    assert fingerprint(root / "current") == _full_run(image_folder, tmp_path / "full", "--balance")


def test_incremental_refresh_over_a_damaged_version_expands_afresh(capsys, image_folder, tmp_path):
    # Unchanged sources' records are copied from the current version's Parquet shards: with a shard gone, they
    # used to get no records at all, and were still listed as reused.
    import numpy as np

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    for shard in (root / "current").glob("*.parquet-*"):
        shard.unlink()
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert "missing or altered Parquet shard(s)" in out and "expanding every source afresh" in out
    manifest = json.loads((root / "current" / "beam_expand.json").read_text())
    assert manifest["reused_sources"] == [] and manifest["counts"]["records_out"] == 24
    assert fingerprint(root / "current") == _full_run(image_folder, tmp_path / "full")


def test_incremental_refresh_dead_letters_an_unchanged_bad_input_again(capsys, image_folder, tmp_path):
    # A dead-lettered input has a content hash but no records: it was "reused" into nothing, and the new version
    # counted 13 inputs, 12 ok and no dead letter.
    import numpy as np

    (image_folder / "owls" / "broken.jpg").write_bytes(b"not an image")
    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    assert "11 unchanged sources reused" in capsys.readouterr().out
    counts = json.loads((root / "current" / "beam_expand.json").read_text())["counts"]
    assert (counts["images_in"], counts["images_ok"], counts["dead_letters"]) == (13, 12, 1)
    dead = [json.loads(line) for line in (root / "current" / "dead_letter.jsonl").read_text().splitlines()]
    assert [d["source_key"] for d in dead] == ["owls/broken.jpg"]


def test_incremental_refresh_of_a_path_listed_twice_matches_a_full_run(capsys, image_folder, tmp_path):
    # Both listings of a path used to take its previous records once: 2 records and one source short. The second
    # listing is now a duplicate_key dead letter, in incremental runs as in full ones.
    images = sorted(image_folder.glob("*/*"))
    listing = tmp_path / "labels.csv"
    rows = [f"{p},{p.parent.name}" for p in images]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    root = tmp_path / "root"
    assert _refresh(listing, root, "--incremental", "--source-format", "list") == 0
    listing.write_text("path,label\n" + "\n".join([*rows, rows[0]]) + "\n")
    capsys.readouterr()
    assert _refresh(listing, root, "--incremental", "--source-format", "list") == 0
    assert f"{len(images)} unchanged sources reused" in capsys.readouterr().out
    counts = json.loads((root / "current" / "beam_expand.json").read_text())["counts"]
    assert (counts["images_in"], counts["images_ok"], counts["dead_letters"], counts["records_out"]) == (13, 12, 1, 24)
    assert main(["verify", str(root / "current")]) == 0
    _full_run(listing, tmp_path / "full", "--source-format", "list")
    assert _all_records(root / "current") == _all_records(tmp_path / "full")


def test_folder_names_with_pattern_characters_are_taken_literally(capsys, image_folder, tmp_path):
    # "[1]" in the root's path was read as a glob: the reuse step found no shards and failed, the report had no
    # samples, and pruning saw no versions.
    import numpy as np

    root = tmp_path / "runs[1]" / "root"
    assert _refresh(image_folder, root, "--incremental", "--keep-versions", "1") == 0
    assert len(list((root / "current" / "report").glob("samples_*.png"))) == 3
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental", "--keep-versions", "1") == 0
    assert "11 unchanged sources reused" in capsys.readouterr().out
    assert len(read_tfrecords(root / "current")) == 24 and len(list((root / "versions").iterdir())) == 1
    assert main(["replay", str(root / "current"), "--source-key", "cats/cats_0.jpg", "--copy-index", "1",
                 "--source", str(image_folder)]) == 0  # fmt: skip


def test_an_up_to_date_refresh_still_fails_over_max_bad_fraction(capsys, image_folder, tmp_path):
    # The threshold is no part of the fingerprint: the rerun said "up to date" and exited 0 over 2 bad inputs of 14.
    (image_folder / "owls" / "broken.jpg").write_bytes(b"not an image")
    (image_folder / "cats" / "empty.png").write_bytes(b"")
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    capsys.readouterr()
    assert _refresh(image_folder, root, "--max-bad-fraction", "0.05") == 1
    assert "2 of 14 inputs were dead-lettered (14.3%), over --max-bad-fraction 0.05" in capsys.readouterr().err
    assert _refresh(image_folder, root, "--max-bad-fraction", "0.2") == 0


def test_a_refresh_whose_every_input_is_bad_keeps_the_current_version(capsys, image_folder, tmp_path):
    # A night on which every image came in broken published an empty version and moved LATEST to it, exit 0.
    import numpy as np

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    current = (root / "LATEST").read_text().strip()
    good = {p: p.read_bytes() for p in image_folder.rglob("*.*")}
    for path in good:
        path.write_bytes(b"<html>503 Service Unavailable</html>")
    args = ["run", "--source", image_folder, "--output", root, "--copies", "2", "--no-progress", "--refresh"]
    done = run_command(*args, "--incremental")
    assert done.returncode == 1
    line = one_clean_line(done.stderr)
    kept = root / "refused" / "dead_letter.jsonl"
    assert "all 12 inputs were dead-lettered" in line and "Reasons: 12 not_an_image" in line
    assert f"Every dead letter is in {kept}" in line and line.endswith(f"LATEST stays at version {current}")
    assert (root / "LATEST").read_text().strip() == current and len(read_tfrecords(root / "current")) == 24
    assert [p.name for p in (root / "versions").iterdir()] == [current]  # no empty version, no staging left
    assert len(kept.read_text().splitlines()) == 12
    for path, data in good.items():
        path.write_bytes(data)
    (image_folder / "cats" / "new.png").write_bytes(encode(photo_like(np.random.default_rng(9), 48, 64), "PNG"))
    assert _refresh(image_folder, root, "--incremental") == 0
    assert (root / "LATEST").read_text().strip() != current and not kept.parent.exists()


def test_an_up_to_date_refresh_over_a_version_without_records_fails(capsys, image_folder, tmp_path):
    # A version published before all-bad runs were refused: the rerun said "up to date" and exited 0.
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    version = root / "current"
    manifest = json.loads((version / "beam_expand.json").read_text())
    manifest["counts"].update(images_ok=0, dead_letters=12, records_out=0)
    (version / "beam_expand.json").write_text(json.dumps(manifest))
    dead = [{"source_key": f"cats/cats_{i}.jpg", "reason": "corrupt", "message": "cut short"} for i in range(12)]
    (version / "dead_letter.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dead))
    capsys.readouterr()
    assert _refresh(image_folder, root) == 1
    err = capsys.readouterr().err
    assert "is up to date" in err and "all 12 inputs were dead-lettered" in err and "12 corrupt" in err
    assert f"Every dead letter is in {root / 'versions' / (root / 'LATEST').read_text().strip()}/dead_letter" in err


def test_a_rewritten_record_file_is_new_input(capsys, image_folder, tmp_path):
    # Records are keyed by their position in a file: a shard rewritten with other images but the same labels used
    # to leave the inputs' fingerprint unchanged ("up to date"), so the refresh kept the stale expansion.
    import shutil

    made, source = tmp_path / "made", tmp_path / "shards"
    assert main(["run", "--source", str(image_folder), "--output", str(made), "--copies", "1", "--no-progress"]) == 0
    source.mkdir()
    shard = next(made.glob("*.tfrecord-*"))
    shutil.copy(shard, source / "data.tfrecord")
    root = tmp_path / "root"
    assert _refresh(source, root) == 0
    before = fingerprint(root / "current")
    # Other copies of the same images: the same labels and count in a shard of the same name.
    assert main(["run", "--source", str(image_folder), "--output", str(made), "--copies", "1", "--no-progress",
                 "--overwrite", "--seed", "9"]) == 0  # fmt: skip
    shutil.copy(next(made.glob("*.tfrecord-*")), source / "data.tfrecord")
    capsys.readouterr()
    assert _refresh(source, root) == 0
    assert "up to date" not in capsys.readouterr().out
    after = fingerprint(root / "current")
    assert len(after) == len(before) == 24 and after != before


def test_two_racing_refreshes_cannot_both_publish(image_folder, tmp_path):
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    latest, token = refresh.read_latest(str(root))
    os.makedirs(root / "versions" / "v-b")
    refresh.swap_latest(str(root), "v-b", token)  # the other refresh wins the race
    with pytest.raises(JobFailed, match="another refresh published v-b"):
        refresh.swap_latest(str(root), "v-c", token)
    assert (root / "LATEST").read_text().strip() == "v-b"


def test_refresh_keeps_a_bounded_number_of_versions(image_folder, tmp_path):
    import numpy as np

    root = tmp_path / "root"
    for i in range(3):
        (image_folder / "cats" / f"extra{i}.png").write_bytes(
            encode(photo_like(np.random.default_rng(i), 48, 64), "PNG")
        )
        assert _refresh(image_folder, root, "--keep-versions", "2") == 0
    versions = sorted(p.name for p in (root / "versions").iterdir())
    assert len(versions) == 2 and (root / "LATEST").read_text().strip() == versions[-1]


def test_damaged_shards_tells_a_missing_shard_from_passing_trouble(monkeypatch):
    manifest = {"shards": {"parquet": [{"file": "a.parquet-00000-of-00001", "bytes": 10}]}}

    def gone(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(refresh, "file_size", gone)
    assert refresh.damaged_shards("root", "v1", manifest) == ["a.parquet-00000-of-00001"]

    def throttled(path):
        raise RuntimeError("503 Slow Down")

    # Throttling is no verdict on the shard: it would turn the run into a full re-expansion; the run fails instead.
    monkeypatch.setattr(refresh, "file_size", throttled)
    with pytest.raises(RuntimeError, match="503"):
        refresh.damaged_shards("root", "v1", manifest)


def test_a_reused_source_without_previous_records_is_a_dead_letter_then_healed(capsys, image_folder, tmp_path):
    # A version that lost a source's records (written by an older beam-expand, its manifest agreeing with its
    # shards) used to make it vanish from every later version: counted in, never ok, never dead.
    import numpy as np

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    _drop_source(root / "current", "cats/cats_0.jpg")
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    assert _refresh(image_folder, root, "--incremental") == 0
    manifest = json.loads((root / "current" / "beam_expand.json").read_text())
    counts = manifest["counts"]
    assert (counts["images_in"], counts["images_ok"], counts["dead_letters"]) == (12, 11, 1)
    assert "cats/cats_0.jpg" not in manifest["reused_sources"]
    dead = [json.loads(line) for line in (root / "current" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["reason"]) for d in dead] == [("cats/cats_0.jpg", "reuse_missing")]
    # the next incremental run expands it afresh
    (image_folder / "owls" / "owls_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(44), 48, 64), "JPEG"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    assert "10 unchanged sources reused" in capsys.readouterr().out
    assert fingerprint(root / "current") == _full_run(image_folder, tmp_path / "full")


def test_incremental_statistics_take_reused_sources_sums_from_the_manifest(image_folder, tmp_path, monkeypatch):
    # Decoding every unchanged source again only for its pixel sums made an incremental run of big photos with
    # --image-size cost about what a full run does.
    import numpy as np

    from beam_jobs.sinks.manifest import read_rows
    from transforms.expand import ExpandFn

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental", "--image-size", "24,32") == 0
    rows = list(read_rows(str(root / "current" / "beam_expand.json")))
    assert len(rows) == 12 and all(len(r["pixel_sums"]) == 7 and r["pixel_sums"][0] == 24 * 32 for r in rows)
    monkeypatch.setattr(ExpandFn, "_sums", lambda self, data: pytest.fail("a reused source was decoded"))
    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(42), 48, 64), "JPEG"))
    assert _refresh(image_folder, root, "--incremental", "--image-size", "24,32") == 0
    _full_run(image_folder, tmp_path / "full", "--image-size", "24,32")
    stats = json.loads((root / "current" / "statistics.json").read_text())
    assert stats == json.loads((tmp_path / "full" / "statistics.json").read_text())


# --- A damaged or incomplete current version: checked before it is trusted, healed by the next refresh ----------


def _parquet_records(out):
    """Every Parquet record of a dataset as (key, copy, view, label, split, image digest), read with pyarrow, sorted."""
    import pyarrow.parquet as pq

    rows = []
    for shard in sorted(out.glob("*.parquet-*")):
        split = shard.name.split(".parquet-")[0].rsplit("-", 1)[1]  # <name>-<split>.parquet-NNNNN-of-NNNNN
        for r in pq.read_table(shard).to_pylist():
            digest = hashlib.sha256(r["image"]["bytes"]).hexdigest()
            rows.append((r["source_key"], r["copy_index"], r["view_index"], r["label"], split, digest))
    return sorted(rows)


def _manifest(out):
    return json.loads((out / "beam_expand.json").read_text())


def _full(src, out, *extra):
    """A full (non-refresh) run's Parquet records, counts and statistics, to compare a refresh version with."""
    assert main(["run", "--source", str(src), "--output", str(out), "--copies", "2", "--no-progress", *extra]) == 0
    return _parquet_records(out), _manifest(out)["counts"], json.loads((out / "statistics.json").read_text())


def _same_as_full(version, full):
    records, counts, stats = full
    assert _parquet_records(version) == records
    assert _manifest(version)["counts"] == counts
    assert json.loads((version / "statistics.json").read_text()) == stats
    assert main(["verify", str(version)]) == 0


def _change_an_image(image_folder, seed=42):
    import numpy as np

    (image_folder / "dogs" / "dogs_0.jpg").write_bytes(encode(photo_like(np.random.default_rng(seed), 48, 64), "JPEG"))


def _flip_bytes(path, start, end):
    data = bytearray(path.read_bytes())
    for i in range(start, end):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))


def _first_parquet_shard(root):
    return sorted((root / "current").glob("*.parquet-*"))[0]


def test_a_parquet_shard_altered_in_place_is_not_reused(capsys, image_folder, tmp_path):
    # Same size, other bytes: the size check passed, its rows were copied into the new version (and that version
    # passed `verify`, its own sha256 taken over the wrong bytes).
    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    shard = _first_parquet_shard(root)
    assert shard.stat().st_size > 3400
    _flip_bytes(shard, 3000, 3400)
    _change_an_image(image_folder)
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert "missing or altered Parquet shard(s)" in out and "expanding every source afresh" in out
    assert _manifest(root / "current")["reused_sources"] == []
    _same_as_full(root / "current", _full(image_folder, tmp_path / "full"))


def _damage_footer(version):
    shard = sorted(version.glob("*.parquet-*"))[0]
    size = shard.stat().st_size
    _flip_bytes(shard, size - 400, size - 8)  # the footer's metadata; its length and "PAR1" stay


def _truncate_dead_letters(version):
    path = version / "dead_letter.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _truncate_manifest(version):
    path = version / "beam_expand.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize(
    "damage, note",
    [
        (_damage_footer, "missing or altered Parquet shard(s)"),
        (_truncate_dead_letters, "dead_letter.jsonl"),
        (_truncate_manifest, "beam_expand.json"),
    ],
    ids=["parquet-footer", "dead-letters", "manifest"],
)
def test_a_damaged_current_version_is_healed_by_the_next_refresh(capsys, image_folder, tmp_path, damage, note):
    # Each gave a traceback (OSError from the reuse step, JSONDecodeError from reading the dead letters or the
    # manifest), and every later scheduled run failed the same way: the version never healed.
    (image_folder / "owls" / "broken.jpg").write_bytes(b"not an image")
    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    damage(root / "current")
    _change_an_image(image_folder)
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert note in out and "expanding every source afresh" in out
    _same_as_full(root / "current", _full(image_folder, tmp_path / "full"))
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0  # healed: the next run has nothing to do
    assert "up to date" in capsys.readouterr().out


def _drop_source(version, key):
    """Removes a source's records from a version's Parquet shards, its manifest agreeing (sizes, counts, sha256).

    As a version written by a beam-expand that lost them: nothing about the shards looks damaged.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from beam_jobs.sinks.manifest import read_json, write_json

    manifest = read_json(str(version / "beam_expand.json"))
    for entry in manifest["shards"]["parquet"]:
        shard = version / entry["file"]
        table = pq.read_table(shard)
        kept = table.filter(pc.field("source_key") != key)
        pq.write_table(kept, shard)
        data = shard.read_bytes()
        entry.update(records=kept.num_rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_json(str(version / "beam_expand.json"), manifest)


def test_a_reuse_missing_source_counts_nowhere_and_is_healed_while_inputs_are_unchanged(capsys, image_folder,
                                                                                         tmp_path):  # fmt: skip
    import shutil

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    _drop_source(root / "current", "cats/cats_0.jpg")
    _change_an_image(image_folder)
    assert _refresh(image_folder, root, "--incremental") == 0
    dead = [json.loads(line) for line in (root / "current" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["reason"]) for d in dead] == [("cats/cats_0.jpg", "reuse_missing")]
    # Its pixel sums were in statistics.json all the same (13 images over 12 sources with records): the statistics
    # are those of a full run over the sources that have records.
    stats = json.loads((root / "current" / "statistics.json").read_text())
    assert stats["train"]["images"] == sum(stats["train"]["classes"]["sources"].values()) == 11
    without = tmp_path / "without"
    shutil.copytree(image_folder, without)
    (without / "cats" / "cats_0.jpg").unlink()
    assert stats == _full(without, tmp_path / "full-without")[2]
    # Inputs unchanged: the version is incomplete, so the next run is no no-op (it said "up to date" for ever).
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "11 unchanged sources reused" in out
    full = _full(image_folder, tmp_path / "full")
    _same_as_full(root / "current", full)
    # A version whose shards were deleted is no up-to-date version either.
    for shard in (root / "current").glob("*-train.*-0*"):
        shard.unlink()
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "expanding every source afresh" in out
    _same_as_full(root / "current", full)


def test_a_plain_refresh_republishes_a_version_that_lost_a_shard(capsys, image_folder, tmp_path):
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    first = (root / "LATEST").read_text().strip()
    next((root / "current").glob("*.tfrecord-*")).unlink()
    capsys.readouterr()
    assert _refresh(image_folder, root) == 0
    assert "up to date" not in capsys.readouterr().out
    assert (root / "LATEST").read_text().strip() != first
    assert len(read_tfrecords(root / "current")) == 24 and main(["verify", str(root / "current")]) == 0


def test_incremental_needs_parquet_among_the_formats(capsys, image_folder, tmp_path):
    # Reuse copies records from the current version's Parquet shards: without them every run re-expanded everything,
    # silently.
    assert _refresh(image_folder, tmp_path / "root", "--incremental", "--formats", "tfrecord") == 2
    err = capsys.readouterr().err
    assert "--incremental" in err and "parquet" in err and "Traceback" not in err
    assert not (tmp_path / "root").exists()


def test_a_changed_op_version_is_no_up_to_date_version(capsys, image_folder, tmp_path, monkeypatch):
    # beam-expand's own version has been 0.1.0 forever: an op whose pixels changed (its version bumped) left the
    # fingerprint unchanged, so a refresh said "up to date", or an incremental one reused the stale records.
    from transforms.registry import registered

    root = tmp_path / "root"
    assert _refresh(image_folder, root, "--incremental") == 0
    for op in registered().values():
        monkeypatch.setattr(op, "version", op.version + 1)
    capsys.readouterr()
    assert _refresh(image_folder, root, "--incremental") == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "reused" not in out


def test_refresh_on_an_object_store_without_its_filesystem_says_what_to_install(capsys, image_folder, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem("gs://bucket/root")
        pytest.skip("the gcp extra is installed here")
    except ValueError:
        pass
    for extra in (["--refresh"], []):
        assert _run_to(image_folder, "gs://bucket/root", *extra) == 2
        err = capsys.readouterr().err
        assert "pip install 'beam-expand[gcp]'" in err and "Traceback" not in err
    assert main(["run", "--source", "gs://bucket/images", "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'beam-expand[gcp]'" in err and "Traceback" not in err


def test_an_s3_output_without_boto3_says_what_to_install(capsys, image_folder):
    # Beam registers its S3 filesystem without boto3, then fails to make its client: a BeamIOError traceback.
    import importlib.util

    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed here")
    assert _run_to(image_folder, "s3://bucket/out") == 2
    err = capsys.readouterr().err
    assert "pip install 'apache-beam[aws]'" in err and "Traceback" not in err
    assert _run_to(image_folder, "s3://bucket/root", "--refresh") == 2  # no atomic pointer swap there anyway
    assert "--refresh supports local paths and gs://" in capsys.readouterr().err


def _run_to(src, output, *extra):
    return main(["run", "--source", str(src), "--output", output, "--copies", "2", "--no-progress", *extra])


_HOURS = 3600


def _staging_of_a_run(root, age_s, manifest_from=None):
    """A refresh's staging folder as ``_run_once`` names it (for the run's own new version), last written ``age_s``
    ago: a killed run's when old, a run still in progress when recent. With ``manifest_from`` it holds a whole copy
    of that version, manifest included (a run killed while publishing, or one that has just finalized)."""
    import shutil
    import time

    from beam_jobs.pipeline import staging_dir

    version = refresh.new_version(hashlib.sha256(str(time.time()).encode()).hexdigest())
    staging = staging_dir(refresh.version_dir(str(root), version), os.urandom(6).hex())
    if manifest_from:
        shutil.copytree(root / "versions" / manifest_from, staging)
    else:
        os.makedirs(os.path.join(staging, ".tmp", "plan"))
        with open(os.path.join(staging, ".tmp", "plan", "part-0"), "wb") as f:
            f.write(b"plan" * 1000)
    when = time.time() - age_s
    for folder, _, names in os.walk(staging):
        for name in names:
            os.utime(os.path.join(folder, name), (when, when))
    return os.path.basename(staging)


def _folders(root):
    return sorted(p.name for p in (root / "versions").iterdir())


def test_a_refresh_removes_killed_refreshes_staging_folders_of_every_version(capsys, image_folder, tmp_path):
    # Each refresh stages beside its own new version: the startup cleanup looked for that version's staging only,
    # so a killed nightly run's full-size staging folder stayed for good, even past later runs.
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    current = (root / "LATEST").read_text().strip()
    killed = [_staging_of_a_run(root, 7 * _HOURS), _staging_of_a_run(root, 30 * _HOURS, manifest_from=current)]
    running = _staging_of_a_run(root, 60)  # a refresh in progress (written a minute ago): never touched
    capsys.readouterr()
    assert _refresh(image_folder, root) == 0  # up to date, and the leftovers are removed all the same
    out = capsys.readouterr().out
    assert "up to date" in out and "removed 2 abandoned staging folder(s)" in out
    assert _folders(root) == sorted([current, running])
    _change_an_image(image_folder)
    killed = _staging_of_a_run(root, 7 * _HOURS)
    assert _refresh(image_folder, root) == 0  # a run that publishes removes them too
    latest = (root / "LATEST").read_text().strip()
    assert killed not in _folders(root) and _folders(root) == sorted([current, latest, running])


@pytest.mark.parametrize("keep", [1, 2])
def test_pruning_counts_and_deletes_no_staging_folder(capsys, image_folder, tmp_path, keep):
    # A staging folder holding a manifest (a run finalizing, or one killed while publishing) was counted as a
    # version: with --keep-versions 2 a real version was deleted in its stead, with 1 a running refresh's staging.
    root = tmp_path / "root"
    assert _refresh(image_folder, root) == 0
    first = (root / "LATEST").read_text().strip()
    running = _staging_of_a_run(root, 60, manifest_from=first)  # named after a version newer than the first
    _change_an_image(image_folder)
    assert _refresh(image_folder, root, "--keep-versions", str(keep)) == 0
    latest = (root / "LATEST").read_text().strip()
    kept = [first, latest][-keep:]
    assert _folders(root) == sorted([*kept, running])
    assert ("pruned 1 old version(s)" in capsys.readouterr().out) == (keep == 1)
