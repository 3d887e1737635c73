"""``beam-expand replay``: re-derive one copy from a dataset directory (or a recipe and an image), bit for bit.

beam-expand replay out/flowers --source-key daisy/5547758_eea9edfd54_n.jpg --copy-index 3 --out copy.jpg
beam-expand replay --recipe recipe.json --image daisy.jpg --out copy.jpg
"""

from __future__ import annotations

import pyarrow.dataset as pads
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.paths import match_under
from beam_jobs.sinks.manifest import MANIFEST, read_json
from beam_jobs.sources.archive import read_members


def find_record(out_dir: str, source_key: str, copy_index: int, view_index: int = 0) -> dict:
    """Returns the stored record (from the Parquet shards) of one copy, or of one test-time view (``--tta``).

    Raises:
        UserError: No Parquet shards, or no such copy.
    """
    files = [m.path for m in match_under(out_dir.rstrip("/") + "/", "*.parquet-*")]
    if not files:
        raise UserError(f"{out_dir} has no Parquet shards (replay reads them); was it written with --formats parquet?")
    wanted = (pads.field("source_key") == source_key) & (pads.field("copy_index") == copy_index)
    for path in sorted(files):  # opened through Beam: any filesystem Beam reads (pyarrow's own URIs cover fewer)
        with FileSystems.open(path) as f:
            shard = pq.ParquetFile(f)
            has_views = "view_index" in shard.schema_arrow.names  # written before it existed: view 0 only
            if not has_views and view_index:
                continue
            f.seek(0)
            table = pq.read_table(f, filters=wanted & (pads.field("view_index") == view_index) if has_views else wanted)
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]
    raise UserError(f"no record with source_key={source_key!r}, copy_index={copy_index} and "
                    f"view_index={view_index} in {out_dir}")  # fmt: skip


def source_bytes(out_dir: str, source_key: str, source: str | None = None) -> bytes:
    """Reads a source image's bytes: from ``source`` if given, else from where the manifest says the run read.

    Raises:
        UserError: The source is gone or does not hold the key.
    """
    manifest = read_json(FileSystems.join(out_dir, MANIFEST), rows=False)
    kind = manifest["source"]["kind"]
    path = source or manifest["source"]["path"]
    if kind == "folder" and not path.lower().endswith((".tgz", ".tar", ".tar.gz")):
        target = FileSystems.join(path.rstrip("/"), source_key)
        if not FileSystems.exists(target):
            raise UserError(f"source image {target} not found; pass --source <dataset root>")
        with FileSystems.open(target) as f:
            return f.read()
    name = manifest["source"].get("archive_prefix", "") + source_key
    data = read_members(path, {name}).get(name)
    if data is not None:
        return data
    raise UserError(f"{source_key} not found in archive {path}; pass --source <archive or dataset root>")
