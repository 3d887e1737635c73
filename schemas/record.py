"""The one declaration of an output record.

Every writer (``schemas.tf_example``, ``schemas.arrow``) and every metadata file (``schemas.tfds_metadata``) is
derived from these declarations; ``tests/test_schemas.py`` checks that they all list the same fields in the same
order. A plain run writes ``FIELDS``; a run with MixUp/CutMix (``--mixup``, ``--cutmix``) writes
``FIELDS + MIX_FIELDS`` (``record_fields(mixed=True)``), so plain outputs stay exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bumped whenever the meaning of a recipe step changes; replay refuses versions it does not know.
RECIPE_SCHEMA_VERSION = 1

Kind = Literal["image", "class_label", "int64", "string", "float32", "class_probs"]


@dataclass(frozen=True)
class Field:
    """One column of the output record.

    Attributes:
        name: Key in ``tf.train.Example`` and column name in Parquet.
        kind: ``image`` (encoded bytes), ``class_label`` (int64 index into the class names), ``int64``,
            ``string``, ``float32`` (a scalar) or ``class_probs`` (float32 vector with one entry per class).
        description: What the value means; copied into the dataset metadata.
    """

    name: str
    kind: Kind
    description: str


FIELDS: tuple[Field, ...] = (
    Field("image", "image", "Encoded image bytes (JPEG, PNG or WebP) of this copy."),
    Field("label", "class_label", "Class index into label.labels.txt; the source's (mixed: the dominant image's)."),
    Field("label_name", "string", "Class name of `label`."),
    Field("source_key", "string", "Stable id of the source image, e.g. its POSIX path relative to the dataset root."),
    Field("copy_index", "int64", "0 for the unaugmented original (when included), 1..K for augmented copies."),
    Field("view_index", "int64", "0 = the image itself; 1..N = test-time views of an evaluation image (--tta)."),
    Field("recipe", "string", "JSON list of the steps applied: {op, version, config, params}; replayable."),
    Field("height", "int64", "Height in pixels of the encoded image."),
    Field("width", "int64", "Width in pixels of the encoded image."),
)

# Written only by runs with --mixup / --cutmix, after FIELDS. Image a is the dominant image (its weight >= 0.5,
# its class is `label`); image b is the other one. Unmixed copies are their own image a: label_b == label.
MIX_FIELDS: tuple[Field, ...] = (
    Field("label_b", "class_label", "Class of image b, the non-dominant image of a mixed copy; `label` if unmixed."),
    Field("mix_lambda", "float32", "Weight of image a (whose class is `label`), in [0.5, 1]; 1.0 if unmixed."),
    Field("soft_label", "class_probs", "Per-class weights summing to 1: mix_lambda at `label`, the rest at `label_b`."),
)


def record_fields(mixed: bool = False) -> tuple[Field, ...]:
    """Returns the fields of a run's records: ``FIELDS``, plus ``MIX_FIELDS`` when the run mixes images."""
    return FIELDS + MIX_FIELDS if mixed else FIELDS


def field_names(mixed: bool = False) -> list[str]:
    """Returns the record's field names in declaration order."""
    return [f.name for f in record_fields(mixed)]
