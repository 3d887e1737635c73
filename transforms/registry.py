"""Ops by canonical name; policy entries and recipe steps name ops through this table.

Op modules register their classes at import; ``transforms.ops`` imports them all, and a test lists what is
registered so nothing appears or vanishes unnoticed.
"""

from __future__ import annotations

from typing import Any

from transforms.base import Op

_REGISTRY: dict[str, type[Op]] = {}


class PolicyError(ValueError):
    """A policy (file, preset or string) or recipe names an unknown op or gives it bad arguments."""


def register(cls: type[Op]) -> type[Op]:
    """Adds an op class under its canonical ``name``; a second class with the same name is an error."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"op name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Op]]:
    """Returns a copy of the name -> op class table (after importing every op module)."""
    import transforms.ops  # noqa: F401  (registers every op)

    return dict(_REGISTRY)


def build_op(name: str, config: dict[str, Any] | None = None) -> Op:
    """Builds a registered op from its name and constructor arguments.

    Raises:
        PolicyError: Unknown op name or arguments the op rejects, with the allowed values.
    """
    table = registered()
    if name not in table:
        raise PolicyError(f"unknown op {name!r}; known ops: {', '.join(sorted(table))}")
    try:
        return table[name](**(config or {}))
    except TypeError as e:
        raise PolicyError(f"op {name!r}: {e}") from None
    except ValueError as e:
        raise PolicyError(f"op {name!r}: {e}") from None
