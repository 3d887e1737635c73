"""``beam-expand preview``: a contact sheet of an original and N copies, each captioned with the ops applied.

beam-expand preview --image photo.jpg -n 10 --out grid.png --policy randaugment
beam-expand preview --dataset shapes -n 8 --out preview.png          # one row per class
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from transforms.codec import decode_image
from transforms.policies import Policy
from transforms.quality import QualityGate

TILE = 160
CAPTION_LINES = 3


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}".rstrip("0").rstrip(".")


def summarize(steps: list[dict[str, Any]]) -> list[str]:
    """Returns short caption lines naming each applied op and its main params."""
    parts = []
    for s in steps:
        op, p = s["op"], s.get("params") or {}
        if op == "image_data_generator":
            bits = [f"rot {p['theta']:.0f}°" if p["theta"] else "", f"shift {p['tx']:.0f},{p['ty']:.0f}"
                    if p["tx"] or p["ty"] else "", f"shear {p['shear']:.1f}" if p["shear"] else "",
                    f"zoom {p['zx']:.2f},{p['zy']:.2f}" if (p["zx"], p["zy"]) != (1, 1) else "",
                    "flipH" if p["flip_horizontal"] else "", "flipV" if p["flip_vertical"] else "",
                    f"bright {p['brightness']:.2f}" if p.get("brightness") is not None else "",
                    f"chshift {p['channel_shift_intensity']:.0f}" if p.get("channel_shift_intensity") is not None
                    else ""]  # fmt: skip
            parts.append("IDG " + " ".join(b for b in bits if b))
        elif "ops" in p and isinstance(p["ops"], list) and p["ops"] and "name" in p["ops"][0]:
            parts.append(op + ": " + ", ".join(f"{o['name']} {_num(o['magnitude'])}" for o in p["ops"]))
        elif op == "mix":
            mode = s["config"]["mode"]
            skipped = p.get("skipped")
            partner = (p["partner"]["source_key"] or "?").rsplit("/", 1)[-1]
            parts.append(f"{mode} skipped ({skipped})" if skipped else f"{mode} {p['lambda']:.2f} + {partner}")
        elif op == "label_map":
            parts.append(f"label {p['from']}→{p['to']}")
        elif op == "quality_gate":  # first: captions show three lines
            parts.insert(0, ("DEGENERATE after " if p["degenerate"] else "") + f"{len(p['reasons']) - 1} redraw(s)")
        else:
            nums = [f"{k} {_num(v)}" for k, v in p.items() if isinstance(v, float)][:2]
            flags = [k for k, v in p.items() if v is True]
            if p.get("applied") is False or p.get("flip") is False:
                continue
            parts.append(" ".join([op, *nums, *flags]))
    return parts or ["(no change)"]


def _font():
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _tile(image: np.ndarray, caption: list[str], font) -> Image.Image:
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    pil = Image.fromarray(rgb)
    pil.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE + 14 * CAPTION_LINES + 4), "white")
    tile.paste(pil, ((TILE - pil.width) // 2, (TILE - pil.height) // 2))
    draw = ImageDraw.Draw(tile)
    lines: list[str] = []
    for text in caption:  # wrap at spaces; a word wider than the tile is cut
        line = ""
        for word in text.split(" "):
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=font) <= TILE - 4:
                line = trial
                continue
            if line:
                lines.append(line)
            line = word
            while draw.textlength(line, font=font) > TILE - 4 and len(line) > 1:
                cut = len(line)
                while draw.textlength(line[:cut], font=font) > TILE - 4 and cut > 1:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        if line:
            lines.append(line)
    for i, line in enumerate(lines[:CAPTION_LINES]):
        draw.text((2, TILE + 2 + 14 * i), line, fill="black", font=font)
    return tile


def preview_copies(image: np.ndarray, key: str, label_name: str | None, policy: Policy, copies: int, seed: int = 0,
                   gate: QualityGate | None = None) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:  # fmt: skip
    """Copies 1..``copies`` of a decoded source as a run makes them: ``(pixels, policy steps)`` each.

    ``key`` and ``label_name`` are the source's as the run lists them (they select the seeds, per-class rules and
    label maps). With ``gate``, degenerate first draws are re-drawn as the run's quality gate does (its step ends
    ``steps``).
    """
    augment = gate.for_source(policy, image) if gate is not None else policy.augment
    return [augment(image, seed, key, c, label_name)[:2] for c in range(1, copies + 1)]


def contact_sheet(rows: list[tuple[str, str | None, bytes]], policy_config: dict, copies: int, seed: int = 0,
                  gate: QualityGate | None = None) -> Image.Image:  # fmt: skip
    """Renders one row per ``(key, class name or None, bytes)``: the original, then ``copies`` captioned copies.

    The copies are ``preview_copies``: with the run's ``gate``, they are the copies a run writes (before encoding).
    """
    policy = Policy.from_config(policy_config)
    font = _font()
    tiles = []
    for key, label_name, data in rows:
        image, _ = decode_image(data)
        name = key.rpartition("/")[2]
        row = [_tile(image, [label_name or "original", name[-26:], "original" if label_name else ""], font)]
        for c, (out, steps) in enumerate(preview_copies(image, key, label_name, policy, copies, seed, gate), 1):
            row.append(_tile(out, [f"copy {c}", *summarize(steps)], font))
        tiles.append(row)
    w, h = tiles[0][0].size
    sheet = Image.new("RGB", (w * (copies + 1) + 4 * copies, h * len(tiles) + 4 * (len(tiles) - 1)), (200, 200, 200))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * (w + 4), r * (h + 4)))
    return sheet


def sample_per_class(images, seed: int = 0) -> list:
    """Picks one ``SourceImage`` per class, reproducibly."""
    by_class = _by_class(images)
    rnd = random.Random(seed)
    return [rnd.choice(v) for _, v in sorted(by_class.items())]


def read_samples(images, seed: int, read) -> list[tuple[str, str, bytes]]:
    """``(key, class, bytes)`` of one readable source per class: ``sample_per_class``'s pick, else the class's next.

    ``read(source)`` returns a source's bytes; a source it cannot read (gone since the listing, a dangling link)
    is passed over for the class's other sources in key order, after the pick.
    """
    by_class = _by_class(s for s in images if s.error is None)
    rows = []
    for pick in sample_per_class([s for v in by_class.values() for s in v], seed):
        members = by_class[pick.label_name]
        for s in [pick, *(m for m in members if m is not pick)]:
            try:
                rows.append((s.key, s.label_name, read(s)))
                break
            except OSError:
                continue
    return rows


def _by_class(images) -> dict[str, list]:
    by_class: dict[str, list] = {}
    for s in images:
        by_class.setdefault(s.label_name, []).append(s)
    return {name: sorted(v, key=lambda s: s.key) for name, v in by_class.items()}
