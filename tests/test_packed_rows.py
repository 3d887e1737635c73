"""Per-input rows held packed: they round-trip exactly, and the manifest written from them is the same JSON."""

import json
import pickle

import pytest

from beam_jobs.packed_rows import PackedRows
from beam_jobs.sinks.manifest import InputRows, read_json, read_rows, write_json
from transforms.expand import pack_source_info, sums_dict, sums_list, unpack_source_info

ROWS = [("daisy/1.jpg", 0, 1234, 1796191043.7283945), ("tulips/ü ñ.png", 1, None, None), ("a/b#7", 2, 0, 0.5)]


def test_packed_rows_round_trip_after_pickling_and_stay_small():
    packed = pickle.loads(pickle.dumps(PackedRows(ROWS)))
    assert [tuple(r) for r in packed] == ROWS and len(packed) == 3
    assert list(PackedRows([])) == []
    rows = [(f"class{i % 5}/{i:07d}_photo.jpg", i % 5, 30000 + i, 1.7e9 + i / 7) for i in range(20000)]
    many = PackedRows(iter(rows))
    assert len(pickle.dumps(many)) < 20 * 20000  # < 20 bytes per input, against ~400 as Python objects
    assert [tuple(r) for r in many] == rows  # decompressed piece by piece: rows across piece boundaries are whole


def test_manifest_with_input_rows_is_the_json_of_its_rows(tmp_path):
    rows = InputRows(ROWS).with_sha256({"daisy/1.jpg": "ab" * 32})
    manifest = {"seed": 1, "listing": {"per_class": {"daisy": 1}, "images": rows}, "z": [1.5, None]}
    write_json(str(tmp_path / "m.json"), manifest)
    loaded = json.loads((tmp_path / "m.json").read_text())
    expected = [{"key": k, "label": lab, "bytes": b, "mtime": m, "sha256": "ab" * 32 if k == "daisy/1.jpg" else None}
                for k, lab, b, m in ROWS]  # fmt: skip
    assert loaded == {**manifest, "listing": {"per_class": {"daisy": 1}, "images": expected}}
    plain = {"seed": 1, "listing": {"images": []}}
    write_json(str(tmp_path / "p.json"), plain)
    assert (tmp_path / "p.json").read_text() == json.dumps(plain, indent=2, sort_keys=True) + "\n"


def test_manifest_is_read_with_or_without_its_input_rows(tmp_path):
    rows = [(f"c{i % 3}/{i}.jpg", i % 3, i, 1.5 + i) for i in range(5000)]  # several write chunks
    manifest = {"a": {"images": [1, 2]}, "listing": {"images": InputRows(rows), "problems": ["x ]"]}, "z": '{"q'}
    for value in (manifest, {**manifest, "listing": {"images": InputRows([]), "problems": []}}):
        write_json(str(tmp_path / "m.json"), value)
        full = read_json(str(tmp_path / "m.json"))
        assert full == json.loads((tmp_path / "m.json").read_text())
        assert [r["key"] for r in full["listing"]["images"]] == [r["key"] for r in value["listing"]["images"]]
        without = read_json(str(tmp_path / "m.json"), rows=False)
        assert without == {**full, "listing": {"problems": value["listing"]["problems"]}}
        assert list(read_rows(str(tmp_path / "m.json"))) == full["listing"]["images"]
    # The rows are skipped as lines, never parsed: a damaged row does not stop the summary.
    write_json(str(tmp_path / "bad.json"), manifest)
    text = (tmp_path / "bad.json").read_text()
    (tmp_path / "bad.json").write_text(text.replace('{"bytes": 0,', '{"bytes": ', 1))
    assert read_json(str(tmp_path / "bad.json"), rows=False)["z"] == '{"q'
    with pytest.raises(json.JSONDecodeError):
        read_json(str(tmp_path / "bad.json"))
    # Manifests written by plain json (older versions, edited by hand): parsed whole, the rows then left out.
    plain = {"listing": {"images": [{"key": "a"}], "per_class": {}}, "shards": {"a": [{"b": 1}]}}
    for indent in (2, None):
        (tmp_path / "old.json").write_text(json.dumps(plain, indent=indent))
        assert read_json(str(tmp_path / "old.json"), rows=False) == {**plain, "listing": {"per_class": {}}}
        assert list(read_rows(str(tmp_path / "old.json"))) == [{"key": "a"}]


def test_source_info_packs_key_digest_reuse_flag_and_pixel_sums():
    digest = bytes(range(32)).hex()
    sums = {"images": 1, "pixels": 12, "sum": [1.0, 2.0, 3.0], "sumsq": [4.0, 5.0, 2.0**52 + 1]}
    for key, reused in (("daisy/1.jpg", False), ("ü/ñ#3", True)):
        packed = pack_source_info(key, digest, reused)
        assert unpack_source_info(packed) == (key, digest, reused, None)
        assert len(packed) == 34 + len(key.encode())
        packed = pack_source_info(key, digest, reused, sums)
        assert unpack_source_info(packed) == (key, digest, reused, [12, 1, 2, 3, 4, 5, 2**52 + 1])
        assert sums_dict(sums_list(sums)) == sums


def test_inputs_fingerprint_streams_the_digest_of_the_whole_list():
    import hashlib

    from beam_jobs.refresh import inputs_fingerprint

    # Refresh compares it with the fingerprints earlier versions stored: it must stay the digest of the JSON list.
    for rows in (ROWS, []):
        whole = hashlib.sha256(json.dumps([list(r) for r in rows], sort_keys=True, default=str).encode()).hexdigest()
        assert inputs_fingerprint(iter(rows)) == whole
