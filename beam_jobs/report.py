"""``report.html`` + PNGs beside a dataset: what a person opens first after a run.

    beam-expand report out/flowers        # also written at the end of every local run

Per-class counts before and after as a bar chart, a contact sheet per class (one source: its original or decoded
source and its copies, captioned with the ops applied), the policy, the counts and the dead letters.
"""

from __future__ import annotations

import html
import io
import json

import numpy as np
from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageDraw

from beam_jobs.inspect import load_manifest
from beam_jobs.paths import match_under
from beam_jobs.preview import _font, _tile, summarize

MAX_COPIES_SHOWN = 6


def bar_chart(per_class: dict[str, dict], width: int = 760) -> Image.Image:
    """Horizontal bars per class: images in (light) and records out (dark), with the numbers."""
    font = _font()
    names = list(per_class)
    row, left = 34, 150
    img = Image.new("RGB", (width, 40 + row * len(names)), "white")
    draw = ImageDraw.Draw(img)
    top = max([max(v["images_in"], v["records_out"]) for v in per_class.values()] + [1])
    scale = (width - left - 80) / top
    draw.text((left, 8), "images in (light) / records out (dark)", fill="black", font=font)
    for i, name in enumerate(names):
        y = 32 + i * row
        v = per_class[name]
        draw.text((8, y + 6), name[:22], fill="black", font=font)
        draw.rectangle([left, y, left + v["images_in"] * scale, y + 12], fill=(160, 190, 230))
        draw.rectangle([left, y + 14, left + v["records_out"] * scale, y + 26], fill=(40, 90, 170))
        draw.text((left + v["images_in"] * scale + 6, y), f"{v['images_in']:,}", fill="black", font=font)
        draw.text((left + v["records_out"] * scale + 6, y + 14), f"{v['records_out']:,}", fill="black", font=font)
    return img


_BATCH = 16  # rows read at a time when picking sample images out of a row group


def _samples(out: str, manifest: dict) -> dict[str, list[dict]]:
    """Picks one source per class and returns its records, reading images only from the row groups that hold them."""
    import pyarrow.parquet as pq

    files = [m.path for m in match_under(out.rstrip("/") + "/", "*.parquet-*")]
    chosen: dict[str, str] = {}  # class -> source shown for it
    shown: dict[str, str] = {}  # and back
    rows: dict[str, list[dict]] = {}
    wanted = {n for n, v in manifest["counts"]["per_class"].items() if v["records_out"]}
    keys = ["label_name", "source_key", "copy_index"]
    for path in files:
        if wanted <= set(chosen):
            break  # every class has its sample; all copies of a source share a shard
        with FileSystems.open(path) as f:
            pf = pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)  # stream column chunks
            for group in range(pf.num_row_groups):
                meta = pf.read_row_group(group, columns=keys).to_pylist()
                for r in meta:
                    if r["label_name"] not in chosen and r["source_key"] not in shown:
                        chosen[r["label_name"]] = r["source_key"]
                        shown[r["source_key"]] = r["label_name"]
                # every record of a chosen source, also copies a label map or a mix gave another class
                hits = [i for i, r in enumerate(meta) if r["source_key"] in shown]
                if not hits:
                    continue
                views = ["view_index"] if "view_index" in pf.schema_arrow.names else []
                # In small batches: a row group holds 256 images, which need not all sit in memory at once.
                start = 0
                for batch in pf.iter_batches(_BATCH, row_groups=[group], columns=[*keys, *views, "image", "recipe"]):
                    for i in (i for i in hits if start <= i < start + batch.num_rows):
                        r = batch.slice(i - start, 1).to_pylist()[0]
                        rows.setdefault(shown[r["source_key"]], []).append(r)
                    start += batch.num_rows
                    if start > hits[-1]:
                        break
    order = lambda r: (r["copy_index"], r.get("view_index", 0))  # noqa: E731
    return {n: sorted(v, key=order)[: MAX_COPIES_SHOWN + 1] for n, v in sorted(rows.items())}


def contact_sheet(records: list[dict]) -> Image.Image:
    """One row: the records of one source, captioned with copy index and ops."""
    font = _font()
    tiles = []
    for r in records:
        image = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB"))
        steps = [s for s in json.loads(r["recipe"]) if s["op"] not in ("decode", "encode", "resize")]
        steps.sort(key=lambda s: s["op"] != "mix")  # a mixed copy's partner first: captions have few lines
        name = f"copy {r['copy_index']}" if r["copy_index"] else "original"
        caption = [f"view {r['view_index']}" if r.get("view_index") else name, *summarize(steps)]
        tiles.append(_tile(image, caption, font))
    w, h = tiles[0].size
    sheet = Image.new("RGB", (len(tiles) * (w + 4), h), (200, 200, 200))
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * (w + 4), 0))
    return sheet


def _save(img: Image.Image, path: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # a report picture: speed over the last few percent of size
    with FileSystems.create(path) as f:
        f.write(buf.getvalue())


def write_report(out: str, manifest: dict | None = None) -> str:
    """Writes ``report.html`` and ``report/*.png`` into a dataset directory; returns the HTML path.

    ``manifest`` is the dataset's ``beam_expand.json`` when the caller holds it already (the finalize step: it lists
    every input, so reading a second copy would raise the job's peak memory).
    """
    from beam_jobs.summary import gate_text, policy_text

    m = manifest if manifest is not None else load_manifest(out)
    c = m["counts"]
    _save(bar_chart(c["per_class"]), FileSystems.join(out, "report", "class_counts.png"))
    sheets = []
    for i, (name, records) in enumerate(_samples(out, m).items()):
        file = f"report/samples_{i:03d}.png"
        _save(contact_sheet(records), FileSystems.join(out, file))
        sheets.append((name, records[0]["source_key"], file))
    with FileSystems.open(FileSystems.join(out, "dead_letter.jsonl")) as f:
        dead = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(n)}</td><td>{v['images_in']:,}</td><td>{v['dead_letters']:,}</td><td>{v['records_out']:,}</td></tr>"
        for n, v in c["per_class"].items()
    )
    dead_rows = "".join(
        f"<tr><td>{e(d['source_key'])}</td><td>{e(d['reason'])}</td><td>{e(d['message'][:120])}</td></tr>"
        for d in dead[:200]
    )
    sheet_html = "".join(
        f"<h3>{e(name)} <small>{e(key)}</small></h3><img src='{file}' alt='{e(name)} samples'>"
        for name, key, file in sheets
    )
    gate = f"<p>{e(gate_text(c['quality_gate']))}.</p>" if "quality_gate" in c else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(m["name"])} — beam-expand report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1500px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>
<h1>{e(m["name"])} / {e(m["split"])}: {c["records_out"]:,} records</h1>
<p>{c["images_in"]:,} images in, {c["images_ok"]:,} expanded, {c["dead_letters"]:,} dead letters, seed {m["seed"]},
{m["copies"]} copies per image{" + original" if m["include_original"] else ""}; run {e(str(m.get("run_id", "")))}.</p>
{gate}
<h2>Classes</h2><img src="report/class_counts.png" alt="class counts">
<table><tr><th>class</th><th>images in</th><th>dead letters</th><th>records out</th></tr>{rows}</table>
<h2>Samples</h2>{sheet_html}
<h2>Policy</h2><pre>{e(policy_text(m["policy"]))}</pre>
<h2>Dead letters ({len(dead):,})</h2><table><tr><th>source</th><th>reason</th><th>message</th></tr>{dead_rows}</table>
</body></html>
"""
    path = FileSystems.join(out, "report.html")
    with FileSystems.create(path) as f:
        f.write(page.encode("utf-8"))
    return path
