"""The quality gate: a degenerate copy is drawn again with the next sub-seed, a bounded number of times.

A copy is degenerate when

* ``fill``: more than ``max_fill`` of its pixels come from outside the source (a large shift, zoom-out, rotation,
  shear or perspective). Measured from the recorded params, not the pixels: each warp's inverse map is applied to
  a 16 x 16 grid of output pixel centres and the share landing outside the source is the fill. Only ``constant``
  and ``nearest`` borders count: ``nearest`` replicates the edge row into streaks that carry no more content than a
  constant fill, while ``reflect`` and ``wrap`` show real (mirrored or tiled) image content. ``pad``,
  ``center_crop`` and ``random_crop`` padding is fixed by the policy, not drawn, and AugMix blends its chains with
  the original, so neither counts. Warps within one op (e.g. RandAugment's ops) are followed exactly; several
  warping ops in one policy combine as the product of their coverages (an estimate: fill pixels may overlap);
* ``constant``: the copy is near-constant (largest per-channel pixel std below ``min_std`` grey levels, on a
  nearest-neighbour thumbnail of at most 32 x 32);
* ``identical``: the copy equals its source, pixel for pixel (every op was skipped or was a no-op).

A near-constant source is not degenerate because of the policy: any flip or shift of it is identical to it and
stays near-constant, so for such sources only ``fill`` is checked (re-drawing cannot fix the rest).

Attempt 0 draws exactly as a run without the gate (``seeding.op_rng`` with ``attempt=0``), so clean copies do not
change. Attempt ``a`` > 0 draws from the sub-seed ``op_rng(..., attempt=a)``. A copy that is still degenerate
after ``max_redraws`` re-draws keeps its attempt-0 pixels (the copy a run without the gate writes) and is flagged.
Re-drawn and flagged copies get one more recipe step, which replay skips (the params of the kept attempt are in
the op steps before it)::

    {"op": "quality_gate", "version": 1, "config": {"max_redraws": 3, "max_fill": 0.5, "min_std": 2.0},
     "params": {"attempt": 2, "reasons": [["fill"], ["fill"], []], "degenerate": false}}

``attempt`` is the attempt kept, ``reasons`` the reasons found for each attempt drawn, in order, and
``degenerate`` says whether the kept copy is still degenerate (its reasons are then ``reasons[attempt]``).
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from transforms import autoaugment
from transforms.functional import geometric as fgeo

GATE_STEP = "quality_gate"
GATE_VERSION = 1
REASONS = ("fill", "constant", "identical")
DEFAULT_MAX_REDRAWS = 3
DEFAULT_MAX_FILL = 0.5
DEFAULT_MIN_STD = 2.0
# Border modes whose out-of-source pixels count as fill (see the module docstring).
FILL_BORDERS = frozenset({"constant", "nearest"})
_GRID = 16
_SAMPLE = 32


class QualityGate:
    """Thresholds and the re-draw bound; ``for_source`` returns the per-copy function of one source.

    Args:
        max_redraws: Re-draws per degenerate copy (0 only flags).
        max_fill: Largest allowed share of fill pixels, in [0, 1].
        min_std: Smallest allowed per-channel pixel std, in grey levels.

    Raises:
        ValueError: A bound out of range, naming it.
    """

    def __init__(self, max_redraws: int = DEFAULT_MAX_REDRAWS, max_fill: float = DEFAULT_MAX_FILL,
                 min_std: float = DEFAULT_MIN_STD):  # fmt: skip
        if not isinstance(max_redraws, int) or max_redraws < 0:
            raise ValueError(f"max_redraws must be an int >= 0, got {max_redraws!r}")
        if not 0 <= max_fill <= 1:
            raise ValueError(f"max_fill must be in [0, 1], got {max_fill!r}")
        if min_std < 0:
            raise ValueError(f"min_std must be >= 0, got {min_std!r}")
        self.max_redraws, self.max_fill, self.min_std = max_redraws, float(max_fill), float(min_std)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments (JSON-able; recorded in the gate's recipe step)."""
        return {"max_redraws": self.max_redraws, "max_fill": self.max_fill, "min_std": self.min_std}

    def reasons(self, copy, steps, source, source_thumb, source_flat: bool) -> list[str]:
        """Returns why ``copy`` of ``source`` is degenerate (a sublist of ``REASONS``), or ``[]``.

        Args:
            copy: The augmented copy.
            steps: Its policy steps (recipe steps with params).
            source: The image the policy received.
            source_thumb: ``thumbnail(source)``.
            source_flat: Whether the source itself is near-constant (then only fill is judged).
        """
        out = []
        if self.max_fill < 1 and fill_fraction(steps, source.shape[0], source.shape[1]) > self.max_fill:
            out.append("fill")
        if source_flat:
            return out
        thumb = thumbnail(copy)
        if _std(thumb) < self.min_std:
            out.append("constant")
        # The thumbnails differ for almost every copy: the full comparison runs only when they are equal.
        elif (
            copy.shape == source.shape
            and thumb.tobytes() == source_thumb.tobytes()
            and np.array_equal(copy[:, :, :3], source[:, :, :3])
        ):
            out.append("identical")
        return out

    def for_source(self, policy, image: np.ndarray, tally: Counter | None = None) -> Callable:
        """Returns ``augment(image, seed, key, copy_index, label_name)``: ``policy.augment`` behind the gate.

        Args:
            policy: The ``transforms.policies.Policy``.
            image: The source as the policy receives it (decoded, resized); judged once here.
            tally: If given, counts ``redrawn`` (copies), ``redraws`` (extra draws) and ``degenerate`` (copies
                kept and flagged).
        """
        source_thumb = thumbnail(image)
        source_flat = _std(source_thumb) < self.min_std

        def augment(image, seed, key, copy_index, label_name=None):
            first = policy.augment(image, seed, key, copy_index, label_name)
            reasons = [self.reasons(first[0], first[1], image, source_thumb, source_flat)]
            if not reasons[0]:
                return first
            kept, attempt = first, 0
            for a in range(1, self.max_redraws + 1):
                candidate = policy.augment(image, seed, key, copy_index, label_name, attempt=a)
                reasons.append(self.reasons(candidate[0], candidate[1], image, source_thumb, source_flat))
                if not reasons[-1]:
                    kept, attempt = candidate, a
                    break
            degenerate = bool(reasons[attempt])
            if tally is not None:
                tally["redrawn"] += int(len(reasons) > 1)
                tally["redraws"] += len(reasons) - 1
                tally["degenerate"] += int(degenerate)
            pixels, steps, name = kept
            gate = {"attempt": attempt, "reasons": reasons, "degenerate": degenerate}
            step = {"op": GATE_STEP, "version": GATE_VERSION, "config": self.config(), "params": gate}
            return pixels, [*steps, step], name

        return augment


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A nearest-neighbour sample of ``image``, at most 32 x 32: what the std and identity checks look at first.

    Only the colour channels count: a BGRA working copy's 4th channel is not part of the image. The pixels are
    exactly ``cv2.resize(..., INTER_NEAREST)``'s, picked by index: resizing ``image[:, :, :3]`` of a BGRA copy made
    OpenCV copy the whole image first (~1 ms per copy).
    """
    rows, cols = _nearest_indices(*image.shape[:2])
    # Two takes (32 rows, then 32 columns of them) are ~3x cheaper than one fancy index over both axes.
    return image.take(rows, axis=0).take(cols, axis=1)[:, :, :3]


@functools.lru_cache(maxsize=64)
def _nearest_indices(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV's INTER_NEAREST: destination index i reads source floor(i * src / dst).
    def pick(n: int) -> np.ndarray:
        m = min(n, _SAMPLE)
        return np.minimum(np.floor(np.arange(m) * (n / m)).astype(np.intp), n - 1)

    return pick(height), pick(width)


def _std(thumb: np.ndarray) -> float:
    return float(cv2.meanStdDev(thumb)[1].max())


def fill_fraction(steps: list[dict[str, Any]], height: int, width: int) -> float:
    """Estimates the share of a copy's pixels that come from outside its source, from its policy steps.

    Args:
        steps: Recipe steps ``{op, config, params}`` of the policy (other steps are ignored).
        height: Height of the image the first step received.
        width: Its width.

    Returns:
        A fraction in [0, 1]; 0 when no warp with a counted border was applied.
    """
    shape = [height, width]
    covered = 1.0
    for s in steps:
        covered *= _coverage(s["op"], s.get("config") or {}, s.get("params") or {}, shape)
    return 1.0 - covered


def _coverage(name: str, config: dict, params: dict, shape: list[int]) -> float:
    """Coverage of one op (recursing into composites); updates ``shape`` to the op's output size."""
    if name in _COMPOSITES:
        covered = 1.0
        for entry, p in _COMPOSITES[name](config, params):
            child = {k: v for k, v in entry.items() if k != "op"}
            covered *= _coverage(entry["op"], child, p, shape)
        return covered
    h, w = shape
    covered = 1.0
    # Only warps with a counted border are followed (the others cost nothing here); recipe configs always hold the
    # op's fill_mode, and the table ops (which have none) fill with a constant.
    if name in _WARPS and config.get("fill_mode", "constant") in FILL_BORDERS:
        warps = _WARPS[name](config, params, h, w)
        covered = _inside(warps, h, w) if warps else 1.0
    if name in _RESHAPE:
        shape[:] = _RESHAPE[name](config, params, h, w)
    return covered


@functools.lru_cache(maxsize=32)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 16 x 16 grid of output pixel centres, and the image's centre and half extent.

    The grid is homogeneous ``(col, row, 1)`` columns (3 x 256); centre and half extent are 2 x 1, so that a source
    point is inside when ``|point - centre| <= half``.
    """
    xs = (np.arange(_GRID) + 0.5) * width / _GRID - 0.5
    ys = (np.arange(_GRID) + 0.5) * height / _GRID - 0.5
    cols, rows = np.meshgrid(xs, ys)
    points = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    centre = np.array([[(width - 1) / 2], [(height - 1) / 2]])
    return points, centre, centre + 0.5


def _inside(warps: list, height: int, width: int) -> float:
    """Share of the grid that a chain of same-size warps fills from inside the source.

    Each grid point is followed back through the warps (last first) by their 2x3 affine or 3x3 perspective
    inverse maps; a point that leaves the image at any of them is fill.
    """
    points, centre, half = _grid(height, width)
    inside = None
    for i, inverse in enumerate(reversed(warps)):
        m = np.asarray(inverse, dtype=np.float64)
        src = m @ points
        if m.shape[0] == 3:  # perspective
            src = src[:2] / src[2]
        ok = (np.abs(src - centre) <= half).all(axis=0)
        inside = ok if inside is None else inside & ok
        if i < len(warps) - 1:
            points = np.vstack([src, points[2:]])
    return float(np.count_nonzero(inside)) / inside.size


def keras_inverse(height: int, width: int, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0) -> list | None:
    """``functional.geometric.keras_transform_matrix`` as a 2x3 list, in plain floats (about 10x faster).

    The product ``offset @ rotation @ shift @ shear @ zoom @ reset`` written out; a test checks it against the
    original. Only the gate uses it: the warp itself keeps Keras's own matrix.
    """
    if theta == 0 and tx == 0 and ty == 0 and shear == 0 and zx == 1 and zy == 1:
        return None
    t, s = math.radians(theta), math.radians(shear)
    c, n, cs, sn = math.cos(t), math.sin(t), math.cos(s), math.sin(s)
    a, b = c * zx, (-c * sn - n * cs) * zy
    d, e = n * zx, (-n * sn + c * cs) * zy
    ox, oy = height / 2 - 0.5, width / 2 - 0.5
    return [[a, b, c * tx - n * ty + ox - a * ox - b * oy], [d, e, n * tx + c * ty + oy - d * ox - e * oy]]


def _keras(config, params, h, w):
    m = keras_inverse(h, w, params.get("theta", 0), params.get("tx", 0), params.get("ty", 0), params.get("shear", 0),
                      params.get("zx", 1), params.get("zy", 1))  # fmt: skip
    return [] if m is None else [m]


def _affine(config, params, h, w):
    return [fgeo.affine_inverse_matrix(h, w, params["angle"], params["translate"], params["scale"], params["shear"])]


def _perspective(config, params, h, w):
    return [fgeo.perspective_inverse(params["startpoints"], params["endpoints"])]


def _table(config, params, h, w):
    # RandAugment, AutoAugment and TrivialAugment warp with a constant fill, one op after the other.
    return [autoaugment.warp_matrix(o["name"], o["magnitude"], h, w)
            for o in params.get("ops", ()) if o["name"] in autoaugment.GEOMETRIC]  # fmt: skip


# op -> inverse maps of the warps it applied, in order (on one image size), from its config and params.
_WARPS: dict[str, Callable] = {
    "image_data_generator": _keras,
    "affine": _affine,
    "perspective": _perspective,
    "randaugment": _table,
    "autoaugment": _table,
    "trivialaugment": _table,
}

# op -> output (height, width), for ops that change the size (later warps are measured on it).
_RESHAPE: dict[str, Callable] = {
    "resize": lambda c, p, h, w: (c["height"], c["width"]),
    "center_crop": lambda c, p, h, w: (c["height"], c["width"]),
    "crop": lambda c, p, h, w: (c["height"], c["width"]),
    "random_crop": lambda c, p, h, w: (c["height"], c["width"]),
    "random_resized_crop": lambda c, p, h, w: (c.get("height") or h, c.get("width") or w),
    "pad": lambda c, p, h, w: (h + c["padding"][0] + c["padding"][1], w + c["padding"][2] + c["padding"][3]),
    "rot90": lambda c, p, h, w: (w, h) if p.get("k", 0) % 2 else (h, w),
}

# composite -> [(child entry, child params)] that were applied, in order.
_COMPOSITES: dict[str, Callable] = {
    "sequence": lambda c, p: zip(c["ops"], p["steps"], strict=True),
    "random_apply": lambda c, p: zip(c["ops"], p["steps"], strict=True) if p.get("applied") else (),
    "one_of": lambda c, p: [(c["ops"][p["choice"]], p["params"])],
    "some_of": lambda c, p: [(c["ops"][i], q) for i, q in zip(p["chosen"], p["params"], strict=True)],
}


def record_counts(recipe: str) -> dict[str, int]:
    """Counts one augmented copy for the manifest's ``quality_gate`` counts, from its recipe JSON.

    Returns:
        ``checked`` (always 1), and for a copy whose first draw was degenerate: ``degenerate_first_draw``,
        ``redrawn`` (re-drawn at least once), ``redraws`` (extra draws), ``fixed_by_redraw`` or
        ``still_degenerate``, and ``reason_<r>`` per reason of the first draw.
    """
    counts = {"checked": 1}
    if f'"{GATE_STEP}"' not in recipe:  # cheap: the gate step is in the recipes of degenerate first draws only
        return counts
    # Only the copy's own steps count: a mixed copy's ``mix`` step also holds its partner's steps, gate note included.
    gate = next((s["params"] for s in json.loads(recipe) if s["op"] == GATE_STEP), None)
    if gate is None:
        return counts
    counts["degenerate_first_draw"] = 1
    counts["redrawn"] = int(len(gate["reasons"]) > 1)
    counts["redraws"] = len(gate["reasons"]) - 1
    counts["still_degenerate" if gate["degenerate"] else "fixed_by_redraw"] = 1
    for reason in gate["reasons"][0]:
        counts[f"reason_{reason}"] = 1
    return counts


def manifest_counts(counts: dict[str, int]) -> dict[str, Any]:
    """Turns summed ``record_counts`` into the manifest's ``counts.quality_gate``."""
    keys = ("checked", "degenerate_first_draw", "redrawn", "redraws", "fixed_by_redraw", "still_degenerate")
    return {**{k: counts.get(k, 0) for k in keys}, "reasons": {r: counts.get(f"reason_{r}", 0) for r in REASONS}}
