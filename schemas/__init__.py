"""The output record, declared once; TFRecord, Parquet and dataset metadata are derived from it."""

from schemas.record import FIELDS, RECIPE_SCHEMA_VERSION, Field, field_names

__all__ = ["FIELDS", "RECIPE_SCHEMA_VERSION", "Field", "field_names"]
