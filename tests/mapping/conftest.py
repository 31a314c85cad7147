"""Fixtures of the mapping tests: a mapping context with every shipped transform."""

from __future__ import annotations

import pytest
from shipped_transforms import TRANSFORMS

from usm_bridge.mapping import MappingContext


@pytest.fixture
def context() -> MappingContext:
    return MappingContext(unit="it", instance="tool-a", transforms=TRANSFORMS)
