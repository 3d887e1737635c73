"""The Parquet/Arrow form of the record, with Hugging Face ``datasets`` feature metadata.

``image`` is the struct ``{bytes: binary, path: string}`` that Hugging Face's ``Image`` feature uses, with
nullable fields exactly as HF writes them (HF stops treating the column as an image otherwise); ``label`` (and
``label_b`` in mixed runs) is a ``ClassLabel`` whose names travel in the schema's ``huggingface`` metadata;
``soft_label`` is a fixed-size list of float32, HF's fixed-length ``Sequence(Value("float32"), length=classes)``.
pyarrow, pandas and DuckDB see plain columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from schemas.record import FIELDS, MIX_FIELDS, record_fields

IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_ARROW = {"image": IMAGE_TYPE, "class_label": pa.int64(), "int64": pa.int64(), "string": pa.string(),
          "float32": pa.float32()}  # fmt: skip
_KINDS = {f.name: f.kind for f in FIELDS + MIX_FIELDS}


def _arrow_type(kind: str, num_classes: int) -> pa.DataType:
    return pa.list_(pa.float32(), num_classes) if kind == "class_probs" else _ARROW[kind]


def _hf_feature(kind: str, class_names: Sequence[str]) -> dict:
    if kind == "image":
        return {"_type": "Image"}
    if kind == "class_label":
        return {"names": list(class_names), "_type": "ClassLabel"}
    if kind == "class_probs":  # "Sequence" is read by every datasets release (5.x reads it as List(length=n))
        return {"feature": {"dtype": "float32", "_type": "Value"}, "length": len(class_names), "_type": "Sequence"}
    return {"dtype": {"int64": "int64", "float32": "float32"}.get(kind, "string"), "_type": "Value"}


def arrow_schema(class_names: Sequence[str], mixed: bool = False) -> pa.Schema:
    """Builds the Arrow schema of the record.

    Args:
        class_names: Class names in label order; stored as the HF ``ClassLabel`` names (and the length of
            ``soft_label``).
        mixed: The run mixes images (MixUp/CutMix): add ``label_b``, ``mix_lambda`` and ``soft_label``.

    Returns:
        A schema with one nullable field per declared record field and ``huggingface`` metadata.
    """
    fields = record_fields(mixed)
    columns = [pa.field(f.name, _arrow_type(f.kind, len(class_names)), nullable=True) for f in fields]
    hf = {"info": {"features": {f.name: _hf_feature(f.kind, class_names) for f in fields}}}
    return pa.schema(columns, metadata={b"huggingface": json.dumps(hf).encode("utf-8")})


def records_to_table(records: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Turns records (dicts keyed by field name) into a table of ``schema``.

    The image path is left null: the bytes are the image, and a worker path would leak local layout.
    """
    arrays = []
    for field in schema:
        values = [r[field.name] for r in records]
        if _KINDS[field.name] == "image":
            # Built from its two child arrays: no per-image {"bytes", "path"} dict to make and convert.
            children = [pa.array(values, pa.binary()), pa.nulls(len(values), pa.string())]
            arrays.append(pa.StructArray.from_arrays(children, fields=list(field.type)))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
