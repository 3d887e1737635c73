"""Nothing partial: staging, verification, atomic publish, --max-bad-fraction, verify/info, and a killed run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from beam_jobs.cli import main
from beam_jobs.sinks import finalize, refusal, writers
from beam_jobs.sinks.publish import VerificationError, clean_stale, verify_shard
from tests.fixtures import make_folder, one_clean_line, run_command


def snapshot(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _run(src, out, *extra):
    return main(["run", "--source", str(src), "--output", str(out), "--copies", "2", "--no-progress", *extra])


def test_verify_and_info_on_a_published_dataset(capsys, image_folder, tmp_path):
    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    assert main(["verify", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "matches its manifest" in text and "cats" in text and "records in" in text
    manifest = json.loads((out / "beam_expand.json").read_text())
    shard = out / manifest["shards"]["tfrecord"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside an image
    shard.write_bytes(bytes(data))
    assert main(["verify", str(out)]) == 1
    assert "CRC" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2


def test_verify_shard_catches_truncation(image_folder, tmp_path):
    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    shard = next(out.glob("*.tfrecord-*"))
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(VerificationError, match="truncated"):
        verify_shard(str(shard), "tfrecord")


def test_delete_tree_removes_a_local_folder_and_accepts_a_missing_one(tmp_path):
    # (On object stores it deletes a prefix: tests/test_object_store.py.)
    from beam_jobs.paths import delete_tree

    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    (folder / "f").write_text("x")
    delete_tree(str(tmp_path / "a"))
    delete_tree(str(tmp_path / "a"))  # gone already: nothing to do
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("workers", [[], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]])
def test_a_refused_run_says_why_in_one_line_without_a_traceback(image_folder, tmp_path, workers):
    # Beam logged the finalize step's BadFractionError with its traceback (twice with 2 workers) before that line.
    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    before = snapshot(out)
    for i in range(3):
        (image_folder / "cats" / f"bad{i}.jpg").write_bytes(b"garbage")
    args = ["run", "--source", image_folder, "--output", out, "--copies", "2", "--no-progress", "--overwrite"]
    done = run_command(*args, "--max-bad-fraction", "0.1", *workers)
    assert done.returncode == 1
    line = one_clean_line(done.stderr)
    kept = tmp_path / "out.refused" / "dead_letter.jsonl"
    assert line.startswith("beam-expand: job failed: 3 of 15 inputs were dead-lettered (20.0%), over "
                           "--max-bad-fraction 0.1; nothing was published. Reasons: 3 not_an_image; e.g. "
                           "cats/bad0.jpg (not_an_image: ")  # fmt: skip
    assert f"Every dead letter is in {kept}" in line and len(kept.read_text().splitlines()) == 3
    assert snapshot(out) == before and not list(tmp_path.glob("out.staging-*"))
    assert _run(image_folder, out, "--overwrite", "--max-bad-fraction", "0.25") == 0
    assert not kept.parent.exists()  # a published run is the output's news now, not the refused one's dead letters


def test_an_unexpected_error_in_the_finalize_step_still_fails_the_run(image_folder, tmp_path, monkeypatch):
    # Only refusals are kept out of the pipeline's errors; anything else there fails the run as it did (no JobFailed).
    def broken(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(finalize.FinalizeFn, "_hf_layout", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run(image_folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_retried_finalize_step_reports_the_bad_fraction_again(image_folder, tmp_path):
    # The check needs nothing staged: a retry on another worker (the staging folder deleted) fails the same way.
    args = (str(tmp_path / "out"), str(tmp_path / "gone"), str(tmp_path / "gone" / ".tmp"), "x", ["train"],
            ("tfrecord",), ["a"], "jpeg")  # fmt: skip
    fn = finalize.FinalizeFn(*args, manifest=None, max_bad_fraction=0.1, images_in=10)
    dead = [{"source_key": "a/1.jpg", "reason": "corrupt"}, {"source_key": "a/2.jpg", "reason": "corrupt"}]
    for _ in range(2):
        with pytest.raises(finalize.BadFractionError, match="2 of 10 inputs were dead-lettered"):
            list(fn.process(None, [], dead))
    # As the command runs it: no exception (Beam would log its traceback), the message left for the launcher.
    fn = finalize.FinalizeFn(*args, manifest=None, images_in=2, report_refusal=True)
    for _ in range(2):
        assert list(fn.process(None, [], dead)) == []
        assert refusal.read_verdict(str(tmp_path / "gone")).startswith("all 2 inputs were dead-lettered")
    assert len((tmp_path / "out.refused" / "dead_letter.jsonl").read_text().splitlines()) == 2


def test_a_killed_run_leaves_the_published_dataset_and_a_rerun_completes(tmp_path):
    src = make_folder(tmp_path / "src", per_class=40, size=(160, 200))
    out = tmp_path / "out"
    assert _run(src, out, "--copies", "1") == 0
    before = snapshot(out)
    cmd = [sys.executable, "-m", "beam_jobs.cli", "run", "--source", str(src), "--output", str(out), "--copies",
           "6", "--overwrite", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    staging = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and staging is None:  # wait until shards are being written
        staging = next((p for p in tmp_path.glob("out.staging-*") if any(p.rglob("*-*"))), None)
        time.sleep(0.05)
    assert staging is not None, proc.communicate()[0][-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot(out) == before  # untouched
    assert not list(out.glob(".*"))  # no partial shards where readers look
    assert clean_stale(str(out), max_age=0) and not list(tmp_path.glob("out.staging-*"))
    assert _run(src, out, "--copies", "6", "--overwrite") == 0
    assert main(["verify", str(out)]) == 0
    assert json.loads((out / "beam_expand.json").read_text())["counts"]["records_out"] == 120 * 6


def test_every_run_writes_a_report_a_person_can_open(capsys, image_folder, tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    assert "report.html" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "report/class_counts.png" in page and page.count("report/samples_") == 3 and "cats" in page
    chart = Image.open(out / "report" / "class_counts.png")
    sheet = Image.open(out / "report" / "samples_000.png")
    assert chart.size[0] > 400 and sheet.size[0] >= 2 * 160  # original... and its copies, side by side
    assert main(["verify", str(out)]) == 0  # the report is not part of what verify checks
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()


def test_a_bad_write_fails_the_bundle_and_publishes_nothing(capsys, image_folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    before = snapshot(out)
    real_write = writers.TFRecordShardWriter.write

    def flip_a_bit(self, record):  # the storage corrupts what the writer sends
        real_write(self, record)
        self._file.write(b"\x00")

    monkeypatch.setattr(writers.TFRecordShardWriter, "write", flip_a_bit)
    capsys.readouterr()
    assert _run(image_folder, out, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "a written shard failed verification" in err and "CRC" in err  # found by the writing worker's re-read
    assert "Traceback" not in err
    assert snapshot(out) == before


def test_a_shard_changed_after_its_check_is_not_published(capsys, image_folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    before = snapshot(out)
    real_rename = finalize.FileSystems.rename

    def rename_and_append(sources, targets):
        real_rename(sources, targets)
        with open(targets[0], "ab") as f:
            f.write(b"late junk")

    monkeypatch.setattr(finalize.FileSystems, "rename", rename_and_append)
    capsys.readouterr()
    assert _run(image_folder, out, "--overwrite") == 1
    assert "but the worker verified" in capsys.readouterr().err
    assert snapshot(out) == before


def test_verify_accepts_a_dataset_written_before_view_index_existed(image_folder, tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    out = tmp_path / "out"
    assert _run(image_folder, out) == 0
    manifest = json.loads((out / "beam_expand.json").read_text())
    for shard in manifest["shards"]["parquet"]:  # rewrite the shards as the previous version wrote them
        path = out / shard["file"]
        pq.write_table(pq.read_table(path).drop_columns(["view_index"]), path)
        shard.update(bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (out / "beam_expand.json").write_text(json.dumps(manifest))
    assert main(["verify", str(out)]) == 0
    table = pq.read_table(out / manifest["shards"]["parquet"][0]["file"])
    pq.write_table(table.drop_columns(["copy_index"]), out / manifest["shards"]["parquet"][0]["file"])
    assert main(["verify", str(out)]) == 1  # a column missing for another reason is still damage


def test_clean_stale_takes_the_output_name_literally(tmp_path):
    # "[1]" in the output's name matched "1": another folder's leftovers were deleted, and its own were kept.
    mine, other = tmp_path / "run[1]" / "out.staging-a", tmp_path / "run1" / "out.staging-b"
    for folder in (mine, other):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"x")
    removed = clean_stale(str(tmp_path / "run[1]" / "out"), max_age=0)
    assert removed == [str(mine)] and not mine.exists() and other.exists()
