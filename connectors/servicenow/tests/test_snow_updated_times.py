"""ServiceNow's ``sys_updated_on`` read in its fixed shape; an unreadable one loses nothing.

The record's time only measures lag (the cursor keeps the text itself), so a record whose time
cannot be read is still yielded, with no time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from usm_bridge_servicenow.connector import _updated_of


def test_the_table_apis_shape_reads_as_utc() -> None:
    row = {"sys_updated_on": "2016-01-22 14:28:24"}
    assert _updated_of(row) == datetime(2016, 1, 22, 14, 28, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["", None, "yesterday", "2016-02-30 14:28:24", "2016-01-22T14:28:24Z"]
)
def test_an_unreadable_or_missing_time_is_none(value: Any) -> None:
    assert _updated_of({"sys_updated_on": value}) is None
    assert _updated_of({}) is None


def test_single_digit_fields_still_read_as_strptime_reads_them() -> None:
    assert _updated_of({"sys_updated_on": "2016-1-2 4:28:24"}) == datetime(
        2016, 1, 2, 4, 28, 24, tzinfo=UTC
    )
