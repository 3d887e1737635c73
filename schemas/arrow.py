"""The Parquet/Arrow form of the record, with Hugging Face ``datasets`` feature metadata.

``image`` is the struct ``{bytes: binary, path: string}`` that Hugging Face's ``Image`` feature uses, with
nullable fields exactly as HF writes them (HF stops treating the column as an image otherwise); ``label`` is a
``ClassLabel`` whose names travel in the schema's ``huggingface`` metadata. pyarrow, pandas and DuckDB see plain
columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from schemas.record import FIELDS

IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_ARROW = {"image": IMAGE_TYPE, "class_label": pa.int64(), "int64": pa.int64(), "string": pa.string()}


def _hf_feature(kind: str, class_names: Sequence[str]) -> dict:
    if kind == "image":
        return {"_type": "Image"}
    if kind == "class_label":
        return {"names": list(class_names), "_type": "ClassLabel"}
    return {"dtype": "int64" if kind == "int64" else "string", "_type": "Value"}


def arrow_schema(class_names: Sequence[str]) -> pa.Schema:
    """Builds the Arrow schema of the record.

    Args:
        class_names: Class names in label order; stored as the HF ``ClassLabel`` names.

    Returns:
        A schema with one nullable field per declared record field and ``huggingface`` metadata.
    """
    fields = [pa.field(f.name, _ARROW[f.kind], nullable=True) for f in FIELDS]
    hf = {"info": {"features": {f.name: _hf_feature(f.kind, class_names) for f in FIELDS}}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(hf).encode("utf-8")})


def records_to_table(records: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Turns records (dicts keyed by field name) into a table of ``schema``.

    The image path is left null: the bytes are the image, and a worker path would leak local layout.
    """
    columns = {}
    for f in FIELDS:
        values = [r[f.name] for r in records]
        if f.kind == "image":
            values = [{"bytes": v, "path": None} for v in values]
        columns[f.name] = values
    return pa.Table.from_pydict(columns, schema=schema)
