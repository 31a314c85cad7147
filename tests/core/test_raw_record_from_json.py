"""``RawRecord.from_json``: a record of a parsed page, built without validating its data again.

It must give the record validation gives, and refuse, naming the record, what a record cannot
hold in the fields the bridge indexes by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from usm_bridge.connector import RawRecord

ISSUE: dict[str, Any] = {
    "id": "10001",
    "key": "IT-1",
    "fields": {"summary": "Drucker", "labels": ["a"], "comment": {"comments": [], "total": 0}},
}
WHEN = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_it_gives_the_record_validation_gives() -> None:
    options: dict[str, Any] = {
        "remote_id": "10001",
        "remote_key": "IT-1",
        "updated": WHEN,
        "url": "https://jira.example/browse/IT-1",
    }
    built = RawRecord.from_json(ISSUE, **options)
    validated = RawRecord(data=ISSUE, **options)
    assert built == validated
    assert built.model_dump(mode="json") == validated.model_dump(mode="json")
    assert RawRecord.model_validate(built.model_dump(mode="json")) == validated


def test_the_optional_fields_may_be_left_out() -> None:
    assert RawRecord.from_json({}, remote_id="x") == RawRecord(remote_id="x", data={})


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"remote_id": 10001}, "remote_id is int"),
        ({"remote_id": "10001", "remote_key": 7}, "remote_key is int"),
        ({"remote_id": "10001", "updated": "2026-12-06"}, "updated is str"),
        ({"remote_id": "10001", "url": ["x"]}, "url is list"),
    ],
)
def test_a_malformed_field_is_refused_naming_the_record(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=r"record .*10001") as raised:
        RawRecord.from_json(ISSUE, **options)
    assert problem in str(raised.value)


def test_data_that_is_not_a_json_object_is_refused_naming_the_record() -> None:
    with pytest.raises(ValueError) as raised:
        RawRecord.from_json([ISSUE], remote_id="10001", remote_key="IT-1")  # type: ignore[arg-type]
    assert "IT-1" in str(raised.value) and "data is list, not a JSON object" in str(raised.value)
    with pytest.raises(ValueError) as raised:
        RawRecord.from_json({1: "x"}, remote_id="10001", remote_key="IT-1")
    assert "IT-1" in str(raised.value) and "a key that is not a string" in str(raised.value)
