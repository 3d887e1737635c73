"""Augmentation policies: an ordered list of ops, loadable from a file, a preset name or the Keras flags.

Policy file (YAML or JSON)::

    version: 1
    ops:
      - op: image_data_generator
        rotation_range: 30
        horizontal_flip: true

A copy applies every op in order; op ``i`` of copy ``c`` of source ``key`` draws from
``seeding.op_rng(seed, key, c, i)``, so a copy does not depend on any other copy, image or worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op
from transforms.registry import PolicyError, build_op
from transforms.seeding import op_rng

POLICY_SCHEMA_VERSION = 1

# The common tutorial set (Keras image-augmentation tutorials), used when no augmentation flag is given.
DEFAULT_IMAGE_DATA_GENERATOR: dict[str, Any] = {
    "rotation_range": 30,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}

PRESETS: dict[str, dict[str, Any]] = {
    "imagedatagenerator": {
        "version": POLICY_SCHEMA_VERSION,
        "ops": [{"op": "image_data_generator", **DEFAULT_IMAGE_DATA_GENERATOR}],
    },
}
DEFAULT_PRESET = "imagedatagenerator"


class Policy:
    """An ordered list of ops applied to every augmented copy.

    Args:
        ops: The ops, applied in order.
    """

    def __init__(self, ops: Sequence[Op]):
        self.ops = list(ops)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        """Builds a policy from its dict form (see the module docstring).

        Raises:
            PolicyError: Wrong version, missing ``ops`` or a bad op entry, with what is allowed.
        """
        if not isinstance(config, dict):
            raise PolicyError(f"a policy must be a mapping with 'version' and 'ops', got {type(config).__name__}")
        version = config.get("version", POLICY_SCHEMA_VERSION)
        if version != POLICY_SCHEMA_VERSION:
            raise PolicyError(f"policy version {version!r} is not supported (this build reads version 1)")
        unknown = set(config) - {"version", "ops"}
        if unknown:
            raise PolicyError(f"unknown policy keys {sorted(unknown)}; allowed: version, ops")
        entries = config.get("ops")
        if not isinstance(entries, list) or not entries:
            raise PolicyError("a policy needs a non-empty 'ops' list")
        ops = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "op" not in entry:
                raise PolicyError(f"policy op #{i} must be a mapping with an 'op' name, got {entry!r}")
            kwargs = {k: v for k, v in entry.items() if k != "op"}
            ops.append(build_op(entry["op"], kwargs))
        return cls(ops)

    def to_config(self) -> dict[str, Any]:
        """Returns the dict form; ``Policy.from_config(p.to_config())`` rebuilds an equal policy."""
        return {"version": POLICY_SCHEMA_VERSION, "ops": [{"op": op.name, **op.config()} for op in self.ops]}

    def augment(
        self, image: np.ndarray, seed: int, source_key: str, copy_index: int
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Makes one augmented copy.

        Args:
            image: The decoded (and resized, if asked) source, uint8 HWC.
            seed: Job seed.
            source_key: Stable id of the source image.
            copy_index: 1..K.

        Returns:
            The copy and its recipe steps (one ``{op, version, config, params}`` per op, params as applied).
        """
        steps = []
        out = image
        for op_index, op in enumerate(self.ops):
            params = op.sample_params(op_rng(seed, source_key, copy_index, op_index), ImageMeta.of(out))
            out = op.apply(out, params)
            steps.append(op.step(params))
        return out, steps


def load_policy(spec: str) -> dict[str, Any]:
    """Resolves ``--policy``: a preset name, a YAML/JSON file path, or an inline JSON/YAML mapping.

    Returns:
        The policy config (validated by building it once).

    Raises:
        PolicyError: Unknown preset, unreadable file or invalid policy, with what to do.
    """
    if spec in PRESETS:
        config = PRESETS[spec]
    elif os.path.exists(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise PolicyError(f"cannot read policy file {spec}: {e.strerror}") from None
        config = _parse_text(text, where=f"policy file {spec}")
    elif spec.lstrip().startswith(("{", "version:", "ops:")):
        config = _parse_text(spec, where="--policy string")
    else:
        raise PolicyError(
            f"--policy {spec!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing policy file"
        )
    Policy.from_config(config)
    return config


def _parse_text(text: str, where: str) -> Any:
    import yaml

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{where} is neither valid JSON nor YAML: {e}") from None
