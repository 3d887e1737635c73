"""The launcher's progress line sums the counts workers drop into its progress folder."""

import json

import pytest

from beam_jobs.progress import ProgressMonitor, read_counts


@pytest.mark.parametrize("name", ["plain", "tmp[1]", "a*b", "what?", "[x]"])
def test_counts_are_read_from_a_folder_whose_name_has_pattern_characters(tmp_path, name):
    # A TMPDIR (and so the progress folder) may hold "[", "*" or "?": they are characters of its name, no pattern.
    folder = tmp_path / name
    folder.mkdir()
    (folder / "w1.json").write_text(json.dumps({"records": 7, "sources": 2}))
    (folder / "w2.json").write_text(json.dumps({"records": 5, "sources": 1}))
    (folder / "w3.json.tmp").write_text(json.dumps({"records": 100, "sources": 100}))  # being written: not counted
    assert read_counts(str(folder)) == (12, 3)
    assert "3/4 images" in ProgressMonitor(str(folder), 4).line()


@pytest.mark.parametrize(("name", "neighbour"), [("tmp[1]", "tmp1"), ("a*b", "a-other-b")])
def test_a_pattern_folder_name_never_reads_a_neighbours_counts(tmp_path, name, neighbour):
    # As a pattern, "tmp[1]" matches the folder "tmp1" and "a*b" the folder "a-other-b": another run's counts.
    (tmp_path / neighbour).mkdir()
    (tmp_path / neighbour / "w.json").write_text(json.dumps({"records": 9, "sources": 9}))
    (tmp_path / name).mkdir()
    assert read_counts(str(tmp_path / name)) == (0, 0)
