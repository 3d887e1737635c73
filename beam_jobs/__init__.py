"""The beam-expand job: CLI, pipeline, sources and sinks."""
