"""Re-deriving a copy from its source bytes and its recorded recipe, bit for bit.

A recipe is the JSON list of steps ``{op, version, config, params}`` stored in every record: ``decode``, an
optional ``resize``, the policy's ops with the params they drew (the kept attempt's, for a copy the quality gate
re-drew), an optional ``quality_gate`` note, an optional ``mix`` step (MixUp/CutMix: it holds the partner's own
steps, replayed from the partner's source bytes) and ``encode``. Replay refuses steps whose op or version this build
does not know, rather than guessing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from transforms.codec import DECODE_VERSION, ENCODINGS, DecodeError, decode_image, encode_image
from transforms.mix import MIX_VERSION, mix_step_pixels
from transforms.quality import GATE_STEP
from transforms.registry import PolicyError, registered


class ReplayError(ValueError):
    """The recipe cannot be replayed by this build (unknown op or version, or a different source)."""


def _run(steps: list[dict[str, Any]], source: bytes, partner_source: bytes | None) -> np.ndarray:
    """Decodes ``source`` as ``steps[0]`` says and applies the remaining steps (none of them ``encode``)."""
    decode = steps[0] if steps else {}
    if decode.get("op") != "decode":
        raise ReplayError("a recipe starts with a 'decode' step")
    if decode.get("version") != DECODE_VERSION:
        raise ReplayError(f"decode step version {decode.get('version')!r} is not supported (this build: 1)")
    try:
        image, step = decode_image(source)
    except DecodeError as e:
        raise ReplayError(
            f"the source image does not decode ({e.reason}: {e}): it changed since the run, or is not this "
            "recipe's source"
        ) from None
    if step["params"] != decode.get("params"):
        raise ReplayError(f"the source decodes as {step['params']}, the recipe recorded {decode['params']}")
    table = registered()
    for s in steps[1:]:
        if s.get("op") in ("label_map", GATE_STEP):
            continue  # the label map changes the label, the gate step records re-draws: neither touches pixels
        if s.get("op") == "mix":
            image = _mix(image, s, partner_source)
            continue
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
    return image


def _mix(image: np.ndarray, step: dict[str, Any], partner_source: bytes | None) -> np.ndarray:
    if step.get("version") != MIX_VERSION:
        raise ReplayError(f"mix step version {step.get('version')!r} is not supported (this build: {MIX_VERSION})")
    params = step.get("params", {})
    if "skipped" in params:
        return image  # a planned mix that did not happen (no usable partner): the copy is unmixed
    if partner_source is None:
        raise ReplayError(f"this copy is mixed with {params['partner']['source_key']!r}: its source bytes are needed")
    partner = _run(params["partner"]["steps"], partner_source, None)
    return mix_step_pixels(image, partner, step)


def replay_pixels(
    recipe: list[dict[str, Any]] | str, source: bytes, partner_source: bytes | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Applies every step but ``encode``; returns the pixels and the ``encode`` step's config.

    Args:
        recipe: The record's recipe (JSON text or parsed).
        source: The source image's bytes.
        partner_source: For a mixed copy, the partner source's bytes (``transforms.mix.partner_key`` names it).

    Raises:
        ReplayError: Unknown op or version, a source that does not decode as the recipe says, or a mixed copy
            without its partner's bytes.
    """
    try:
        steps = json.loads(recipe) if isinstance(recipe, str) else recipe
    except ValueError as e:
        raise ReplayError(f"the recipe is not JSON ({e}): pass a record's 'recipe' field as it is stored") from None
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ReplayError("a recipe is a JSON list of steps ({'op': ..., 'params': ...})")
    if not steps or steps[-1].get("op") != "encode":
        raise ReplayError("a recipe starts with a 'decode' step and ends with an 'encode' step")
    if not isinstance(steps[-1].get("config"), dict) or steps[-1]["config"].get("format") not in ENCODINGS:
        raise ReplayError(f"the 'encode' step needs a config with a format of {', '.join(ENCODINGS)}")
    return _run(steps[:-1], source, partner_source), steps[-1]["config"]


def replay(recipe: list[dict[str, Any]] | str, source: bytes, partner_source: bytes | None = None) -> bytes:
    """Returns the encoded copy that ``recipe`` describes, identical to the recorded ``image`` bytes."""
    image, encode = replay_pixels(recipe, source, partner_source)
    return encode_image(image, encode["format"], encode.get("quality", 95))
