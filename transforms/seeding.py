"""Randomness as a pure function of (job seed, stable source key, copy index, op position).

Never global RNG state, Python ``hash()`` (salted per process), bundle order, worker id or time: a Beam retry,
a rerun or a run with more workers must draw exactly the same numbers.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np


@functools.lru_cache(maxsize=1024)  # the K copies of a source ask for the same digest
def key_digest(source_key: str) -> tuple[int, int, int, int]:
    """Returns a stable 128-bit digest of ``source_key`` as four 32-bit words (blake2b, never ``hash()``)."""
    digest = hashlib.blake2b(source_key.encode("utf-8"), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))  # type: ignore[return-value]


# Marks the entropy of a re-drawn copy (the quality gate's attempts 1..N), so that its words can never line up with
# an attempt-0 sequence of another copy or op.
_REDRAW = 0x52454452  # "REDR"


def op_rng(seed: int, source_key: str, copy_index: int, op_index: int, attempt: int = 0) -> np.random.Generator:
    """Returns the generator for one op of one copy of one source image.

    Args:
        seed: The job seed (non-negative).
        source_key: Stable id of the source image.
        copy_index: 1..K for augmented copies.
        op_index: Position of the op in the flattened policy.
        attempt: 0 for the first draw of a copy (the entropy every earlier version used, so outputs do not
            change); 1..N for the quality gate's re-draws (``transforms.quality``), each a sub-seed of its own.

    Returns:
        A fresh ``numpy.random.Generator`` (PCG64) seeded from a ``SeedSequence`` of those values.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    entropy = [*_words(seed), *key_digest(source_key), *_words(copy_index), *_words(op_index)]
    if attempt:
        entropy += [_REDRAW, *_words(attempt)]
    # The words as one uint32 array are exactly what SeedSequence makes of the list of ints (each int becomes its
    # little-endian 32-bit words), without its per-int conversions: half the cost of a generator per op and copy.
    return np.random.default_rng(np.array(entropy, dtype=np.uint32))


def _words(value: int) -> list[int]:
    """``value``'s little-endian 32-bit words (at least one), as ``numpy.random.SeedSequence`` splits an int."""
    words = [value & 0xFFFFFFFF]
    while value := value >> 32:
        words.append(value & 0xFFFFFFFF)
    return words


# The MixUp/CutMix draws of a copy (``transforms.mix``) use their own stream: an op position no policy reaches.
MIX_STREAM = 2**32 - 1


def mix_rng(seed: int, source_key: str, copy_index: int) -> np.random.Generator:
    """Returns the generator of one copy's mix draws (mode, lambda, box centre); independent of its policy's."""
    return op_rng(seed, source_key, copy_index, MIX_STREAM)


def stable_fraction(source_key: str, salt: str = "") -> float:
    """Maps a key to a deterministic number in [0, 1), e.g. for sampling or split assignment."""
    digest = hashlib.sha256(f"{salt}\0{source_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(source_key: str, splits: list[tuple[str, float]] | None, default: str = "train") -> str:
    """Assigns a source to a split by hashing its key (before fan-out, so all its copies land in one split).

    Args:
        source_key: Stable id of the source image.
        splits: ``[(name, fraction), ...]`` summing to 1, in the order given on the command line; None for one
            split.
        default: The split when ``splits`` is None.
    """
    if not splits:
        return default
    u = stable_fraction(source_key, "split")
    total = 0.0
    for name, fraction in splits:
        total += fraction
        if u < total:
            return name
    return splits[-1][0]
