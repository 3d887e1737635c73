"""The record is declared once: every derived form lists the same fields, and the encoders are exact."""

import json

import numpy as np
import pyarrow as pa
import pytest

from beam_jobs.sinks.writers import tfrecord_frame
from schemas import FIELDS, field_names, record_fields
from schemas.arrow import IMAGE_TYPE, arrow_schema, records_to_table
from schemas.tf_example import encode_example, tf_feature_spec
from schemas.tfds_metadata import features_json

tf = pytest.importorskip("tensorflow")

RECORD = {
    "image": b"\xff\xd8 not really a jpeg \x00\x01",
    "label": 3,
    "label_name": "tulips",
    "source_key": "tulips/ünïcode name.jpg",
    "copy_index": 2,
    "view_index": 0,
    "recipe": json.dumps([{"op": "resize", "params": {}}]),
    "height": 240,
    "width": 320,
}
MIXED = {**RECORD, "label_b": 1, "mix_lambda": 0.625, "soft_label": [0.0, 0.375, 0.0, 0.625]}


@pytest.mark.parametrize("mixed", [False, True])
def test_every_derived_form_lists_the_declared_fields(mixed):
    names = field_names(mixed)
    assert names == [f.name for f in record_fields(mixed)]
    assert names[: len(FIELDS)] == [f.name for f in FIELDS]  # mixed runs only add fields, after the plain ones
    assert list(tf_feature_spec(mixed, num_classes=4)) == names
    assert arrow_schema(["a"] * 4, mixed).names == names
    assert list(features_json(4, "jpeg", mixed)["featuresDict"]["features"]) == names
    hf = json.loads(arrow_schema(["a"] * 4, mixed).metadata[b"huggingface"])
    assert list(hf["info"]["features"]) == names


@pytest.mark.parametrize("record", [RECORD, MIXED], ids=["plain", "mixed"])
def test_example_encoding_parses_into_the_message_tensorflow_builds(record):
    fields = record_fields(mixed=record is MIXED)
    ex = tf.train.Example()
    for f in fields:
        v = record[f.name]
        if f.kind in ("int64", "class_label"):
            ex.features.feature[f.name].int64_list.value.append(v)
        elif f.kind in ("float32", "class_probs"):
            ex.features.feature[f.name].float_list.value.extend(v if isinstance(v, list) else [v])
        else:
            ex.features.feature[f.name].bytes_list.value.append(v.encode() if isinstance(v, str) else v)
    mixed = record is MIXED
    ours = tf.train.Example.FromString(encode_example(record, mixed))
    assert ours == ex
    assert encode_example(dict(reversed(list(record.items()))), mixed) == encode_example(record, mixed)


def test_example_bytes_are_pinned():
    # Same record, same bytes, across versions of the encoder too (runs are reproducible to the byte): these digests
    # were taken before the encoder's fast paths for small varints and string features; a change must keep them.
    import hashlib

    digests = [hashlib.sha256(encode_example(r, r is MIXED)).hexdigest()[:16] for r in (RECORD, MIXED)]
    assert digests == ["09719a548e21e0ef", "381726394ae36dc7"]
    long = {**RECORD, "recipe": "r" * 20000, "source_key": "k/" + "ü" * 9000, "label": 2**40, "height": 70000}
    parsed = tf.train.Example.FromString(encode_example(long))
    assert parsed.features.feature["recipe"].bytes_list.value[0] == long["recipe"].encode()
    assert parsed.features.feature["label"].int64_list.value[0] == 2**40


def test_plain_records_stay_plain_and_mixed_ones_parse_with_the_derived_spec():
    from schemas.tf_example import decode_example

    assert sorted(decode_example(encode_example(MIXED))) == sorted(field_names())  # the default is the plain record
    parsed = tf.io.parse_single_example(encode_example(MIXED, mixed=True), tf_feature_spec(True, 4))
    assert parsed["soft_label"].shape == (4,) and parsed["soft_label"].dtype == tf.float32
    assert parsed["soft_label"].numpy().tolist() == MIXED["soft_label"] and float(parsed["mix_lambda"]) == 0.625
    assert int(parsed["label_b"]) == 1
    with pytest.raises(ValueError, match="num_classes"):
        tf_feature_spec(mixed=True)


def test_mixed_arrow_and_tfds_metadata_declare_soft_labels():
    names = ["a", "b", "c", "d"]
    schema = arrow_schema(names, mixed=True)
    table = records_to_table([MIXED], schema)
    assert table.schema.field("soft_label").type == pa.list_(pa.float32(), 4)
    assert table.schema.field("mix_lambda").type == pa.float32()
    assert table.to_pylist()[0]["soft_label"] == MIXED["soft_label"]
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["soft_label"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"}
    assert hf["label_b"] == {"names": names, "_type": "ClassLabel"}
    assert hf["mix_lambda"] == {"dtype": "float32", "_type": "Value"}
    tfds_features = features_json(4, "png", mixed=True)["featuresDict"]["features"]
    assert tfds_features["soft_label"]["tensor"] == {"shape": {"dimensions": ["4"]}, "dtype": "float32",
                                                     "encoding": "none"}  # fmt: skip
    assert tfds_features["soft_label"]["pythonClassName"].endswith("tensor_feature.Tensor")
    assert tfds_features["label_b"]["classLabel"] == {"numClasses": "4"}


def test_negative_int64_round_trips():
    parsed = tf.io.parse_single_example(encode_example({**RECORD, "copy_index": -5}), tf_feature_spec())
    assert int(parsed["copy_index"]) == -5


def test_tfrecord_framing_is_read_by_tf_data(tmp_path):
    path = tmp_path / "x.tfrecord"
    path.write_bytes(b"".join(tfrecord_frame(encode_example({**RECORD, "label": i})) for i in range(3)))
    parsed = [tf.io.parse_single_example(r, tf_feature_spec()) for r in tf.data.TFRecordDataset(str(path))]
    assert [int(p["label"]) for p in parsed] == [0, 1, 2]
    assert parsed[0]["source_key"].numpy().decode() == RECORD["source_key"]
    assert parsed[0]["image"].numpy() == RECORD["image"]


def test_arrow_table_has_hf_image_struct_and_class_names():
    schema = arrow_schema(["daisy", "tulips"])
    table = records_to_table([RECORD], schema)
    assert table.schema.field("image").type == IMAGE_TYPE
    assert all(table.schema.field("image").type.field(i).nullable for i in range(2))
    assert table.schema.field("label").type == pa.int64()
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["image"] == {"_type": "Image"}
    assert hf["label"] == {"names": ["daisy", "tulips"], "_type": "ClassLabel"}
    row = table.to_pylist()[0]
    assert row["image"] == {"bytes": RECORD["image"], "path": None}
    assert np.int64(row["label"]) == 3


def test_example_decoder_reads_what_tensorflow_writes():
    from schemas.tf_example import decode_example

    ex = tf.train.Example()
    ex.features.feature["image"].bytes_list.value.append(b"\x00jpeg")
    ex.features.feature["label"].int64_list.value.extend([3, -2])
    ex.features.feature["w"].float_list.value.extend([0.5, 2.0])
    parsed = decode_example(ex.SerializeToString())
    assert parsed == {"image": [b"\x00jpeg"], "label": [3, -2], "w": [0.5, 2.0]}
    assert decode_example(encode_example(RECORD))["source_key"] == [RECORD["source_key"].encode()]


def test_shard_writers_keep_every_record_and_bound_parquet_row_groups_by_bytes(tmp_path):
    import pyarrow.parquet as pq

    from beam_jobs.sinks.publish import verify_shard
    from beam_jobs.sinks.writers import PARQUET_ROW_GROUP_BYTES, ParquetShardWriter, TFRecordShardWriter

    rng = np.random.default_rng(0)
    records = [{**RECORD, "image": rng.bytes(30_000 + i), "copy_index": i} for i in range(300)]
    parquet = ParquetShardWriter(str(tmp_path / "a.parquet"), arrow_schema([str(i) for i in range(5)]))
    tfrecord = TFRecordShardWriter(str(tmp_path / "a.tfrecord"))
    for r in records:
        parquet.write(r)
        tfrecord.write(r)
    parquet.close()
    tfrecord.close()
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == 300 and max(sizes) * 30_000 <= PARQUET_ROW_GROUP_BYTES + 31_000 and len(sizes) >= 4
    table = pq.read_table(tmp_path / "a.parquet")
    assert [row["bytes"] for row in table.column("image").to_pylist()] == [r["image"] for r in records]
    parsed = [tf.train.Example.FromString(x.numpy()) for x in tf.data.TFRecordDataset(str(tmp_path / "a.tfrecord"))]
    assert [p.features.feature["image"].bytes_list.value[0] for p in parsed] == [r["image"] for r in records]
    assert verify_shard(str(tmp_path / "a.tfrecord"), "tfrecord", 300)["records"] == 300
