"""Fixtures of the core tests: the built wheels, shared by the packaging tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from wheel_builds import build_wheels


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each distribution's wheel (distribution name -> file), built once per session."""
    return build_wheels(tmp_path_factory.mktemp("sources"), tmp_path_factory.mktemp("wheels"))
