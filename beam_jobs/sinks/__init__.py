"""Sinks: shard files written from the expanding workers, then finalized into a dataset directory."""
