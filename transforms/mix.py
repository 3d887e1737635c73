"""Dataset-wide MixUp and CutMix: the draws, the pixel kernels and the per-source hook of ``expand_image``.

Definitions (matching timm's ``timm.data.mixup`` and KerasCV's ``MixUp`` / ``CutMix``):

* MixUp (Zhang et al. 2018): ``lam ~ Beta(alpha, alpha)``; ``pixels = round(lam * a + (1 - lam) * b)``
  (computed in float64, rounded half to even as timm's uint8 path does with ``np.rint``).
* CutMix (Yun et al. 2019): ``lam ~ Beta(alpha, alpha)``; a box of ``int(H * sqrt(1 - lam))`` by
  ``int(W * sqrt(1 - lam))`` around a uniform centre (``cy`` in ``0..H-1``, ``cx`` in ``0..W-1``), clipped to the
  image as timm's ``rand_bbox`` does (``cy -+ cut_h // 2``), is pasted from ``b`` into ``a``; ``lam`` is then
  recomputed from the real box area, ``1 - box_area / (H * W)`` (timm's ``correct_lam``, KerasCV's rule).
* With both on, each mixed copy picks CutMix with probability 0.5 (timm's ``switch_prob``); ``fraction`` is the
  share of augmented copies that are mixed (timm's ``prob``, KerasCV mixes every sample: 1.0).

``a`` is the copy being made (source ``key``, copy ``c``: its policy applied with its own seeds) and ``b`` is the
partner's copy with the same index ``c`` (the partner's policy with the partner's seeds, not mixed itself),
resized bilinearly to ``a``'s size when they differ. Every draw comes from ``seeding``: whether a copy is mixed
from ``stable_fraction`` (cheap enough to evaluate for every copy when the launcher plans partners), mode,
lambda and box centre from ``mix_rng(seed, key, c)``. The recipe's ``mix`` step records the mode, the final
lambda (weight of ``a``), the box and the partner's key, copy index, class and full steps, so
``transforms.replay`` rebuilds the copy from the two sources' bytes.

Labels: the record's ``label`` is the dominant image's class (``lam >= 0.5``: ``a``'s), ``label_b`` the other's,
``mix_lambda`` the dominant image's weight, ``soft_label`` the two weights on the two classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from schemas.source import SourceImage
from transforms.codec import DecodeError, decode_image
from transforms.functional.color import grayscale
from transforms.geometric import Resize
from transforms.seeding import mix_rng, stable_fraction

MIX_VERSION = 1
PARTNER_MODES = ("any", "same-class", "other-class")
SWITCH_PROB = 0.5
# Per augmented copy, what happened (counted in the manifest, from the written records).
MIXED, UNMIXED, NO_PARTNER, PARTNER_UNUSABLE = "mixed", "unmixed", "no_partner", "partner_unusable"
MIX_STATES = (MIXED, UNMIXED, NO_PARTNER, PARTNER_UNUSABLE)


@dataclass(frozen=True)
class MixSpec:
    """What to mix: the Beta alphas, the share of copies mixed and who may be a partner.

    Attributes:
        mixup: MixUp's alpha, or None for no MixUp.
        cutmix: CutMix's alpha, or None for no CutMix.
        fraction: Share of augmented copies that are mixed, in (0, 1].
        partners: ``any``, ``same-class`` or ``other-class``.
    """

    mixup: float | None = None
    cutmix: float | None = None
    fraction: float = 1.0
    partners: str = "any"

    def to_config(self) -> dict[str, Any]:
        """Returns the JSON-able form (the manifest's ``mix`` and the DoFn argument)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MixSpec:
        """Rebuilds a spec from ``to_config()``."""
        return cls(**config)

    def text(self) -> str:
        """One line for the console: modes, alphas, fraction, partners."""
        modes = [f"{m} alpha {a:g}" for m, a in (("mixup", self.mixup), ("cutmix", self.cutmix)) if a is not None]
        both = " (each mixed copy picks one, p=0.5)" if len(modes) == 2 else ""
        return f"{' + '.join(modes)}{both}; {self.fraction:.0%} of augmented copies; partners: {self.partners}"


class MixDraw(NamedTuple):
    """The random choices of one mixed copy: mode, its alpha, lambda ~ Beta(alpha, alpha), box centre in [0, 1)."""

    mode: str
    alpha: float
    lam: float
    centre: tuple[float, float]


def is_mixed(seed: int, key: str, copy_index: int, fraction: float) -> bool:
    """Whether copy ``copy_index`` of ``key`` is mixed: a stable hash below ``fraction`` (always, at 1.0)."""
    return fraction >= 1.0 or stable_fraction(f"{seed}\0{copy_index}\0{key}", "mix") < fraction


def draw(seed: int, key: str, copy_index: int, spec: MixSpec) -> MixDraw | None:
    """Returns the mix draws of one copy, or None when the copy is not mixed."""
    if not is_mixed(seed, key, copy_index, spec.fraction):
        return None
    rng = mix_rng(seed, key, copy_index)
    u_mode, u_y, u_x = (float(u) for u in rng.random(3))  # always three, so the stream never depends on the mode
    if spec.mixup is not None and spec.cutmix is not None:
        mode = "cutmix" if u_mode < SWITCH_PROB else "mixup"
    else:
        mode = "mixup" if spec.mixup is not None else "cutmix"
    alpha = float(spec.mixup if mode == "mixup" else spec.cutmix)
    return MixDraw(mode, alpha, float(rng.beta(alpha, alpha)), (u_y, u_x))


def mixup(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """MixUp of two same-shape uint8 images: ``rint(lam * a + (1 - lam) * b)`` as uint8."""
    mixed = lam * a.astype(np.float64) + (1.0 - lam) * b.astype(np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def cutmix_box(lam: float, height: int, width: int, centre: tuple[float, float]) -> tuple[list[int], float]:
    """CutMix's box and corrected lambda (timm ``rand_bbox`` + ``cutmix_bbox_and_lam(correct_lam=True)``).

    Args:
        lam: The drawn lambda.
        height: Image height.
        width: Image width.
        centre: Box centre as fractions in [0, 1) of the height and width (a uniform integer pixel).

    Returns:
        ``[y0, y1, x0, x1]`` (half-open, clipped to the image) and ``1 - box_area / (H * W)``.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(centre[0] * height), int(centre[1] * width)
    y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return [y0, y1, x0, x1], 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


def cutmix(a: np.ndarray, b: np.ndarray, box: list[int]) -> np.ndarray:
    """Pastes ``b[y0:y1, x0:x1]`` into a copy of ``a``."""
    y0, y1, x0, x1 = box
    out = a.copy()
    out[y0:y1, x0:x1] = b[y0:y1, x0:x1]
    return out


def mix_step_pixels(a: np.ndarray, b: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    """Applies a recorded ``mix`` step to ``a`` with partner pixels ``b`` (already at ``a``'s size).

    A partner with another channel count (a per-class rule made one class grey) takes ``a``'s: grey is repeated
    to RGB, RGB becomes Pillow's ``L`` luma.
    """
    if b.shape[2] != a.shape[2]:
        b = np.repeat(b, 3, axis=2) if b.shape[2] == 1 else grayscale(b, 1)
    params = step["params"]
    if step["config"]["mode"] == "mixup":
        return mixup(a, b, params["lambda"])
    return cutmix(a, b, params["box"])


def partner_key(steps: list[dict[str, Any]]) -> str | None:
    """The partner's source key of a recipe whose ``mix`` step mixed two images, else None."""
    for s in steps:
        if s.get("op") == "mix" and "skipped" not in s.get("params", {}):
            return s["params"]["partner"]["source_key"]
    return None


class MixInput(NamedTuple):
    """What the expansion of one source needs in a mixed run (the element after the partner join).

    Attributes:
        source: The source, with its bytes when it is someone's partner.
        partners: Planned partner key per copy index 1..K (None where the copy is not mixed or has no partner).
        partner_data: Partner key -> (class name, encoded bytes), for every partner that could be read.
    """

    source: SourceImage
    partners: tuple[str | None, ...] = ()
    partner_data: dict[str, tuple[str, bytes]] = {}


class Mixer:
    """Mixes the augmented copies of one source with their partners' copies: the hook of ``expand_image``.

    ``apply`` turns copy ``c`` into its mixed form (or leaves it, recording why); ``finish`` adds ``label_b``,
    ``mix_lambda`` and ``soft_label`` to every record of the source (one-hot for unmixed ones, including copy 0
    and evaluation splits, so a mixed run's records all share one schema).

    Args:
        spec: What to mix.
        seed: Job seed.
        item: The source and its partners.
        augment: Makes a copy as the job does, ``Policy.augment``'s signature ``(image, seed, key, copy_index,
            label_name) -> (pixels, steps, label_name)``; applied to the partner with the partner's key and class.
        resize: The job's resize, applied to the partner's decoded source as to every source.
        class_names: Class names in label order (the length of ``soft_label``).
    """

    def __init__(self, spec: MixSpec, seed: int, item: MixInput, augment, resize: Resize | None, class_names):
        self._spec, self._seed, self._item = spec, seed, item
        self._augment, self._resize, self._class_names = augment, resize, list(class_names)
        self._partners: dict[str, tuple[np.ndarray, list[dict], str] | None] = {}
        self._outcome: dict[int, tuple[str, str, float]] = {}  # copy index -> (state, class of b, weight of a)

    def _partner_source(self, key: str) -> tuple[np.ndarray, list[dict], str] | None:
        """Decodes (and resizes) a partner once per source; None when it cannot be used."""
        if key not in self._partners:
            self._partners[key] = None
            entry = self._item.partner_data.get(key)  # None: the partner could not be read
            try:
                image, decode_step = decode_image(entry[1]) if entry is not None else (None, None)
            except DecodeError:
                image = None  # the partner is a dead letter of its own
            if image is not None:
                steps = [decode_step]
                if self._resize is not None:
                    image = self._resize.apply(image, {})
                    steps.append(self._resize.step({}))
                self._partners[key] = (image, steps, entry[0])
        return self._partners[key]

    def apply(self, pixels: np.ndarray, steps: list[dict], name: str, copy_index: int):
        """Mixes copy ``copy_index`` (pixels, policy steps, class) with its partner's copy, if it is mixed.

        Returns:
            ``(pixels, steps, class name)``: the mixed pixels, the steps plus a ``mix`` step, and the dominant
            image's class; unchanged (plus a skipped ``mix`` step when a planned mix could not happen) otherwise.
        """
        key = self._item.source.key
        d = draw(self._seed, key, copy_index, self._spec)
        if d is None:
            self._outcome[copy_index] = (UNMIXED, name, 1.0)
            return pixels, steps, name
        config = {"mode": d.mode, "alpha": d.alpha}
        planned = self._item.partners[copy_index - 1] if copy_index <= len(self._item.partners) else None
        partner = self._partner_source(planned) if planned is not None else None
        if partner is None:
            state = NO_PARTNER if planned is None else PARTNER_UNUSABLE
            self._outcome[copy_index] = (state, name, 1.0)
            skipped = {"skipped": state, "partner": {"source_key": planned}}
            return pixels, [*steps, {"op": "mix", "version": MIX_VERSION, "config": config, "params": skipped}], name
        image, base_steps, partner_class = partner
        b, b_steps, b_name = self._augment(image, self._seed, planned, copy_index, partner_class)
        b_steps = [*base_steps, *b_steps]
        height, width = pixels.shape[:2]
        if b.shape[:2] != (height, width):
            fit = Resize(height, width, "bilinear")
            b = fit.apply(b, {})
            b_steps.append(fit.step({}))
        box = None
        lam = d.lam
        if d.mode == "cutmix":
            box, lam = cutmix_box(d.lam, height, width, d.centre)
        params = {"lambda": lam, "box": box,
                  "partner": {"source_key": planned, "copy_index": copy_index, "label_name": b_name,
                              "steps": b_steps}}  # fmt: skip
        step = {"op": "mix", "version": MIX_VERSION, "config": config, "params": params}
        mixed = mix_step_pixels(pixels, b, step)
        a_dominant = lam >= 0.5
        self._outcome[copy_index] = (MIXED, b_name if a_dominant else name, max(lam, 1.0 - lam))
        return mixed, [*steps, step], (name if a_dominant else b_name)

    def finish(self, records: list[dict[str, Any]]) -> None:
        """Adds the mix fields to every record of the source (in place) and marks the source's own class."""
        for r in records:
            state, other, weight = self._outcome.get(r["copy_index"], (None, r["label_name"], 1.0))
            label_b = self._class_names.index(other)
            soft = [0.0] * len(self._class_names)
            soft[r["label"]] += weight
            soft[label_b] += 1.0 - weight
            r.update(label_b=label_b, mix_lambda=weight, soft_label=soft)
            if state is not None:
                r["mix_state"] = state  # counted by the shard writer, not written
        if records:
            # A mixed copy may carry another class; the sink counts the source under its own class.
            records[0]["source_class"] = self._item.source.label_name
