"""The op contract shared by every augmentation.

Image convention (as albumentations): ``numpy.uint8`` array of shape ``(H, W, C)``, channel axis always present,
RGB order for 3 channels. ``apply`` returns a new array and never mutates its input.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class ImageMeta:
    """What ``sample_params`` may look at: the shape of the image the op will receive."""

    height: int
    width: int
    channels: int

    @classmethod
    def of(cls, image: np.ndarray) -> ImageMeta:
        """Returns the meta of an HWC image."""
        return cls(int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))


class Op:
    """Base class of augmentation ops.

    Subclasses set ``name`` (canonical, used in policies and recipes) and ``version`` (bumped whenever the same
    params would give different pixels), take their fixed settings as constructor keyword arguments (returned by
    ``config()``) and implement ``sample_params`` and ``apply``.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    # Families an op belongs to ("geometric", "flip", "color", "noise", "blur", "occlusion"); per-class bans in a
    # policy may name an op or a tag.
    tags: ClassVar[frozenset[str]] = frozenset()
    aliases: ClassVar[tuple[str, ...]] = ()
    # True for ops that only move pixels (see ``channel_free``).
    spatial: ClassVar[bool] = False

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments, JSON-able; ``type(op)(**op.config())`` rebuilds the op."""
        raise NotImplementedError

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws every random choice of one application into a small JSON-able dict."""
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the op with fixed ``params``: pure and deterministic."""
        raise NotImplementedError

    def label_events(self, params: dict[str, Any]) -> tuple[str, ...]:
        """Label-relevant things this application did (e.g. ``("hflip",)``), for a policy's label map."""
        return ()

    def channel_free(self) -> bool:
        """True when ``apply`` treats every channel alike and independently, with scalar fills only.

        Such an op gives the same pixels on any channel order and ignores an extra channel, so the expand loop may
        run it on a BGRA working copy of the image (converted once per source, warped at OpenCV's faster 4-channel
        speed, encoded without another conversion). ``tests/test_channel_free.py`` checks every op that says so.
        """
        return self.spatial

    def without(self, banned: frozenset[str]) -> Op | None:
        """Returns this op with banned ops/tags removed (None if it is banned itself)."""
        return None if (self.name in banned or self.tags & banned) else self

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Returns the op's name, aliases, tags, summary, parameter defaults and required parameters."""
        params, required = {}, []
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.default is inspect.Parameter.empty:
                required.append(p.name)
            else:
                params[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "name": cls.name,
            "aliases": list(cls.aliases),
            "tags": sorted(cls.tags),
            "summary": doc[0] if doc else "",
            "required": required,
            "params": params,
        }

    def step(self, params: dict[str, Any]) -> dict[str, Any]:
        """Returns the recipe step that records one application of this op."""
        return {"op": self.name, "version": self.version, "config": self.config(), "params": params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def as_range(name: str, value: Any, center: float | None = None, lo: float | None = None, hi: float | None = None):
    """Normalizes a range argument to ``[low, high]`` floats and checks its bounds.

    A single number ``x`` means ``[center - x, center + x]`` when ``center`` is given, else ``[x, x]``.

    Raises:
        ValueError: Naming the argument, the value and the allowed bounds.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        pair = [center - value, center + value] if center is not None else [value, value]
        if center is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        pair = [value[0], value[1]]
    else:
        raise ValueError(f"{name} must be a number or [low, high], got {value!r}")
    pair = [float(pair[0]), float(pair[1])]
    if pair[0] > pair[1]:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    if lo is not None and pair[0] < lo or hi is not None and pair[1] > hi:
        raise ValueError(f"{name} must lie within [{lo}, {hi}], got {value!r}")
    return pair


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """Returns ``value`` if it is one of ``allowed``, else raises ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def check_probability(p: Any) -> float:
    """Returns ``p`` as a float in [0, 1], else raises ValueError."""
    if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


def uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    """Draws from U(bounds) as a plain float; a degenerate range costs no draw difference."""
    return float(rng.uniform(bounds[0], bounds[1]))


def noise_seed(rng: np.random.Generator) -> int:
    """Draws a seed for noise fields generated inside ``apply`` (keeps params small)."""
    return int(rng.integers(0, 2**63 - 1))
