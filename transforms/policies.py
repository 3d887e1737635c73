"""Augmentation policies: ops applied to every copy, per-class rules, a label map, presets and a string syntax.

Policy file (YAML or JSON)::

    version: 1
    ops:                                  # applied in order to every augmented copy
      - op: image_data_generator
        rotation_range: 30
      - {op: gaussian_blur, sigma: [0.1, 1.5], p: 0.3}     # p wraps any op in random_apply
    classes:                              # per-class rules (optional)
      six: {ban: [flip, rot90]}           # ban ops by name or tag (flip, color, geometric, ...)
      traffic_light: {ban: [color]}
      cat: {ops: [{op: hflip}]}           # or replace the op list for a class
    label_map:                            # label-changing events (hflip, vflip, rot90/180/270)
      hflip: {left_arrow: right_arrow, right_arrow: left_arrow}

Compact string (``--policy``): ``"image_data_generator(rotation_range=30)|hflip|gaussian_blur(sigma=[0.1,2],p=0.3)"``.
A preset name (``randaugment``, ``light``, ...) or a preset op with arguments (``randaugment(magnitude=12)``)
works too. Op ``i`` of copy ``c`` of source ``key`` draws from ``seeding.op_rng(seed, key, c, i)`` (plus the attempt
when the quality gate re-draws a copy).
"""

from __future__ import annotations

import ast
import json
import os
from typing import Any

import numpy as np

from transforms.base import Op
from transforms.compose import _run
from transforms.registry import PolicyError, build_entry
from transforms.seeding import op_rng

POLICY_SCHEMA_VERSION = 1

# The common tutorial set (Keras image-augmentation tutorials), used when no augmentation flag is given.
DEFAULT_IMAGE_DATA_GENERATOR: dict[str, Any] = {
    "rotation_range": 30,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def _preset(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"version": POLICY_SCHEMA_VERSION, "ops": list(ops)}


PRESETS: dict[str, dict[str, Any]] = {
    "imagedatagenerator": _preset({"op": "image_data_generator", **DEFAULT_IMAGE_DATA_GENERATOR}),
    "randaugment": _preset({"op": "randaugment", "num_ops": 2, "magnitude": 9}),
    "autoaugment": _preset({"op": "autoaugment", "policy": "imagenet"}),
    "autoaugment_cifar10": _preset({"op": "autoaugment", "policy": "cifar10"}),
    "autoaugment_svhn": _preset({"op": "autoaugment", "policy": "svhn"}),
    "trivialaugment": _preset({"op": "trivialaugment"}),
    "augmix": _preset({"op": "augmix"}),
    "light": _preset(
        {"op": "hflip"},
        {"op": "affine", "degrees": 10, "translate": [0.05, 0.05], "scale": [0.95, 1.05], "fill_mode": "reflect"},
        {"op": "color_jitter", "brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.0},
    ),
    "medium": _preset(
        {"op": "hflip"},
        {"op": "affine", "degrees": 15, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": 5,
         "fill_mode": "reflect"},
        {"op": "color_jitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
        {"op": "gaussian_blur", "sigma": [0.1, 1.0], "p": 0.2},
    ),
    "strong": _preset(
        {"op": "random_resized_crop", "scale": [0.5, 1.0]},
        {"op": "hflip"},
        {"op": "affine", "degrees": 25, "translate": [0.1, 0.1], "scale": [0.85, 1.15], "shear": 10,
         "fill_mode": "reflect"},
        {"op": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
        {"op": "one_of", "p": 0.5, "ops": [{"op": "gaussian_blur"}, {"op": "median_blur"}, {"op": "gaussian_noise"}]},
        {"op": "cutout", "p": 0.5},
    ),
}  # fmt: skip
DEFAULT_PRESET = "imagedatagenerator"
LABEL_EVENTS = ("hflip", "vflip", "rot90", "rot180", "rot270")


class Policy:
    """Ops applied to every augmented copy, with optional per-class rules and a label map.

    Args:
        ops: The ops, applied in order.
        classes: Class name -> ``{"ban": [...]}`` or ``{"ops": [...]}``.
        label_map: Event -> {from class: to class}.
    """

    def __init__(self, ops: list[Op], classes: dict[str, dict] | None = None, label_map: dict | None = None):
        self.ops = list(ops)
        self.classes = dict(classes or {})
        self.label_map = {e: dict(m) for e, m in (label_map or {}).items()}
        self._per_class: dict[str, list[Op]] = {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        """Builds a policy from its dict form (see the module docstring).

        Raises:
            PolicyError: Wrong version, missing ``ops`` or a bad entry, with what is allowed.
        """
        if not isinstance(config, dict):
            raise PolicyError(f"a policy must be a mapping with 'version' and 'ops', got {type(config).__name__}")
        version = config.get("version", POLICY_SCHEMA_VERSION)
        if version != POLICY_SCHEMA_VERSION:
            raise PolicyError(f"policy version {version!r} is not supported (this build reads version 1)")
        unknown = set(config) - {"version", "ops", "classes", "label_map"}
        if unknown:
            raise PolicyError(f"unknown policy keys {sorted(unknown)}; allowed: version, ops, classes, label_map")
        entries = config.get("ops")
        if not isinstance(entries, list) or not entries:
            raise PolicyError("a policy needs a non-empty 'ops' list")
        ops = [build_entry(e) for e in entries]
        classes = config.get("classes") or {}
        if not isinstance(classes, dict):
            raise PolicyError("'classes' must map class names to {ban: [...]} or {ops: [...]}")
        for name, rule in classes.items():
            if not isinstance(rule, dict) or not set(rule) <= {"ban", "ops"} or not rule:
                raise PolicyError(f"classes.{name} must be {{ban: [...]}} or {{ops: [...]}}, got {rule!r}")
            if "ops" in rule:
                [build_entry(e) for e in rule["ops"]]
        label_map = config.get("label_map") or {}
        for event, mapping in label_map.items():
            if event not in LABEL_EVENTS:
                raise PolicyError(f"label_map event {event!r} is unknown; events: {', '.join(LABEL_EVENTS)}")
            if not isinstance(mapping, dict):
                raise PolicyError(f"label_map.{event} must map class names to class names")
        return cls(ops, classes, label_map)

    def to_config(self) -> dict[str, Any]:
        """Returns the dict form; ``Policy.from_config(p.to_config())`` rebuilds an equal policy."""
        config: dict[str, Any] = {"version": POLICY_SCHEMA_VERSION, "ops": [_entry(op) for op in self.ops]}
        if self.classes:
            config["classes"] = self.classes
        if self.label_map:
            config["label_map"] = self.label_map
        return config

    def check_classes(self, class_names: list[str]) -> None:
        """Checks that per-class rules and the label map name existing classes.

        Raises:
            PolicyError: Naming the unknown class and the known ones.
        """
        known = set(class_names)
        named = set(self.classes) | {n for m in self.label_map.values() for pair in m.items() for n in pair}
        unknown = sorted(named - known)
        if unknown:
            raise PolicyError(f"policy names unknown class(es) {unknown}; the dataset has: {', '.join(class_names)}")

    def ops_for(self, label_name: str | None) -> list[Op]:
        """Returns the ops for a class: its own list, the default minus its bans, or the default."""
        if label_name is None or label_name not in self.classes:
            return self.ops
        if label_name not in self._per_class:
            rule = self.classes[label_name]
            if "ops" in rule:
                ops = [build_entry(e) for e in rule["ops"]]
            else:
                banned = frozenset(rule.get("ban", []))
                ops = [o2 for o in self.ops if (o2 := o.without(banned)) is not None]
            self._per_class[label_name] = ops
        return self._per_class[label_name]

    def channel_free(self, label_name: str | None = None) -> bool:
        """True when every op a class gets is channel-free (``Op.channel_free``): copies may be made in BGRA."""
        return all(op.channel_free() for op in self.ops_for(label_name))

    def augment(
        self,
        image: np.ndarray,
        seed: int,
        source_key: str,
        copy_index: int,
        label_name: str | None = None,
        attempt: int = 0,
    ) -> tuple[np.ndarray, list[dict[str, Any]], str | None]:
        """Makes one augmented copy.

        Args:
            image: The decoded (and resized, if asked) source, uint8 HWC.
            seed: Job seed.
            source_key: Stable id of the source image.
            copy_index: 1..K.
            label_name: The source's class (selects per-class rules and the label map).
            attempt: 0 for the copy's first draw; 1..N for the quality gate's re-draws (other sub-seeds).

        Returns:
            The copy, its recipe steps (``{op, version, config, params}`` per op, plus a ``label_map`` step when
            the label changed) and the copy's class name.
        """
        steps = []
        out = image
        events: list[str] = []
        for op_index, op in enumerate(self.ops_for(label_name)):
            out, params = _run(op, op_rng(seed, source_key, copy_index, op_index, attempt), out)
            steps.append(op.step(params))
            events.extend(op.label_events(params))
        label = label_name
        for event in events:
            mapped = self.label_map.get(event, {}).get(label, label)
            if mapped != label:
                steps.append({"op": "label_map", "version": 1, "config": {"event": event},
                              "params": {"from": label, "to": mapped}})  # fmt: skip
                label = mapped
        return out, steps, label


def _entry(op: Op) -> dict[str, Any]:
    return {"op": op.name, **op.config()}


def parse_policy_string(text: str) -> dict[str, Any]:
    """Parses ``"op1|op2(k=v, ...)"`` (values are Python/JSON literals) into a policy config.

    Raises:
        PolicyError: Malformed syntax, with the offending part.
    """
    ops = []
    for part in _split_top(text, "|"):
        part = part.strip()
        if not part:
            raise PolicyError(f"empty op in policy string {text!r}")
        try:
            node = ast.parse(part if "(" in part else part + "()", mode="eval").body
        except SyntaxError:
            raise PolicyError(f"cannot parse {part!r}; write op or op(key=value, ...)") from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
            raise PolicyError(f"cannot parse {part!r}; write op or op(key=value, ...) with keyword arguments")
        kwargs = {}
        for kw in node.keywords:
            try:
                kwargs[kw.arg] = _literal(kw.value)
            except ValueError:
                raise PolicyError(f"{part!r}: the value of {kw.arg} must be a literal") from None
        name = node.func.id
        if name in PRESETS and not kwargs:
            ops.extend(PRESETS[name]["ops"])
        else:
            ops.append({"op": name, **kwargs})
    return {"version": POLICY_SCHEMA_VERSION, "ops": ops}


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[node.id]
    value = ast.literal_eval(node)
    return list(value) if isinstance(value, tuple) else value


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def load_policy(spec: str) -> dict[str, Any]:
    """Resolves ``--policy``: a preset name, a YAML/JSON file, an inline mapping, or an op string.

    Returns:
        The policy config (validated by building it once).

    Raises:
        PolicyError: Unknown preset or op, unreadable file or invalid policy, with what to do.
    """
    if spec in PRESETS:
        config = PRESETS[spec]
    elif os.path.exists(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise PolicyError(f"cannot read policy file {spec}: {e.strerror}") from None
        config = _parse_text(text, where=f"policy file {spec}")
    elif spec.lstrip().startswith(("{", "version:", "ops:")):
        config = _parse_text(spec, where="--policy string")
    elif spec.endswith((".yaml", ".yml", ".json")):
        raise PolicyError(f"policy file {spec} does not exist")
    else:
        try:
            config = parse_policy_string(spec)
            Policy.from_config(config)
        except PolicyError as e:
            raise PolicyError(
                f"--policy {spec!r} is neither a preset ({', '.join(sorted(PRESETS))}), a policy file, "
                f"nor a valid op string: {e}"
            ) from None
    Policy.from_config(config)
    return config


def _parse_text(text: str, where: str) -> Any:
    import yaml

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{where} is neither valid JSON nor YAML: {e}") from None
