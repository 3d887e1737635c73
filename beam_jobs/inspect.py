"""``beam-expand verify OUT`` and ``beam-expand info OUT``: check and describe a published dataset.

Exit codes (for schedulers): 0 = the dataset is complete and matches its manifest; 1 = it does not (a missing or
changed shard, a count that does not add up); 2 = OUT is not a beam-expand dataset (no manifest).
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.sinks.finalize import MANIFEST
from beam_jobs.sinks.publish import SUCCESS, VerificationError, verify_shard


def load_manifest(out: str) -> dict[str, Any]:
    """Reads ``beam_expand.json``.

    Raises:
        UserError: OUT holds no manifest.
    """
    path = FileSystems.join(out, MANIFEST)
    if not FileSystems.exists(path):
        raise UserError(f"{out} is not a beam-expand dataset (no {MANIFEST})")
    with FileSystems.open(path) as f:
        return json.load(f)


def verify(out: str) -> list[str]:
    """Re-checks every shard (records, TFRecord CRCs, sha256) and the counts; returns the problems found."""
    manifest = load_manifest(out)
    problems = []
    if not FileSystems.exists(FileSystems.join(out, SUCCESS)):
        problems.append(f"{SUCCESS} is missing: the run that wrote {out} did not finish")
    for fmt, shards in manifest["shards"].items():
        total = 0
        for shard in shards:
            path = FileSystems.join(out, shard["file"])
            try:
                verify_shard(path, fmt, expected=shard["records"], sha256=shard.get("sha256"))
            except VerificationError as e:
                problems.append(str(e))
            total += shard["records"]
        if total != manifest["counts"]["records_out"]:
            problems.append(
                f"{fmt} shards hold {total} records, the manifest counts {manifest['counts']['records_out']}"
            )
    c = manifest["counts"]
    if c["images_in"] != c["images_ok"] + c["dead_letters"]:
        problems.append(f"images_in {c['images_in']} != images_ok {c['images_ok']} + dead letters {c['dead_letters']}")
    if "quality_gate" in c:
        problems += _gate_problems(manifest)
    per_image = manifest["copies"] + int(manifest["include_original"])
    if manifest.get("copies_per_source"):  # a class-balancing plan: K differs per source
        dead = _dead_keys(out)
        orig = int(manifest["include_original"])
        expected = sum(k + orig for key, k in manifest["copies_per_source"].items() if key not in dead)
        if c["records_out"] != expected:
            problems.append(f"records_out {c['records_out']} != {expected} planned for the sources that were read")
        return problems
    augmented = manifest.get("augment_split", manifest.get("split", "train"))
    for split, sc in c.get("per_split", {"": {"images_ok": c["images_ok"], "records_out": c["records_out"]}}).items():
        expected = sc["images_ok"] * (per_image if split in (augmented, "") or len(c.get("per_split", {})) == 1 else 1)
        if sc["records_out"] != expected:
            problems.append(f"split {split or 'all'}: records_out {sc['records_out']} != expected {expected}")
    return problems


def _gate_problems(manifest: dict[str, Any]) -> list[str]:
    """The quality gate checked every augmented copy; each degenerate first draw was fixed or is still flagged."""
    c, g = manifest["counts"], manifest["counts"]["quality_gate"]
    augmented = manifest.get("augment_split", manifest.get("split", "train"))
    per_split = c.get("per_split") or {augmented: {"images_ok": c["images_ok"], "records_out": c["records_out"]}}
    originals = sum(
        sc["images_ok"] for split, sc in per_split.items() if split != augmented or manifest["include_original"]
    )
    problems = []
    if g["checked"] != c["records_out"] - originals:
        problems.append(f"quality gate checked {g['checked']} copies, the dataset has {c['records_out'] - originals}")
    if g["degenerate_first_draw"] != g["fixed_by_redraw"] + g["still_degenerate"]:
        problems.append(
            f"quality gate: {g['degenerate_first_draw']} degenerate first draws != {g['fixed_by_redraw']} fixed + "
            f"{g['still_degenerate']} still degenerate"
        )
    return problems


def _dead_keys(out: str) -> set[str]:
    with FileSystems.open(FileSystems.join(out, "dead_letter.jsonl")) as f:
        return {json.loads(line)["source_key"] for line in f.read().decode("utf-8").splitlines() if line.strip()}


def info_text(out: str) -> str:
    """Returns a human-readable description of a dataset directory."""
    from beam_jobs.summary import _table, policy_text

    m = load_manifest(out)
    c = m["counts"]
    rows = [[n, f"{v['images_in']:,}", f"{v['dead_letters']:,}", f"{v['records_out']:,}"]
            for n, v in c["per_class"].items()]  # fmt: skip
    shards = ", ".join(f"{len(v)} {k} ({sum(s['bytes'] for s in v) / 1e6:,.1f} MB)" for k, v in m["shards"].items())
    return "\n".join(
        [
            f"{out}: {m['name']} / {m['split']}, {c['records_out']:,} records in {shards}",
            f"classes: {len(m['class_names'])}; copies per image: {m['copies']}"
            + (" + original" if m["include_original"] else "")
            + f"; seed {m['seed']}; recipe schema v{m['recipe_schema_version']}; run {m.get('run_id', '?')}",
            _table(rows, ["class", "images in", "dead letters", "records"]),
            f"source: {m['source']['path']} ({m['source']['kind']})",
            "policy:",
            policy_text(m["policy"]),
            "packages: " + ", ".join(f"{k} {v}" for k, v in sorted(m["packages"].items())),
        ]
    )
