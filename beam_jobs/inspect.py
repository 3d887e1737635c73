"""``beam-expand verify OUT`` and ``beam-expand info OUT``: check and describe a published dataset.

Exit codes (for schedulers): 0 = the dataset is complete and matches its manifest; 1 = it does not (a missing or
changed shard, a count that does not add up); 2 = OUT is not a beam-expand dataset (no manifest).
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.sinks.manifest import MANIFEST, read_json
from beam_jobs.sinks.publish import SUCCESS, VerificationError, verify_shard
from schemas.record import field_names


def load_manifest(out: str) -> dict[str, Any]:
    """Reads ``beam_expand.json`` without its per-input rows (no command needs them; ``read_rows`` streams them).

    Raises:
        UserError: OUT holds no manifest.
    """
    path = FileSystems.join(out, MANIFEST)
    if not FileSystems.exists(path):
        raise UserError(f"{out} is not a beam-expand dataset (no {MANIFEST})")
    return read_json(path, rows=False)


def verify(out: str) -> list[str]:
    """Re-checks every shard (records, TFRecord CRCs, sha256, Parquet columns) and the counts; returns the problems."""
    manifest = load_manifest(out)
    problems = []
    if not FileSystems.exists(FileSystems.join(out, SUCCESS)):
        problems.append(f"{SUCCESS} is missing: the run that wrote {out} did not finish")
    columns = field_names(mixed=bool(manifest.get("mix")))
    # Datasets written before `view_index` existed (no --tta then) are whole without it.
    accepted = [columns, [c for c in columns if c != "view_index"]]
    for fmt, shards in manifest["shards"].items():
        total = 0
        for shard in shards:
            path = FileSystems.join(out, shard["file"])
            try:
                verify_shard(path, fmt, expected=shard["records"], sha256=shard.get("sha256"))
                found = _parquet_columns(path) if fmt == "parquet" else columns
                if found not in accepted:
                    problems.append(f"{path}: columns {found}, the record declares {columns}")
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
    problems += _check_mix_counts(manifest)
    if "quality_gate" in c:
        problems += _gate_problems(manifest)
    per_image = manifest["copies"] + int(manifest["include_original"])
    augmented = manifest.get("augment_split", manifest.get("split", "train"))
    per_eval_image = 1 + (manifest.get("tta") or {}).get("views", 0)  # the image and its test-time views
    for split, sc in c.get("per_split", {"": {"images_ok": c["images_ok"], "records_out": c["records_out"]}}).items():
        augmented_split = split in (augmented, "") or len(c.get("per_split", {})) == 1
        if augmented_split and manifest.get("copies_per_source"):  # a class-balancing plan: K differs per source
            dead = _dead_keys(out)
            orig = int(manifest["include_original"])
            expected = sum(k + orig for key, k in manifest["copies_per_source"].items() if key not in dead)
        else:
            expected = sc["images_ok"] * (per_image if augmented_split else per_eval_image)
        if sc["records_out"] != expected:
            problems.append(f"split {split or 'all'}: records_out {sc['records_out']} != expected {expected}")
    return problems


def _parquet_columns(path: str) -> list[str]:
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        return pq.ParquetFile(f).schema_arrow.names


def _augmented_copies(manifest: dict[str, Any]) -> int:
    """Records with copy_index >= 1: the augmented split's records minus its originals (views are copy 0)."""
    c = manifest["counts"]
    augmented = manifest.get("augment_split", manifest.get("split", "train"))
    per_split = c.get("per_split") or {augmented: {"images_ok": c["images_ok"], "records_out": c["records_out"]}}
    split = per_split.get(augmented, {"images_ok": 0, "records_out": 0})
    return split["records_out"] - (split["images_ok"] if manifest["include_original"] else 0)


def _check_mix_counts(manifest: dict[str, Any]) -> list[str]:
    """In a mixed run, every augmented copy has one mix outcome (mixed, unmixed, no_partner, partner_unusable)."""
    if not manifest.get("mix"):
        return []
    mix = manifest["counts"].get("mix", {})
    outcomes, copies = sum(mix.values()), _augmented_copies(manifest)
    if outcomes != copies:
        return [f"mix outcomes {mix} add up to {outcomes}, the dataset has {copies} augmented copies"]
    return []


def _gate_problems(manifest: dict[str, Any]) -> list[str]:
    """The quality gate checked every augmented copy; each degenerate first draw was fixed or is still flagged."""
    g = manifest["counts"]["quality_gate"]
    problems = []
    if g["checked"] != _augmented_copies(manifest):
        problems.append(f"quality gate checked {g['checked']} copies, the dataset has {_augmented_copies(manifest)}")
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
            + f"; seed {m['seed']}; recipe schema v{m['recipe_schema_version']}; run {m.get('run_id', '?')}"
            + (f"; test-time views: {', '.join(m['tta']['view_names'])}" if m.get("tta") else ""),
            _table(rows, ["class", "images in", "dead letters", "records"]),
            *_mix_lines(m),
            f"source: {m['source']['path']} ({m['source']['kind']})",
            "policy:",
            policy_text(m["policy"]),
            "packages: " + ", ".join(f"{k} {v}" for k, v in sorted(m["packages"].items())),
        ]
    )


def _mix_lines(m: dict[str, Any]) -> list[str]:
    """What ``info`` says about MixUp/CutMix: the settings, the outcome counts and the extra fields."""
    if not m.get("mix"):
        return []
    from transforms.mix import MIX_STATES, MixSpec

    counts = ", ".join(f"{k} {m['counts'].get('mix', {}).get(k, 0):,}" for k in MIX_STATES)
    return [f"mixing: {MixSpec.from_config(m['mix']).text()}", f"augmented copies: {counts}",
            "fields: label = dominant image's class, label_b, mix_lambda, soft_label"]  # fmt: skip
