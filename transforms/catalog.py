"""The op and preset catalogue, generated from the registry (``beam-expand ops``; README table)."""

from __future__ import annotations

import json
from typing import Any

from transforms.policies import PRESETS
from transforms.registry import registered


def catalog() -> dict[str, Any]:
    """Returns every op (name, aliases, tags, summary, parameters with defaults) and every preset."""
    ops = [cls.describe() for _, cls in sorted(registered().items())]
    return {"ops": ops, "presets": {name: PRESETS[name] for name in sorted(PRESETS)}}


def _params(d: dict[str, Any]) -> list[str]:
    return [f"`{k}`" for k in d["required"]] + [f"`{k}={json.dumps(v)}`" for k, v in d["params"].items()]


def markdown() -> str:
    """Returns the catalogue as Markdown tables (ops, then presets)."""
    lines = ["| op | what it does | parameters (defaults) | aliases |", "|---|---|---|---|"]
    for d in catalog()["ops"]:
        params = ", ".join(_params(d)) or "–"
        aliases = ", ".join(d["aliases"]) or "–"
        lines.append(f"| `{d['name']}` | {d['summary']} | {params} | {aliases} |")
    lines += ["", "| preset | ops |", "|---|---|"]
    for name, config in catalog()["presets"].items():
        ops = " → ".join(
            e["op"] + ("(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in e.items() if k != "op") + ")"
                       if len(e) > 1 else "")
            for e in config["ops"]
        )  # fmt: skip
        lines.append(f"| `{name}` | {ops} |")
    return "\n".join(lines) + "\n"


def text() -> str:
    """Returns the catalogue as plain text for a terminal."""
    out = []
    for d in catalog()["ops"]:
        out.append(f"{d['name']:22s} {d['summary']}")
        for p in _params(d):
            out.append(f"{'':24s}{p.strip('`')}")
    out.append("")
    out.append("presets: " + ", ".join(catalog()["presets"]))
    return "\n".join(out)
