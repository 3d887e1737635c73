"""The record is declared once: every derived form lists the same fields, and the encoders are exact."""

import json

import numpy as np
import pyarrow as pa
import pytest

from beam_jobs.sinks.writers import tfrecord_frame
from schemas import FIELDS, field_names
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


def test_every_derived_form_lists_the_declared_fields():
    names = field_names()
    assert names == [f.name for f in FIELDS]
    assert list(tf_feature_spec()) == names
    assert arrow_schema(["a"]).names == names
    assert list(features_json(1, "jpeg")["featuresDict"]["features"]) == names
    hf = json.loads(arrow_schema(["a"]).metadata[b"huggingface"])
    assert list(hf["info"]["features"]) == names


def test_example_encoding_parses_into_the_message_tensorflow_builds():
    ex = tf.train.Example()
    for f in FIELDS:
        v = RECORD[f.name]
        if f.kind in ("int64", "class_label"):
            ex.features.feature[f.name].int64_list.value.append(v)
        else:
            ex.features.feature[f.name].bytes_list.value.append(v.encode() if isinstance(v, str) else v)
    ours = tf.train.Example.FromString(encode_example(RECORD))
    assert ours == ex
    assert encode_example(dict(reversed(list(RECORD.items())))) == encode_example(RECORD)


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
