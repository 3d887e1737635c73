"""Ops by canonical name; policy entries and recipe steps name ops through this table.

Op modules register their classes at import; ``transforms.ops`` imports them all, and a test lists what is
registered so nothing appears or vanishes unnoticed.
"""

from __future__ import annotations

from typing import Any

from transforms.base import Op

_REGISTRY: dict[str, type[Op]] = {}
_ALIASES: dict[str, str] = {}


class PolicyError(ValueError):
    """A policy (file, preset or string) or recipe names an unknown op or gives it bad arguments."""


def register(cls: type[Op]) -> type[Op]:
    """Adds an op class under its canonical ``name``; a second class with the same name is an error."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"op name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    for alias in cls.aliases:
        if _ALIASES.get(alias, cls.name) != cls.name:
            raise ValueError(f"alias {alias!r} registered twice")
        _ALIASES[alias] = cls.name
    return cls


def canonical(name: str) -> str:
    """Returns the canonical op name for a name or an alias (Keras / Albumentations / torchvision spelling)."""
    registered()
    return _ALIASES.get(name, name)


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
    name = _ALIASES.get(name, name)
    if name not in table:
        raise PolicyError(f"unknown op {name!r}; known ops: {', '.join(sorted(table))}")
    try:
        return table[name](**(config or {}))
    except TypeError as e:
        raise PolicyError(f"op {name!r}: {e}") from None
    except ValueError as e:
        raise PolicyError(f"op {name!r}: {e}") from None


def build_entry(entry: Any) -> Op:
    """Builds an op from a policy entry: ``{"op": name, **kwargs}`` (``p`` wraps it in ``random_apply``).

    An ``Op`` instance passes through; a bare string is an op with default arguments.

    Raises:
        PolicyError: The entry is malformed, names an unknown op or gives it bad arguments.
    """
    if isinstance(entry, Op):
        return entry
    if isinstance(entry, str):
        entry = {"op": entry}
    if not isinstance(entry, dict) or "op" not in entry:
        raise PolicyError(f"a policy op must be a mapping with an 'op' name, got {entry!r}")
    kwargs = {k: v for k, v in entry.items() if k not in ("op", "p")}
    name = canonical(entry["op"])
    if "p" in entry and name not in ("hflip", "vflip", "random_apply"):
        return build_op("random_apply", {"ops": [{"op": name, **kwargs}], "p": entry["p"]})
    if "p" in entry:
        kwargs["p"] = entry["p"]
    return build_op(name, kwargs)
