"""TFDS metadata derived from the record declaration: ``features.json`` and ``dataset_info.json``.

TFDS rejects unknown keys in ``dataset_info.json``, reads class names only from ``label.labels.txt`` and needs
every shard's exact length, so these follow what ``tfds.core.DatasetInfo.write_to_directory`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.record import record_fields

FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_PREFIX = "tensorflow_datasets.core.features."


def _feature(kind: str, num_classes: int, image_format: str) -> dict:
    if kind == "image":
        return {
            "pythonClassName": _PREFIX + "image_feature.Image",
            "image": {
                "shape": {"dimensions": ["-1", "-1", "3"]},
                "dtype": "uint8",
                "encodingFormat": image_format,
            },
        }
    if kind == "class_label":
        return {
            "pythonClassName": _PREFIX + "class_label_feature.ClassLabel",
            "classLabel": {"numClasses": str(num_classes)},
        }
    if kind in ("int64", "float32"):
        return {
            "pythonClassName": _PREFIX + "scalar.Scalar",
            "tensor": {"shape": {}, "dtype": kind, "encoding": "none"},
        }
    if kind == "class_probs":  # tfds.features.Tensor(shape=(num_classes,), dtype=np.float32)
        return {
            "pythonClassName": _PREFIX + "tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(num_classes)]}, "dtype": "float32", "encoding": "none"},
        }
    return {"pythonClassName": _PREFIX + "text_feature.Text", "text": {}}


def features_json(num_classes: int, image_format: str, mixed: bool = False) -> dict:
    """Returns the content of TFDS's ``features.json`` for the record.

    Args:
        num_classes: Number of classes of ``label`` (and length of ``soft_label``).
        image_format: ``jpeg`` or ``png`` (TFDS cannot decode WebP).
        mixed: The run mixes images: add ``label_b``, ``mix_lambda`` and ``soft_label``.
    """
    features = {f.name: _feature(f.kind, num_classes, image_format) for f in record_fields(mixed)}
    return {
        "pythonClassName": _PREFIX + "features_dict.FeaturesDict",
        "featuresDict": {"features": features},
    }


def dataset_info_json(
    name: str,
    description: str,
    split_shard_lengths: dict[str, Sequence[int]],
    split_num_bytes: dict[str, int],
    version: str = "1.0.0",
) -> dict:
    """Returns the content of TFDS's ``dataset_info.json``.

    Args:
        name: Dataset name; also the shard file prefix.
        description: Free text shown by ``tfds``.
        split_shard_lengths: Records in each shard, in shard order, per split.
        split_num_bytes: Total TFRecord bytes per split.
        version: Dataset version (semantic, as TFDS wants).
    """
    splits = [
        {
            "name": split,
            "filepathTemplate": FILEPATH_TEMPLATE,
            "numBytes": str(split_num_bytes.get(split, 0)),
            "shardLengths": [str(n) for n in lengths],
        }
        for split, lengths in split_shard_lengths.items()
    ]
    return {
        "name": name,
        "version": version,
        "description": description,
        "fileFormat": "tfrecord",
        "moduleName": "beam_expand",
        "splits": splits,
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
    }
