"""Re-deriving a copy from its source bytes and its recorded recipe, bit for bit.

A recipe is the JSON list of steps ``{op, version, config, params}`` stored in every record: ``decode``, an
optional ``resize``, the policy's ops with the params they drew (the kept attempt's, for a copy the quality gate
re-drew), an optional ``quality_gate`` note, and ``encode``. Replay refuses steps whose op or version this build
does not know, rather than guessing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from transforms.codec import DECODE_VERSION, decode_image, encode_image
from transforms.quality import GATE_STEP
from transforms.registry import PolicyError, registered


class ReplayError(ValueError):
    """The recipe cannot be replayed by this build (unknown op or version, or a different source)."""


def replay_pixels(recipe: list[dict[str, Any]] | str, source: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """Applies every step but ``encode``; returns the pixels and the ``encode`` step's config.

    Raises:
        ReplayError: Unknown op or version, or a source that does not decode as the recipe says.
    """
    steps = json.loads(recipe) if isinstance(recipe, str) else recipe
    if not steps or steps[0].get("op") != "decode" or steps[-1].get("op") != "encode":
        raise ReplayError("a recipe starts with a 'decode' step and ends with an 'encode' step")
    decode = steps[0]
    if decode.get("version") != DECODE_VERSION:
        raise ReplayError(f"decode step version {decode.get('version')!r} is not supported (this build: 1)")
    image, step = decode_image(source)
    if step["params"] != decode["params"]:
        raise ReplayError(f"the source decodes as {step['params']}, the recipe recorded {decode['params']}")
    table = registered()
    for s in steps[1:-1]:
        if s.get("op") in ("label_map", GATE_STEP):
            continue  # the label map changes the label, the gate step records re-draws: neither touches pixels
        cls = table.get(s.get("op"))
        if cls is None:
            raise ReplayError(f"unknown op {s.get('op')!r} in recipe; known ops: {', '.join(sorted(table))}")
        if s.get("version") != cls.version:
            raise ReplayError(
                f"op {cls.name!r} version {s.get('version')!r} is not supported (this build: {cls.version})"
            )
        try:
            op = cls(**s.get("config", {}))
        except (TypeError, ValueError) as e:
            raise PolicyError(f"op {cls.name!r}: {e}") from None
        image = op.apply(image, s.get("params", {}))
    return image, steps[-1]["config"]


def replay(recipe: list[dict[str, Any]] | str, source: bytes) -> bytes:
    """Returns the encoded copy that ``recipe`` describes, identical to the recorded ``image`` bytes."""
    image, encode = replay_pixels(recipe, source)
    return encode_image(image, encode["format"], encode.get("quality", 95))
