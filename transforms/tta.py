"""Test-time augmentation (TTA) sets: a fixed, deterministic set of views of every evaluation image.

With ``--tta``, each source outside the augmented split is written as view 0 (the image itself: the record a run
without ``--tta`` writes) plus views 1..N, all with ``copy_index`` 0 and the source's ``source_key`` and label, so
evaluation code groups by ``source_key`` and averages or votes over ``view_index``::

    flip        N=1: the horizontal flip
    five_crop   N=5: crops at the top-left, top-right, bottom-left and bottom-right corners and the centre,
                in torchvision ``FiveCrop``'s order and positions (centre offset rounded as ``F.center_crop``)
    ten_crop    N=10: the five crops, then the five crops of the horizontally flipped image (``TenCrop``)
    POLICY:M    N=M: draws from a policy (preset, file or op string); op i of view v draws from
                ``op_rng(seed, "tta:" + source_key, v, i)``, a stream no training copy uses

Crop size: a fraction of each side (default 0.875, ImageNet's 224-of-256), rounded to the nearest pixel, or fixed
``[height, width]`` pixels. A source smaller than a fixed crop is a dead letter (``smaller_than_tta_crop``), as
torchvision's ``FiveCrop`` refuses it. Every view's recipe is made of registered ops (``hflip``, ``crop``, the
policy's ops), so ``beam-expand replay`` re-derives any view bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.codec import DecodeError
from transforms.geometric import Crop, HFlip
from transforms.policies import Policy, load_policy
from transforms.registry import PolicyError

PRESET_VIEWS = {"flip": 1, "five_crop": 5, "ten_crop": 10}
DEFAULT_CROP_FRACTION = 0.875
SEED_PREFIX = "tta:"
CROP_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
_FLIP = HFlip(p=1.0)
_FLIPPED = {"flip": True}


class TTAError(DecodeError):
    """A source cannot give the requested views (it is smaller than the crop); it becomes a dead letter."""

    stage = "tta"


def parse_tta(spec: str, crop_size: list[int] | float | None = None) -> dict[str, Any]:
    """Resolves ``--tta`` and ``--tta-crop-size`` into a TTA config.

    Args:
        spec: ``flip``, ``five_crop``, ``ten_crop``, or ``POLICY:M`` (a policy preset, file or op string and the
            number of views, e.g. ``light:4`` or ``"hflip|affine(degrees=10):8"``).
        crop_size: For the crop presets: ``[height, width]`` pixels or a fraction of each side in (0, 1].

    Returns:
        The JSON-able config that ``TTA.from_config`` builds from.

    Raises:
        PolicyError: An unknown preset, a missing view count, a bad policy or crop size, with what is allowed.
    """
    spec = spec.strip()
    if spec in PRESET_VIEWS:
        if spec == "flip" and crop_size is not None:
            raise PolicyError("--tta-crop-size applies to --tta five_crop and ten_crop only")
        config: dict[str, Any] = {"kind": spec}
        if spec != "flip":
            config["crop"] = DEFAULT_CROP_FRACTION if crop_size is None else crop_size
    else:
        head, sep, tail = spec.rpartition(":")
        if not sep or not tail.strip().isdigit() or not head.strip():
            raise PolicyError(
                f"--tta must be flip, five_crop, ten_crop or POLICY:M (M views drawn from a policy, e.g. light:4), "
                f"got {spec!r}"
            )
        if crop_size is not None:
            raise PolicyError("--tta-crop-size applies to --tta five_crop and ten_crop only")
        try:
            policy = load_policy(head.strip())
        except PolicyError as e:
            raise PolicyError(f"--tta {spec!r}: {e}") from None
        config = {"kind": "policy", "policy": policy, "views": int(tail)}
    TTA.from_config(config)
    return config


class TTA:
    """The views of one TTA preset or policy.

    Args:
        kind: ``flip``, ``five_crop``, ``ten_crop`` or ``policy``.
        crop: For the crop presets: ``[height, width]`` or a fraction of each side.
        policy: For ``policy``: the policy config.
        views: For ``policy``: the number of views M.
    """

    def __init__(self, kind: str, crop: list[int] | float | None = None, policy: dict | None = None,
                 views: int | None = None):  # fmt: skip
        self.kind = kind
        self.crop = crop
        self.policy_config = policy
        self.num_views = PRESET_VIEWS.get(kind, views or 0)
        self._policy = Policy.from_config(policy) if policy is not None else None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TTA:
        """Builds and checks a TTA from ``parse_tta``'s config.

        Raises:
            PolicyError: Naming what is wrong and what is allowed.
        """
        kind = config.get("kind")
        if kind in ("five_crop", "ten_crop"):
            crop = config.get("crop", DEFAULT_CROP_FRACTION)
            pixels = isinstance(crop, list | tuple) and len(crop) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in crop)  # fmt: skip
            fraction = isinstance(crop, float) and 0 < crop <= 1
            if not (pixels or fraction):
                raise PolicyError(f"--tta-crop-size must be H,W pixels or a fraction in (0, 1], got {crop!r}")
            return cls(kind, crop=list(crop) if pixels else crop)
        if kind == "flip":
            return cls(kind)
        if kind == "policy":
            views = config.get("views")
            if not isinstance(views, int) or isinstance(views, bool) or views < 1:
                raise PolicyError(f"--tta POLICY:M needs M >= 1 views, got {views!r}")
            policy = config.get("policy")
            if Policy.from_config(policy).label_map:
                raise PolicyError("a --tta policy may not have a label_map: every view keeps its image's label")
            return cls(kind, policy=policy, views=views)
        raise PolicyError(f"TTA kind must be one of flip, five_crop, ten_crop, policy; got {kind!r}")

    def to_config(self) -> dict[str, Any]:
        """Returns the config; ``TTA.from_config(t.to_config())`` rebuilds an equal TTA."""
        if self.kind == "policy":
            return {"kind": "policy", "policy": self.policy_config, "views": self.num_views}
        return {"kind": self.kind, **({"crop": self.crop} if self.crop is not None else {})}

    @property
    def flips(self) -> bool:
        """Whether some preset view is a horizontal flip (a label map on ``hflip`` would make it wrong)."""
        return self.kind in ("flip", "ten_crop")

    def view_names(self) -> list[str]:
        """Names of views 0..N, e.g. ``["identity", "hflip"]``."""
        if self.kind == "flip":
            return ["identity", "hflip"]
        if self.kind == "policy":
            return ["identity", *(f"policy_{v}" for v in range(1, self.num_views + 1))]
        names = list(CROP_NAMES) + (["hflip_" + n for n in CROP_NAMES] if self.kind == "ten_crop" else [])
        return ["identity", *names]

    def describe(self) -> dict[str, Any]:
        """The manifest's ``tta`` entry: config, views per evaluation image (beside view 0) and their names."""
        return {**self.to_config(), "views": self.num_views, "view_names": self.view_names()}

    def crop_size(self, height: int, width: int) -> tuple[int, int]:
        """The crop of a ``height`` x ``width`` image: fixed pixels, or the fraction rounded to a whole pixel."""
        if isinstance(self.crop, list):
            return self.crop[0], self.crop[1]
        f = float(self.crop)
        return max(1, min(height, round(height * f))), max(1, min(width, round(width * f)))

    def views(
        self, image: np.ndarray, seed: int, source_key: str, label_name: str | None = None
    ) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
        """Makes views 1..N of one decoded (and resized) evaluation image.

        Args:
            image: uint8 HWC.
            seed: Job seed (policy views).
            source_key: Stable id of the source (policy views).
            label_name: The source's class (selects a policy's per-class rules).

        Returns:
            ``(pixels, recipe steps)`` per view, in view order.

        Raises:
            TTAError: The image is smaller than a fixed crop size.
        """
        if self.kind == "flip":
            return [(_FLIP.apply(image, _FLIPPED), [_FLIP.step(_FLIPPED)])]
        if self.kind == "policy":
            out = []
            for view in range(1, self.num_views + 1):
                pixels, steps, _ = self._policy.augment(image, seed, SEED_PREFIX + source_key, view, label_name)
                out.append((pixels, steps))
            return out
        h, w = image.shape[:2]
        ch, cw = self.crop_size(h, w)
        if ch > h or cw > w:
            raise TTAError("smaller_than_tta_crop", f"the image is {h}x{w}, smaller than the {ch}x{cw} test-time crop")
        out = _five_crop(image, ch, cw, [])
        if self.kind == "ten_crop":
            out += _five_crop(_FLIP.apply(image, _FLIPPED), ch, cw, [_FLIP.step(_FLIPPED)])
        return out


def five_crop_windows(height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
    """(top, left) of torchvision's five crops: top-left, top-right, bottom-left, bottom-right, centre."""
    centre = (int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0)))
    return [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w), centre]


def _five_crop(image: np.ndarray, crop_h: int, crop_w: int, before: list[dict[str, Any]]):
    views = []
    for top, left in five_crop_windows(image.shape[0], image.shape[1], crop_h, crop_w):
        op = Crop(top, left, crop_h, crop_w)
        views.append((op.apply(image, {}), [*before, op.step({})]))
    return views
