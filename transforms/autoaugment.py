"""Learned and random policies as tables: RandAugment, AutoAugment, TrivialAugment Wide, AugMix.

Op tables, magnitude bins and sampling follow torchvision's ``transforms.autoaugment`` (and the papers), so a
magnitude means the same thing here: e.g. RandAugment M=9 of 31 bins rotates by up to 9 degrees. Params record
the ops actually applied with their signed magnitudes, so every copy replays exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, check_choice
from transforms.functional import color as fc
from transforms.functional import geometric as fgeo
from transforms.registry import register

GEOMETRIC = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})


def warp_matrix(name: str, magnitude: float, height: int, width: int) -> np.ndarray:
    """Returns the inverse map (output -> input pixel) of a geometric table op, as torchvision's ``_apply_op``.

    Shears are about the top-left corner; ``Rotate`` is counter-clockwise. The quality gate
    (``transforms.quality``) reads the same matrix to measure how much of a copy is fill.
    """
    angle, translate, shear, center = 0.0, (0, 0), (0.0, 0.0), None
    if name == "ShearX":
        shear, center = (math.degrees(math.atan(magnitude)), 0.0), (0, 0)
    elif name == "ShearY":
        shear, center = (0.0, math.degrees(math.atan(magnitude))), (0, 0)
    elif name == "TranslateX":
        translate = (int(magnitude), 0)
    elif name == "TranslateY":
        translate = (0, int(magnitude))
    elif name == "Rotate":
        angle = -magnitude
    else:
        raise ValueError(f"{name!r} is not a geometric table op ({', '.join(sorted(GEOMETRIC))})")
    return fgeo.affine_inverse_matrix(height, width, angle, translate, 1.0, shear, center)


def _warp(name: str):
    return lambda im, m, f: fgeo.warp(im, warp_matrix(name, m, *im.shape[:2]), "constant", f, "nearest")


# name -> kernel(image, magnitude, fill), as torchvision's _apply_op.
KERNELS = {
    "Identity": lambda im, m, f: im.copy(),
    **{name: _warp(name) for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")},
    "Brightness": lambda im, m, f: fc.brightness_pil(im, 1.0 + m),
    "Color": lambda im, m, f: fc.saturation(im, 1.0 + m),
    "Contrast": lambda im, m, f: fc.contrast(im, 1.0 + m),
    "Sharpness": lambda im, m, f: fc.sharpness(im, 1.0 + m),
    "Posterize": lambda im, m, f: fc.posterize(im, int(m)),
    "Solarize": lambda im, m, f: fc.solarize(im, m),
    "AutoContrast": lambda im, m, f: fc.autocontrast(im),
    "Equalize": lambda im, m, f: fc.equalize(im),
    "Invert": lambda im, m, f: fc.invert(im),
}


def _bins(lo: float, hi: float, n: int) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, n)]


def _posterize_bins(top: int, spread: int, n: int) -> list[float]:
    return [float(int(round(top - i / ((n - 1) / spread)))) for i in range(n)]


def space(kind: str, n: int, height: int, width: int) -> dict[str, tuple[list[float], bool]]:
    """Returns torchvision's augmentation space: name -> (magnitude bins, signed)."""
    if kind == "wide":  # TrivialAugment Wide
        s = {
            "Identity": ([0.0], False),
            "ShearX": (_bins(0, 0.99, n), True),
            "ShearY": (_bins(0, 0.99, n), True),
            "TranslateX": (_bins(0, 32.0, n), True),
            "TranslateY": (_bins(0, 32.0, n), True),
            "Rotate": (_bins(0, 135.0, n), True),
            "Brightness": (_bins(0, 0.99, n), True),
            "Color": (_bins(0, 0.99, n), True),
            "Contrast": (_bins(0, 0.99, n), True),
            "Sharpness": (_bins(0, 0.99, n), True),
            "Posterize": (_posterize_bins(8, 6, n), False),
            "Solarize": (_bins(255.0, 0.0, n), False),
            "AutoContrast": ([0.0], False),
            "Equalize": ([0.0], False),
        }
        return s
    if kind == "augmix":
        s = {
            "ShearX": (_bins(0, 0.3, n), True),
            "ShearY": (_bins(0, 0.3, n), True),
            "TranslateX": (_bins(0, width / 3.0, n), True),
            "TranslateY": (_bins(0, height / 3.0, n), True),
            "Rotate": (_bins(0, 30.0, n), True),
            "Posterize": (_posterize_bins(4, 4, n), False),
            "Solarize": (_bins(255.0, 0.0, n), False),
            "AutoContrast": ([0.0], False),
            "Equalize": ([0.0], False),
            "Brightness": (_bins(0.1, 1.9, n), True),
            "Color": (_bins(0.1, 1.9, n), True),
            "Contrast": (_bins(0.1, 1.9, n), True),
            "Sharpness": (_bins(0.1, 1.9, n), True),
        }
        return s
    s = {  # RandAugment and AutoAugment
        "ShearX": (_bins(0, 0.3, n), True),
        "ShearY": (_bins(0, 0.3, n), True),
        "TranslateX": (_bins(0, 150.0 / 331.0 * width, n), True),
        "TranslateY": (_bins(0, 150.0 / 331.0 * height, n), True),
        "Rotate": (_bins(0, 30.0, n), True),
        "Brightness": (_bins(0, 0.9, n), True),
        "Color": (_bins(0, 0.9, n), True),
        "Contrast": (_bins(0, 0.9, n), True),
        "Sharpness": (_bins(0, 0.9, n), True),
        "Posterize": (_posterize_bins(8, 4, n), False),
        "Solarize": (_bins(255.0, 0.0, n), False),
        "AutoContrast": ([0.0], False),
        "Equalize": ([0.0], False),
    }
    if kind == "randaugment":
        return {"Identity": ([0.0], False), **s}
    return {**s, "Invert": ([0.0], False)}  # autoaugment


# AutoAugment sub-policies (Cubuk et al. 2019): ((op, probability, magnitude bin of 10), (op, p, bin)).
AUTOAUGMENT_POLICIES: dict[str, list] = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.2, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}  # fmt: skip

_COLOR = frozenset(KERNELS) - GEOMETRIC - {"Identity"}


def _allowed(names, banned: frozenset[str]) -> list[str]:
    out = []
    for n in names:
        if n in GEOMETRIC and ("geometric" in banned or n.lower() in banned):
            continue
        if n in _COLOR and ("color" in banned or n.lower() in banned):
            continue
        out.append(n)
    return out


def _apply_ops(image: np.ndarray, ops: list[dict[str, Any]], fill: float) -> np.ndarray:
    out = image
    for o in ops:
        out = KERNELS[o["name"]](out, o["magnitude"], fill)
    return out if out is not image else image.copy()


class _TableOp(Op):
    tags = frozenset({"geometric", "color"})
    _kind = "randaugment"

    def _space(self, meta: ImageMeta) -> dict[str, tuple[list[float], bool]]:
        full = space(self._kind, self.num_magnitude_bins, meta.height, meta.width)
        if not self.allowed_ops:
            return full
        return {n: full[n] for n in self.allowed_ops if n in full} or {"Identity": ([0.0], False)}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the recorded ops with their signed magnitudes."""
        return _apply_ops(image, params["ops"], self.fill)

    def without(self, banned):
        """Restricts the table to ops that are not banned (by name, e.g. ``rotate``, or tag)."""
        if self.name in banned:
            return None
        names = self.allowed_ops or list(space(self._kind, self.num_magnitude_bins, 8, 8))
        kept = _allowed(names, banned)
        if kept == names:
            return self
        config = self.config()
        config["allowed_ops"] = kept or ["Identity"]
        return type(self)(**config)


class RandAugment(_TableOp):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` random ops at magnitude ``magnitude`` of ``num_magnitude_bins``.

    Args:
        num_ops: N, ops per image.
        magnitude: M, the magnitude bin (0..num_magnitude_bins-1).
        num_magnitude_bins: Bins of the magnitude scale (torchvision: 31).
        fill: Fill for geometric ops.
        allowed_ops: Restrict the op table (names as in torchvision, e.g. "Rotate"); default all.
    """

    name = "randaugment"
    aliases = ("RandAugment",)

    def __init__(self, num_ops=2, magnitude=9, num_magnitude_bins=31, fill=0, allowed_ops: list[str] | None = None):
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"magnitude must be in 0..{num_magnitude_bins - 1}, got {magnitude!r}")
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops!r}")
        self.num_ops, self.magnitude, self.num_magnitude_bins = int(num_ops), int(magnitude), int(num_magnitude_bins)
        self.fill = float(fill)
        self.allowed_ops = _check_ops(allowed_ops)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"num_ops": self.num_ops, "magnitude": self.magnitude, "num_magnitude_bins": self.num_magnitude_bins,
                "fill": self.fill, "allowed_ops": self.allowed_ops}  # fmt: skip

    def sample_params(self, rng, meta):
        """Draws N ops uniformly, each at magnitude M with a random sign where signed."""
        table = self._space(meta)
        names = list(table)
        ops = []
        for _ in range(self.num_ops):
            n = names[int(rng.integers(len(names)))]
            bins, signed = table[n]
            m = bins[self.magnitude] if len(bins) > 1 else 0.0
            if signed and rng.integers(2):
                m = -m
            ops.append({"name": n, "magnitude": m})
        return {"ops": ops}


class TrivialAugment(_TableOp):
    """TrivialAugment Wide (Müller & Hutter 2021): one random op at a uniformly random magnitude.

    Args:
        num_magnitude_bins: Bins of the magnitude scale (torchvision: 31).
        fill: Fill for geometric ops.
        allowed_ops: Restrict the op table; default all.
    """

    name = "trivialaugment"
    aliases = ("TrivialAugmentWide", "TrivialAugment")
    _kind = "wide"

    def __init__(self, num_magnitude_bins: int = 31, fill: float = 0, allowed_ops: list[str] | None = None):
        self.num_magnitude_bins = int(num_magnitude_bins)
        self.fill = float(fill)
        self.allowed_ops = _check_ops(allowed_ops)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"num_magnitude_bins": self.num_magnitude_bins, "fill": self.fill, "allowed_ops": self.allowed_ops}

    def sample_params(self, rng, meta):
        """Draws one op and one magnitude bin."""
        table = self._space(meta)
        names = list(table)
        n = names[int(rng.integers(len(names)))]
        bins, signed = table[n]
        m = bins[int(rng.integers(len(bins)))] if len(bins) > 1 else 0.0
        if signed and rng.integers(2):
            m = -m
        return {"ops": [{"name": n, "magnitude": m}]}


class AutoAugment(_TableOp):
    """AutoAugment's learned sub-policies (Cubuk et al. 2019) for ImageNet, CIFAR-10 or SVHN.

    Args:
        policy: ``imagenet``, ``cifar10`` or ``svhn``.
        fill: Fill for geometric ops.
        allowed_ops: Restrict to sub-policy ops in this list (others are skipped); default all.
    """

    name = "autoaugment"
    aliases = ("AutoAugment",)
    _kind = "autoaugment"
    num_magnitude_bins = 10

    def __init__(self, policy: str = "imagenet", fill: float = 0, allowed_ops: list[str] | None = None):
        self.policy = check_choice("policy", policy, tuple(AUTOAUGMENT_POLICIES))
        self.fill = float(fill)
        self.allowed_ops = _check_ops(allowed_ops)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"policy": self.policy, "fill": self.fill, "allowed_ops": self.allowed_ops}

    def sample_params(self, rng, meta):
        """Draws a sub-policy, then applies each of its two ops with its probability."""
        full = space("autoaugment", 10, meta.height, meta.width)
        policies = AUTOAUGMENT_POLICIES[self.policy]
        policy_id = int(rng.integers(len(policies)))
        probs = rng.random(2)
        signs = rng.integers(2, size=2)
        ops = []
        for i, (n, p, bin_id) in enumerate(policies[policy_id]):
            if probs[i] <= p and (not self.allowed_ops or n in self.allowed_ops):
                bins, signed = full[n]
                m = bins[bin_id] if bin_id is not None else 0.0
                if signed and signs[i] == 0:
                    m = -m
                ops.append({"name": n, "magnitude": m})
        return {"policy_id": policy_id, "ops": ops}


class AugMix(_TableOp):
    """AugMix (Hendrycks et al. 2020): a Dirichlet mix of ``mixture_width`` random op chains, blended with the image.

    Args:
        severity: Magnitude bins used (1..10).
        mixture_width: Number of chains.
        chain_depth: Ops per chain; -1 draws 1..3.
        alpha: Dirichlet/Beta concentration.
        fill: Fill for geometric ops.
        allowed_ops: Restrict the op table; default all.
    """

    name = "augmix"
    aliases = ("AugMix",)
    _kind = "augmix"
    num_magnitude_bins = 11

    def __init__(self, severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, fill=0, allowed_ops=None):
        if not 1 <= severity <= 10:
            raise ValueError(f"severity must be in 1..10, got {severity!r}")
        if mixture_width < 1 or chain_depth == 0 or alpha <= 0:
            raise ValueError("mixture_width must be >= 1, chain_depth -1 or >= 1, alpha > 0")
        self.severity, self.mixture_width, self.chain_depth = int(severity), int(mixture_width), int(chain_depth)
        self.alpha, self.fill = float(alpha), float(fill)
        self.allowed_ops = _check_ops(allowed_ops)

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments."""
        return {"severity": self.severity, "mixture_width": self.mixture_width, "chain_depth": self.chain_depth,
                "alpha": self.alpha, "fill": self.fill, "allowed_ops": self.allowed_ops}  # fmt: skip

    def sample_params(self, rng, meta):
        """Draws the mixing weights and every chain."""
        table = self._space(meta)
        names = list(table)
        m = rng.dirichlet([self.alpha, self.alpha])
        ws = rng.dirichlet([self.alpha] * self.mixture_width) * m[1]
        chains = []
        for _ in range(self.mixture_width):
            depth = self.chain_depth if self.chain_depth > 0 else int(rng.integers(1, 4))
            chain = []
            for _ in range(depth):
                n = names[int(rng.integers(len(names)))]
                bins, signed = table[n]
                mag = bins[int(rng.integers(self.severity))] if len(bins) > 1 else 0.0
                if signed and rng.integers(2):
                    mag = -mag
                chain.append({"name": n, "magnitude": mag})
            chains.append(chain)
        return {"weights": [float(m[0]), *(float(w) for w in ws)], "chains": chains}

    def apply(self, image, params):
        """Blends the image with its chains by the recorded weights (truncated to uint8, as torchvision)."""
        weights = params["weights"]
        mix = image.astype(np.float32) * np.float32(weights[0])
        for w, chain in zip(weights[1:], params["chains"], strict=True):
            mix += np.float32(w) * _apply_ops(image, chain, self.fill).astype(np.float32)
        return np.clip(mix, 0, 255).astype(np.uint8)


def _check_ops(allowed: list[str] | None) -> list[str] | None:
    if allowed is None:
        return None
    unknown = [n for n in allowed if n not in KERNELS]
    if unknown:
        raise ValueError(f"allowed_ops has unknown ops {unknown}; known: {', '.join(KERNELS)}")
    return list(allowed)


for _op in (RandAugment, TrivialAugment, AutoAugment, AugMix):
    register(_op)
