"""Imports every op module so that each op is registered (see ``transforms.registry``)."""

from transforms import geometric  # noqa: F401
