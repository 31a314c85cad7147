"""Helpers for the store suite: calls to store, and a clock that moves forward."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from usm_bridge.model import Call, SourceRef

MakeCall = Callable[..., Call]

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture
def make_call() -> MakeCall:
    """Build a valid call; keyword arguments override fields, ``remote_id`` sets the source."""

    def build(remote_id: str | None = None, instance: str = "hr-jira", **fields: Any) -> Call:
        values: dict[str, Any] = {
            "unit": "hr",
            "title": "Laptop does not boot",
            "description": "Since this morning.",
            "created": T0,
            "updated": T0 + timedelta(minutes=5),
        }
        if remote_id is not None:
            values["source"] = SourceRef(instance=instance, remote_id=remote_id)
        values.update(fields)
        return Call(**values)

    return build
