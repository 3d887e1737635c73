"""Imports every op module so that each op is registered (see ``transforms.registry``)."""

from transforms import autoaugment, color, compose, geometric, noise, occlusion  # noqa: F401
