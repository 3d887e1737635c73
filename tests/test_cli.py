"""The command line: user errors are one clear line with exit code 2; the dry run plans without writing."""

import json

import pytest

from beam_jobs.cli import main
from tests.fixtures import make_folder


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


def test_the_command_ends_with_its_exit_code_and_all_its_output(tmp_path):
    # console() ends the process without Python's teardown: the output must be complete and the code kept.
    import subprocess
    import sys

    def command(*args, **kw):
        return subprocess.run([sys.executable, "-m", "beam_jobs.cli", *args], capture_output=True, text=True,
                              timeout=120, **kw)  # fmt: skip

    ops = command("ops", "--json")
    assert ops.returncode == 0 and json.loads(ops.stdout)  # the whole JSON, flushed
    bad = command("run", "--dataset", "shapes", "--copys", "3", "--output", str(tmp_path / "o"))
    assert bad.returncode == 2 and "unknown argument" in bad.stderr and "Traceback" not in bad.stderr
    # A reader that stops early: no traceback, no hang.
    head = subprocess.run(f"{sys.executable} -m beam_jobs.cli ops | head -c 10", shell=True, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert len(head.stdout) == 10 and "Traceback" not in head.stderr


def _dry_run_table(text: str) -> dict[str, tuple[int, int]]:
    """``class -> (images, records out)`` from the dry run's table."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].replace(",", "").isdigit() and parts[2].replace(",", "").isdigit():
            rows[parts[0]] = (int(parts[1].replace(",", "")), int(parts[2].replace(",", "")))
    return rows


def test_dry_run_plans_what_the_run_writes_with_balancing_splits_and_tta(capsys, tmp_path):
    # Uneven classes, balanced; a validation split written as originals + test-time views: the dry run's records per
    # class are the records the run then writes (it used to print images x K for every class and split).
    src = make_folder(tmp_path / "src", classes=("cats", "dogs"), per_class=8)
    make_folder(src, classes=("owls",), per_class=3, seed=1)
    flags = ["run", "--source", str(src), "--copies", "2", "--balance", "--splits", "train=0.7,validation=0.3",
             "--tta", "flip", "--include-original", "--no-progress"]  # fmt: skip
    assert main([*flags, "--dry-run"]) == 0
    text = capsys.readouterr().out
    planned = _dry_run_table(text)
    assert "splits: train" in text and "validation" in text and "balancing plan" in text

    out = tmp_path / "o"
    assert main([*flags, "--output", str(out)]) == 0
    assert "records (K per source from the balancing plan)" in capsys.readouterr().out
    counts = json.loads((out / "beam_expand.json").read_text())["counts"]
    written = {name: (v["images_in"], v["records_out"]) for name, v in counts["per_class"].items()}
    written["total"] = (counts["images_in"], counts["records_out"])
    assert planned == written
    # Balancing gave the small class more copies per image, so a uniform images x K would not have matched.
    assert planned["owls"][1] / planned["owls"][0] > planned["cats"][1] / planned["cats"][0]
    # Without balancing, a run with an evaluation split still announces what it writes (not images x K).
    flags = [f for f in flags if f not in ("--balance", "--tta", "flip")]
    assert main([*flags, "--output", str(tmp_path / "o2")]) == 0
    written = json.loads((tmp_path / "o2" / "beam_expand.json").read_text())["counts"]["records_out"]
    assert f"19 images -> {written} records (K=2 in train)" in capsys.readouterr().out


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


def test_ops_lists_every_op_and_preset_as_text_and_json(capsys):
    from transforms.policies import PRESETS
    from transforms.registry import registered

    assert main(["ops", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in listed["ops"]} == set(registered())
    assert set(listed["presets"]) == set(PRESETS)
    assert main(["ops"]) == 0
    assert "randaugment" in capsys.readouterr().out


def test_readme_op_table_is_generated_from_the_registry():
    from pathlib import Path

    from transforms.catalog import markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown() in readme, "README op table drifted: paste `beam-expand ops --markdown` into it"


def test_preview_writes_a_contact_sheet(capsys, image_folder, tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    argv = ["preview", "--source", str(image_folder), "-n", "3", "--out", str(out), "--policy", "medium"]
    assert main(argv) == 0
    sheet = Image.open(out)
    assert sheet.size[0] > 4 * 160 and sheet.size[1] > 3 * 160  # 3 classes x (original + 3 copies)
    one = tmp_path / "one.png"
    assert main(["preview", "--image", str(next(image_folder.glob("cats/*.jpg"))), "-n", "2", "--out", str(one)]) == 0
    assert "preview needs" in err(capsys, ["preview", "--out", str(one)])
    # A CSV of path,label reads as pixel rows unless told: the refusal names --source-format, which preview takes.
    listed = tmp_path / "list.csv"
    listed.write_text("path,label\n" + "".join(f"{p.relative_to(tmp_path)},{p.parent.name}\n"
                                               for p in sorted(image_folder.glob("*/*.*"))))  # fmt: skip
    assert "--source-format list" in err(capsys, ["preview", "--source", str(listed), "--out", str(one)])
    assert main(["preview", "--source", str(listed), "--source-format", "list", "-n", "1", "--out", str(one)]) == 0
    assert Image.open(one).size[1] > 3 * 100  # one row per class of the list


def test_replay_command_is_bit_exact(capsys, image_folder, tmp_path):
    out = tmp_path / "o"
    assert main(["run", "--source", str(image_folder), "--output", str(out), "--copies", "2", "--no-progress",
                 "--policy", "trivialaugment|hflip"]) == 0  # fmt: skip
    capsys.readouterr()
    argv = ["replay", str(out), "--source-key", "dogs/dogs_1.png", "--copy-index", "2", "--out", str(tmp_path / "c")]
    assert main(argv) == 0
    assert "bit-exact" in capsys.readouterr().out
    assert "cannot write --out" in err(capsys, [*argv[:-1], str(tmp_path / "no" / "c.jpg")])
    assert "no record" in err(capsys, ["replay", str(out), "--source-key", "dogs/none.png", "--copy-index", "1"])


def test_replay_from_a_recipe_says_which_file_or_recipe_is_wrong(capsys, image_folder, tmp_path):
    image = str(next(image_folder.glob("cats/*.jpg")))
    recipe = tmp_path / "recipe.json"
    recipe.write_text("not json")
    cases = {
        "--recipe " + str(tmp_path / "none.json") + " --image " + image: "--recipe " + str(tmp_path / "none.json"),
        "--recipe " + str(recipe) + " --image " + str(tmp_path / "none.jpg"): "cannot read --image",
        "--recipe " + str(recipe) + " --image " + image: "the recipe is not JSON",
        '--recipe [{"op":"decode"}] --image ' + image: "ends with an 'encode' step",
        "--recipe [1] --image " + image: "a recipe is a JSON list of steps",
        '--recipe [{"op":"encode","config":{"format":"png"}}] --image ' + image: "starts with a 'decode' step",
        '--recipe [{"op":"decode","version":1},{"op":"encode"}] --image ' + image: "needs a config with a format",
        '--recipe [{"op":"decode","version":1},{"op":"encode","config":{"format":"png"}}] --image '
        + str(recipe): "the source image does not decode (not_an_image",
    }
    for args, expected in cases.items():
        message = err(capsys, ["replay", *args.split()])
        assert expected in message and "Traceback" not in message, (args, message)


def test_underscore_spellings_of_job_flags_are_accepted(capsys, image_folder, tmp_path):
    # As Airflow's Beam operator writes them; Beam's own options keep underscores.
    argv = ["run", "--source", str(image_folder), "--output", str(tmp_path / "o"), "--copies=1", "--no_progress",
            "--include_original", "--direct_num_workers=1"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 24 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["info", "gs://b/x"], ["verify", "gs://b/x"], ["report", "gs://b/x"], ["preview", "--source", "gs://b/x"],
     ["replay", "gs://b/x", "--source-key", "k", "--copy-index", "1"]],
)  # fmt: skip
def test_every_command_says_what_to_install_for_a_store_it_cannot_reach(capsys, argv):
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem("gs://b/x")
        pytest.skip("the gcp extra is installed here")
    except ValueError:
        pass
    assert "pip install 'beam-expand[gcp]'" in err(capsys, argv)  # Beam's ValueError traceback before
