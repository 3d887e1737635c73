"""Composites — sequence, one_of, some_of, random_apply — which are ops too.

A composite's params are its choice plus its children's params, so a recipe replays exactly. Children share the
composite's generator (still a pure function of seed, key, copy and position). ``run`` samples each child on the
image it will actually receive, so children after a size-changing op see the right shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.base import ImageMeta, Op, check_probability
from transforms.registry import PolicyError, build_entry, register


def _entry(op: Op) -> dict[str, Any]:
    return {"op": op.name, **op.config()}


class Composite(Op):
    """Base of ops that hold other ops."""

    children: list[Op]

    def run(self, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Samples and applies in one pass (children sampled on the image they receive)."""
        params = self.sample_params(rng, ImageMeta.of(image))
        return self.apply(image, params), params

    def channel_free(self) -> bool:
        """A composite is channel-free when every child is."""
        return all(child.channel_free() for child in self.children)


def _run(op: Op, rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    if isinstance(op, Composite):
        return op.run(rng, image)
    params = op.sample_params(rng, ImageMeta.of(image))
    return op.apply(image, params), params


def _build_children(name: str, ops: list) -> list[Op]:
    if not isinstance(ops, list | tuple) or not ops:
        raise PolicyError(f"{name} needs a non-empty list of ops")
    return [build_entry(e) for e in ops]


class Sequence(Composite):
    """Applies every child in order.

    Args:
        ops: Child op entries.
    """

    name = "sequence"
    aliases = ("Compose", "Sequential")

    def __init__(self, ops: list):
        self.children = _build_children("sequence", ops)

    def config(self) -> dict[str, Any]:
        """Returns the children's entries."""
        return {"ops": [_entry(c) for c in self.children]}

    def sample_params(self, rng: np.random.Generator, meta: ImageMeta) -> dict[str, Any]:
        """Samples every child for an image of ``meta``'s shape."""
        return {"steps": [c.sample_params(rng, meta) for c in self.children]}

    def run(self, rng, image):
        """Samples each child on its actual input."""
        steps = []
        for c in self.children:
            image, params = _run(c, rng, image)
            steps.append(params)
        return image, {"steps": steps}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Applies every child with its params."""
        out = image
        for c, p in zip(self.children, params["steps"], strict=True):
            out = c.apply(out, p)
        return out if out is not image else image.copy()

    def label_events(self, params):
        """Every child's events, in order."""
        return tuple(e for c, p in zip(self.children, params["steps"], strict=True) for e in c.label_events(p))

    def without(self, banned):
        """Drops banned children; None if none is left."""
        kept = [c2 for c in self.children if (c2 := c.without(banned)) is not None]
        return type(self)(kept) if kept else None


class OneOf(Composite):
    """Applies one child, chosen with the given weights.

    Args:
        ops: Child op entries.
        weights: Relative weights (default equal).
    """

    name = "one_of"
    aliases = ("OneOf", "RandomChoice")

    def __init__(self, ops: list, weights: list[float] | None = None):
        self.children = _build_children("one_of", ops)
        weights = [1.0] * len(self.children) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.children) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be {len(self.children)} non-negative numbers, got {weights!r}")
        self.weights = weights

    def config(self) -> dict[str, Any]:
        """Returns the children's entries and weights."""
        return {"ops": [_entry(c) for c in self.children], "weights": self.weights}

    def _choose(self, rng: np.random.Generator) -> int:
        p = np.asarray(self.weights) / sum(self.weights)
        return int(rng.choice(len(self.children), p=p))

    def sample_params(self, rng, meta):
        """Chooses a child and samples it."""
        i = self._choose(rng)
        return {"choice": i, "params": self.children[i].sample_params(rng, meta)}

    def run(self, rng, image):
        """Chooses a child, then samples it on the image."""
        i = self._choose(rng)
        out, params = _run(self.children[i], rng, image)
        return out, {"choice": i, "params": params}

    def apply(self, image, params):
        """Applies the chosen child."""
        return self.children[params["choice"]].apply(image, params["params"])

    def label_events(self, params):
        """The chosen child's events."""
        return self.children[params["choice"]].label_events(params["params"])

    def without(self, banned):
        """Drops banned children (and their weights)."""
        kept = [(c2, w) for c, w in zip(self.children, self.weights, strict=True) if (c2 := c.without(banned))]
        return type(self)([c for c, _ in kept], [w for _, w in kept]) if kept else None


class SomeOf(Composite):
    """Applies ``n`` distinct children (n fixed or drawn from [low, high]), in their listed order.

    Args:
        ops: Child op entries.
        n: Number of children, or [low, high].
    """

    name = "some_of"
    aliases = ("SomeOf", "RandomOrder")

    def __init__(self, ops: list, n: int | list[int] = 1):
        self.children = _build_children("some_of", ops)
        lo, hi = (n, n) if isinstance(n, int) else tuple(n)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi <= len(self.children)):
            raise ValueError(f"n must be an int or [low, high] within 0..{len(self.children)}, got {n!r}")
        self.n = [lo, hi]

    def config(self) -> dict[str, Any]:
        """Returns the children's entries and n."""
        return {"ops": [_entry(c) for c in self.children], "n": self.n}

    def _choose(self, rng) -> list[int]:
        k = int(rng.integers(self.n[0], self.n[1] + 1))
        return sorted(int(i) for i in rng.choice(len(self.children), size=k, replace=False))

    def sample_params(self, rng, meta):
        """Chooses children and samples them."""
        chosen = self._choose(rng)
        return {"chosen": chosen, "params": [self.children[i].sample_params(rng, meta) for i in chosen]}

    def run(self, rng, image):
        """Chooses children, then samples each on its actual input."""
        chosen = self._choose(rng)
        params = []
        for i in chosen:
            image, p = _run(self.children[i], rng, image)
            params.append(p)
        return image, {"chosen": chosen, "params": params}

    def apply(self, image, params):
        """Applies the chosen children in order."""
        out = image
        for i, p in zip(params["chosen"], params["params"], strict=True):
            out = self.children[i].apply(out, p)
        return out if out is not image else image.copy()

    def label_events(self, params):
        """The chosen children's events."""
        pairs = zip(params["chosen"], params["params"], strict=True)
        return tuple(e for i, p in pairs for e in self.children[i].label_events(p))

    def without(self, banned):
        """Drops banned children; n is capped to what is left."""
        kept = [c2 for c in self.children if (c2 := c.without(banned)) is not None]
        if not kept:
            return None
        return type(self)(kept, [min(self.n[0], len(kept)), min(self.n[1], len(kept))])


class RandomApply(Sequence):
    """Applies its children, in order, with probability ``p`` (torchvision ``RandomApply``).

    Args:
        ops: Child op entries.
        p: Probability of applying them.
    """

    name = "random_apply"
    aliases = ("RandomApply",)

    def __init__(self, ops: list, p: float = 0.5):
        self.children = _build_children("random_apply", ops)
        self.p = check_probability(p)

    def config(self) -> dict[str, Any]:
        """Returns the children's entries and p."""
        return {"ops": [_entry(c) for c in self.children], "p": self.p}

    def sample_params(self, rng, meta):
        """Draws whether to apply, then samples the children."""
        if not rng.random() < self.p:
            return {"applied": False, "steps": []}
        return {"applied": True, **super().sample_params(rng, meta)}

    def run(self, rng, image):
        """Draws whether to apply, then runs the children."""
        if not rng.random() < self.p:
            return image.copy(), {"applied": False, "steps": []}
        out, params = super().run(rng, image)
        return out, {"applied": True, **params}

    def apply(self, image, params):
        """Applies the children if drawn."""
        return super().apply(image, params) if params["applied"] else image.copy()

    def label_events(self, params):
        """The children's events when applied."""
        return super().label_events(params) if params["applied"] else ()

    def without(self, banned):
        """Drops banned children; None if none is left."""
        kept = [c2 for c in self.children if (c2 := c.without(banned)) is not None]
        return type(self)(kept, self.p) if kept else None


for _op in (Sequence, OneOf, SomeOf, RandomApply):
    register(_op)
