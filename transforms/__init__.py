"""Augmentation ops, policies, seeding and the DoFns that apply them.

An op is a pair: ``sample_params(rng, meta)`` draws all randomness into a small JSON dict, and
``apply(image, params)`` is pure and deterministic (uint8 HWC in, uint8 HWC out, input never mutated).
"""
