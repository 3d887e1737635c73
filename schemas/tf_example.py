"""``tf.train.Example`` encoding without TensorFlow.

Workers must not import TensorFlow (5 s and ~700 MB per process), and an Example is a small protobuf, so it is
written here straight in the protobuf wire format:

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }      # map entry: { string key = 1; Feature value = 2; }
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }   Int64List { repeated int64 value = 1 [packed = true]; }
    FloatList { repeated float value = 1 [packed = true]; }           # little-endian IEEE float32

Keys are written in sorted order, so the same record always gives the same bytes. ``tf_feature_spec`` (which
does import TensorFlow) is for readers and tests.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from schemas.record import record_fields

_SMALL = [bytes((i,)) for i in range(128)]  # varints of 0..127: one byte each


def _varint(value: int) -> bytes:
    if 0 <= value < 16384:  # field tags, lengths of all but the image, labels: one or two bytes (the common case)
        return _SMALL[value] if value < 128 else bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= (1 << 64) - 1  # int64 is encoded as its two's-complement uint64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _header(field_number: int, length: int) -> bytes:
    return _varint((field_number << 3) | 2) + _varint(length)


def _delimited(field_number: int, payload: bytes) -> bytes:
    return _header(field_number, len(payload)) + payload


def _feature(kind: str, value: Any) -> bytes:
    if kind in ("int64", "class_label"):
        packed = b"".join(_varint(int(v)) for v in _as_list(value))
        return _delimited(3, _delimited(1, packed))
    if kind in ("float32", "class_probs"):
        values = _as_list(value)
        return _delimited(2, _delimited(1, struct.pack(f"<{len(values)}f", *values)))
    items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in _as_list(value)]
    return _delimited(1, b"".join(_delimited(1, item) for item in items))


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


# Per record kind (plain, mixed): (name, kind, "map entry tag + key" bytes) per field, in key order; the bytes
# before each value never change.
_LAYOUTS = {
    mixed: tuple((f.name, f.kind, _delimited(1, f.name.encode("utf-8"))) for f in sorted(fields, key=lambda f: f.name))
    for mixed, fields in ((False, record_fields(False)), (True, record_fields(True)))
}


def _int_feature(value: int) -> bytes:
    v = _SMALL[value] if 0 <= value < 128 else _varint(value)
    packed = b"\x0a" + _SMALL[len(v)] + v  # Int64List { value = 1 [packed] }
    return b"\x1a" + _SMALL[len(packed)] + packed  # Feature { int64_list = 3 }


def encode_example(record: Mapping[str, Any], mixed: bool = False) -> bytes:
    """Serializes one record as a ``tf.train.Example``.

    Args:
        record: Mapping from every field of ``schemas.record_fields(mixed)`` to its value (``bytes`` for the
            image, ``int`` or ``str`` for most, ``float`` for ``float32``, a list of floats for ``class_probs``);
            other keys are ignored.
        mixed: Write the fields of a MixUp/CutMix run (``label_b``, ``mix_lambda``, ``soft_label`` too).

    Returns:
        The serialized Example; it parses into the same message TensorFlow builds from these values, and the
        same record always gives the same bytes (keys in sorted order).

    Raises:
        KeyError: If a declared field is missing.
    """
    return b"".join(example_parts(record, mixed))


def example_parts(record: Mapping[str, Any], mixed: bool = False) -> list[bytes]:
    """``encode_example``'s bytes as a list of parts that concatenate to it (same arguments).

    The image bytes are one part, untouched: a writer can checksum and write the parts without ever copying the
    image (nesting it message by message copied each ~30 KB image about eight times).
    """
    parts = []
    size = 0
    for name, kind, key in _LAYOUTS[mixed]:
        value = record[name]
        if kind == "image" and isinstance(value, bytes):
            # Map entry { key; value = Feature { bytes_list = BytesList { value = image } } }, headers only.
            lists = _header(1, len(value))
            feature = _header(1, len(lists) + len(value))
            entry_value = _header(2, len(feature) + len(lists) + len(value))
            head = key + entry_value + feature + lists
            parts += [_header(1, len(head) + len(value)) + head, value]
            size += len(parts[-2]) + len(value)
            continue
        if kind in ("int64", "class_label") and isinstance(value, int):
            feature = _int_feature(value)
        elif kind == "string" and isinstance(value, str):  # Feature { bytes_list = BytesList { value } }
            text = value.encode("utf-8")
            listed = b"\x0a" + _varint(len(text)) + text
            feature = b"\x0a" + _varint(len(listed)) + listed
        else:
            feature = _feature(kind, value)
        value_part = key + b"\x12" + _varint(len(feature)) + feature  # map entry { key = 1; value = 2 }
        entry = b"\x0a" + _varint(len(value_part)) + value_part
        parts.append(entry)
        size += len(entry)
    return [_header(1, size), *parts]


def tf_feature_spec(mixed: bool = False, num_classes: int | None = None) -> dict:
    """Returns the ``tf.io.parse_single_example`` spec for the record (imports TensorFlow).

    Args:
        mixed: The dataset was written with ``--mixup`` / ``--cutmix`` (its records carry ``label_b``,
            ``mix_lambda`` and ``soft_label``; ``beam_expand.json`` says so under ``mix``).
        num_classes: Length of ``soft_label``; needed when ``mixed``.

    Raises:
        ValueError: ``mixed`` without ``num_classes``.
    """
    import tensorflow as tf

    if mixed and not num_classes:
        raise ValueError("a mixed dataset's spec needs num_classes (the length of soft_label)")
    dtype = {"image": tf.string, "string": tf.string, "int64": tf.int64, "class_label": tf.int64,
             "float32": tf.float32, "class_probs": tf.float32}  # fmt: skip
    return {
        f.name: tf.io.FixedLenFeature([num_classes] if f.kind == "class_probs" else [], dtype[f.kind])
        for f in record_fields(mixed)
    }


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yields (field number, wire type, value) of a protobuf message; value is bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
            if pos > len(buf):
                raise ValueError("truncated message")
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def decode_example(data: bytes) -> dict[str, list]:
    """Parses a serialized ``tf.train.Example`` without TensorFlow: feature name -> list of values.

    bytes_list values are ``bytes``, int64_list values ``int`` (two's complement decoded), float_list ``float``.

    Raises:
        ValueError: The bytes are not a well-formed Example.
    """
    out: dict[str, list] = {}
    for number, _, features in _fields(data):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(features):
            if entry_number != 1:
                continue
            key, feature = "", b""
            for n, _, v in _fields(entry):
                if n == 1:
                    key = v.decode("utf-8")
                elif n == 2:
                    feature = v
            values: list = []
            for kind, _, lst in _fields(feature):
                for n, wire, v in _fields(lst):
                    if n != 1:
                        continue
                    if kind == 1:
                        values.append(bytes(v))
                    elif kind == 3:
                        if wire == 2:  # packed
                            pos = 0
                            while pos < len(v):
                                x, pos = _read_varint(v, pos)
                                values.append(x - (1 << 64) if x >= 1 << 63 else x)
                        else:
                            values.append(v - (1 << 64) if v >= 1 << 63 else v)
                    elif kind == 2:
                        if wire == 2:
                            values.extend(struct.unpack(f"<{len(v) // 4}f", v))
                        else:
                            values.append(struct.unpack("<f", v)[0])
            out[key] = values
    return out
