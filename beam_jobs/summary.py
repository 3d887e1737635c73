"""Human-readable text for the end of a run and for ``--dry-run``."""

from __future__ import annotations

import json
from typing import Any


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % w for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join("  " + line for line in lines)


def policy_text(policy: dict[str, Any]) -> str:
    """Returns the effective policy as one line per op."""
    lines = []
    for op in policy.get("ops", []):
        args = {k: v for k, v in op.items() if k != "op"}
        lines.append(f"  {op['op']}: {json.dumps(args, sort_keys=True)}")
    return "\n".join(lines)


def dry_run_text(plan: dict[str, Any]) -> str:
    """Returns the ``--dry-run`` report: images and planned records per class (and split), estimated output size."""
    per_class: dict[str, list[int]] = {}
    for split in plan["planned"].values():
        for name, row in split.items():
            totals = per_class.setdefault(name, [0, 0])
            totals[0] += row["images"]
            totals[1] += row["records"]
    order = [*plan["classes"], *(name for name in per_class if name not in plan["classes"])]
    rows = [[name, f"{per_class[name][0]:,}", f"{per_class[name][1]:,}"] for name in order if name in per_class]
    rows.append(["total", f"{sum(n for n, _ in per_class.values()):,}", f"{sum(r for _, r in per_class.values()):,}"])
    lines = [
        f"source: {plan['source']} ({plan['kind']})",
        f"classes: {len(per_class)}; ignored files: {plan['ignored']}; skipped non-images: {plan['skipped']}",
        _table(rows, ["class", "images", "records out"]),
    ]
    if len(plan["planned"]) > 1 or plan["augment_split"] not in plan["planned"]:
        splits = []
        for name, split in sorted(plan["planned"].items()):
            images, records = sum(r["images"] for r in split.values()), sum(r["records"] for r in split.values())
            role = (
                "augmented"
                if name == plan["augment_split"]
                else "originals" + (f" + {plan['tta_views']} test-time view(s) each" if plan["tta_views"] else "")
            )
            splits.append(f"{name} {images:,} images -> {records:,} records ({role})")
        lines.append("splits: " + "; ".join(splits))
    if plan["moves_labels"]:
        lines.append("records out are counted under their source's class (the run's table puts a mixed or label-mapped")
        lines.append("copy under its new class)")
    per_image = "per-source K from the balancing plan" if plan["balanced"] else f"{plan['records_per_image']}"
    lines += [
        f"records per augmented image: {per_image}; formats: {', '.join(plan['formats'])}",
        f"estimated output: {plan['estimated_bytes'] / 1e6:,.1f} MB per format (from input sizes; a rough guide)",
        "policy:",
        policy_text(plan["policy"]),
    ]
    return "\n".join(lines)


def gate_text(g: dict[str, Any]) -> str:
    """Returns one line on the quality gate's work (``counts.quality_gate`` of the manifest)."""
    reasons = ", ".join(f"{n} {r}" for r, n in g["reasons"].items() if n)
    return (
        f"quality gate: {g['degenerate_first_draw']:,} of {g['checked']:,} copies degenerate at first draw"
        + (f" ({reasons})" if reasons else "")
        + f"; {g['fixed_by_redraw']:,} fixed by {g['redraws']:,} re-draws; {g['still_degenerate']:,} still "
        "degenerate (kept, flagged in their recipe)"
    )


def run_summary_text(manifest: dict[str, Any], wall_seconds: float, runner: str, output: str) -> str:
    """Returns the end-of-run summary: counts, per-class table, wall time and copies/s."""
    c = manifest["counts"]
    rows = [
        [n, f"{v['images_in']:,}", f"{v['images_ok']:,}", f"{v['dead_letters']:,}", f"{v['records_out']:,}"]
        for n, v in c["per_class"].items()
    ]
    rows.append(
        ["total", f"{c['images_in']:,}", f"{c['images_ok']:,}", f"{c['dead_letters']:,}", f"{c['records_out']:,}"]
    )
    rate = c["records_out"] / wall_seconds if wall_seconds > 0 else 0.0
    shards = ", ".join(f"{len(v)} {k}" for k, v in manifest["shards"].items())
    return "\n".join(
        [
            f"beam-expand: wrote {c['records_out']:,} records ({shards} shards) to {output}",
            _table(rows, ["class", "images in", "ok", "dead letters", "records out"]),
            f"ignored files: {c['ignored_files']}; skipped non-images: {c['skipped_non_images']}; "
            f"dead letters: {c['dead_letters']} (see dead_letter.jsonl); open {output.rstrip('/')}/report.html",
            *([f"mix outcomes of augmented copies: {json.dumps(c['mix'])}"] if "mix" in c else []),
            *([gate_text(c["quality_gate"])] if "quality_gate" in c else []),
            f"runner: {runner}; wall time {wall_seconds:,.1f}s; {rate:,.1f} records/s",
            *(f"warning: {p}" for p in manifest["listing"].get("problems", [])),
        ]
    )
