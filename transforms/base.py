"""The op contract shared by every augmentation.

Image convention (as albumentations): ``numpy.uint8`` array of shape ``(H, W, C)``, channel axis always present,
RGB order for 3 channels. ``apply`` returns a new array and never mutates its input.
"""

from __future__ import annotations

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

    def config(self) -> dict[str, Any]:
        """Returns the constructor arguments, JSON-able; ``type(op)(**op.config())`` rebuilds the op."""
        raise NotImplementedError

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Draws every random choice of one application into a small JSON-able dict."""
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies the op with fixed ``params``: pure and deterministic."""
        raise NotImplementedError

    def step(self, params: dict[str, Any]) -> dict[str, Any]:
        """Returns the recipe step that records one application of this op."""
        return {"op": self.name, "version": self.version, "config": self.config(), "params": params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
