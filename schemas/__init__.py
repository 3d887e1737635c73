"""The output record, declared once; TFRecord, Parquet and dataset metadata are derived from it."""

from schemas.record import FIELDS, MIX_FIELDS, RECIPE_SCHEMA_VERSION, Field, field_names, record_fields

__all__ = ["FIELDS", "MIX_FIELDS", "RECIPE_SCHEMA_VERSION", "Field", "field_names", "record_fields"]
