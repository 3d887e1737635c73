"""Input sources: image folders, streamed archives, named datasets and their downloads."""
