"""The one declaration of an output record.

Every writer (``schemas.tf_example``, ``schemas.arrow``) and every metadata file (``schemas.tfds_metadata``) is
derived from ``FIELDS``; ``tests/schemas`` checks that they all list the same fields in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bumped whenever the meaning of a recipe step changes; replay refuses versions it does not know.
RECIPE_SCHEMA_VERSION = 1

Kind = Literal["image", "class_label", "int64", "string"]


@dataclass(frozen=True)
class Field:
    """One column of the output record.

    Attributes:
        name: Key in ``tf.train.Example`` and column name in Parquet.
        kind: ``image`` (encoded bytes), ``class_label`` (int64 index into the class names), ``int64`` or
            ``string``.
        description: What the value means; copied into the dataset metadata.
    """

    name: str
    kind: Kind
    description: str


FIELDS: tuple[Field, ...] = (
    Field("image", "image", "Encoded image bytes (JPEG, PNG or WebP) of this copy."),
    Field("label", "class_label", "Class index into label.labels.txt; always the source image's label."),
    Field("label_name", "string", "Class name of `label`."),
    Field("source_key", "string", "Stable id of the source image, e.g. its POSIX path relative to the dataset root."),
    Field("copy_index", "int64", "0 for the unaugmented original (when included), 1..K for augmented copies."),
    Field("view_index", "int64", "0 = the image itself; 1..N = test-time views of an evaluation image (--tta)."),
    Field("recipe", "string", "JSON list of the steps applied: {op, version, config, params}; replayable."),
    Field("height", "int64", "Height in pixels of the encoded image."),
    Field("width", "int64", "Width in pixels of the encoded image."),
)


def field_names() -> list[str]:
    """Returns the record's field names in declaration order."""
    return [f.name for f in FIELDS]
