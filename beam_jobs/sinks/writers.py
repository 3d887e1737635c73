"""Per-format shard writers used inside ``WriteShardsFn``: TFRecord framing and Parquet row groups.

TFRecord framing (as TensorFlow writes it)::

    uint64 length | uint32 masked_crc32c(length) | bytes data | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import struct
from typing import Any

import google_crc32c
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.arrow import records_to_table
from schemas.tf_example import encode_example

# Rows per Parquet row group: big enough to amortize per-batch cost, small enough to bound worker memory.
PARQUET_ROW_GROUP = 256


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    """Frames one serialized record as TFRecord bytes."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class TFRecordShardWriter:
    """Writes records as ``tf.train.Example``s into one TFRecord file."""

    suffix = "tfrecord"

    def __init__(self, path: str, schema: pa.Schema | None = None):
        self.path = path
        self._file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self.num_bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record."""
        frame = tfrecord_frame(encode_example(record))
        self._file.write(frame)
        self.num_bytes += len(frame)

    def close(self) -> None:
        """Flushes and closes the file."""
        self._file.close()


class ParquetShardWriter:
    """Writes records into one Parquet file, ``PARQUET_ROW_GROUP`` rows per row group."""

    suffix = "parquet"

    def __init__(self, path: str, schema: pa.Schema):
        self.path = path
        self._schema = schema
        self._file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        # Encoded images do not compress: spend no CPU on them; the small columns get snappy.
        codecs = {name: "snappy" for name in schema.names if name != "image"}
        codecs.update({"image.bytes": "none", "image.path": "snappy"})
        self._writer = pq.ParquetWriter(self._file, schema, compression=codecs)
        self._pending: list[dict[str, Any]] = []
        self.num_bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        """Buffers one record; writes a row group when enough are buffered."""
        self._pending.append(record)
        self.num_bytes += len(record["image"]) + len(record["recipe"]) + 64
        if len(self._pending) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(records_to_table(self._pending, self._schema))
            self._pending = []

    def close(self) -> None:
        """Writes the last row group and the footer, then closes the file."""
        self._flush()
        self._writer.close()
        self._file.close()


WRITERS = {"tfrecord": TFRecordShardWriter, "parquet": ParquetShardWriter}
FORMATS = tuple(WRITERS)
