"""The command line: user errors are one clear line with exit code 2; the dry run plans without writing."""

import json

import pytest

from beam_jobs.cli import main


def err(capsys, argv) -> str:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return out.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--copys", "3"], "unknown argument.*--copys"),
        (["--dataset", "tulips"], "unknown dataset 'tulips'"),
        (["--policy", "nope"], "neither a preset"),
        (["--policy", "imagedatagenerator", "--rotation-range", "5"], "either --policy or Keras"),
        (["--image-format", "webp"], "webp is not readable by TFDS"),
        (["--copies", "-1"], "--copies must be >= 0"),
        (["--formats", "tfrecord,csv"], "--formats must be"),
        (["--fill-mode", "constant", "--brightness-range", "2,1,3"], "expected two"),
    ],
)
def test_user_errors(capsys, tmp_path, extra, message):
    argv = ["run", "--dataset", "shapes", "--output", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), *extra]
    if "expected two" in message:
        with pytest.raises(SystemExit):
            main(argv)
        assert "expected two" in capsys.readouterr().err
        return
    import re

    assert re.search(message, err(capsys, argv))


def test_missing_source_and_non_empty_output(capsys, tmp_path):
    assert "does not exist" in err(capsys, ["run", "--source", str(tmp_path / "none"), "--output", str(tmp_path / "o")])
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["run", "--dataset", "shapes", "--output", str(out), "--cache-dir", str(tmp_path / "c")]
    assert "is not empty; pass --overwrite" in err(capsys, argv)
    assert "did not write" in err(capsys, [*argv, "--overwrite"])
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_policy_file(capsys, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nops:\n  - op: image_data_generator\n    fill_mode: bogus\n")
    argv = ["run", "--dataset", "shapes", "--output", str(tmp_path / "o"), "--policy", str(bad)]
    assert "fill_mode must be one of" in err(capsys, argv)


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, image_folder, tmp_path):
    out = tmp_path / "o"
    argv = [
        "run",
        "--source",
        str(image_folder),
        "--copies",
        "4",
        "--include-original",
        "--dry-run",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cats" in text and "records out" in text and "60" in text and "image_data_generator" in text
    assert not out.exists()


def test_run_with_keras_flags_and_beam_options(capsys, image_folder, tmp_path):
    out = tmp_path / "o"
    argv = [
        "run", "--source", str(image_folder), "--output", str(out), "--copies", "2", "--rotation-range", "20",
        "--width-shift-range", "3", "--zoom-range", "0.9,1.1", "--horizontal-flip", "--fill-mode", "constant",
        "--cval", "128", "--no-progress", "--direct_num_workers=1",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "wrote 24 records" in text and "FnApiRunner" in text and "records/s" in text
    manifest = json.loads((out / "beam_expand.json").read_text())
    op = manifest["policy"]["ops"][0]
    assert op == {
        "op": "image_data_generator",
        "rotation_range": 20.0,
        "width_shift_range": 3,
        "zoom_range": [0.9, 1.1],
        "horizontal_flip": True,
        "fill_mode": "constant",
        "cval": 128.0,
    }
    # --overwrite replaces an earlier run's output
    assert main([*argv, "--overwrite"]) == 0
