"""Shared fixtures: generated image folders, the flowers-mini photos, a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import FLOWERS_MINI, make_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "animals")


@pytest.fixture
def flowers_mini() -> Path:
    if not FLOWERS_MINI.is_dir():
        pytest.skip("../shared/data/flowers-mini is not present")
    return FLOWERS_MINI


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
