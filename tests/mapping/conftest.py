"""Fixtures of the mapping tests: a mapping context with the built-in transforms."""

from __future__ import annotations

import pytest

from usm_bridge.builtin.transforms import TRANSFORMS
from usm_bridge.mapping import MappingContext


@pytest.fixture
def context() -> MappingContext:
    return MappingContext(unit="it", instance="tool-a", transforms=TRANSFORMS)
