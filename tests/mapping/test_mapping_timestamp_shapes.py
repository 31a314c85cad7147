"""Timestamps in a tool's fixed shape read as strptime reads them, and anything else left to
strptime (its errors included)."""

from __future__ import annotations

from datetime import datetime

import pytest

from usm_bridge.mapping.timestamp_shapes import read_fixed_shape
from usm_bridge.mapping.transforms import parse_datetime

JIRA = "%Y-%m-%dT%H:%M:%S.%f%z"
SERVICENOW = "%Y-%m-%d %H:%M:%S"
READ = [
    (JIRA, "2021-01-17T12:34:00.000+0000"),
    (JIRA, "2021-01-17T12:34:56.1-0530"),
    (JIRA, "2024-02-29T23:59:59.123456+1400"),
    (SERVICENOW, "2016-01-22 14:28:24"),
    (SERVICENOW, "2016-12-31 00:00:00"),
]
LEFT_TO_STRPTIME = [
    (JIRA, "2021-01-17T12:34:00.000+00:00"),  # an offset with a colon
    (JIRA, "2021-01-17T12:34:00+0000"),  # no fraction
    (SERVICENOW, "2016-1-22 14:28:24"),  # a single digit
    (SERVICENOW, "2016-13-22 14:28:24"),  # no month 13
    (SERVICENOW, "2016-02-30 14:28:24"),  # no 30 February
    (SERVICENOW, "2016-01-22 24:00:00"),
    (JIRA, "2021-01-17T24:00:00.000+0000"),  # hour 24: later Pythons read it as midnight
    (SERVICENOW, "2016-01-22T14:28:24"),  # the other shape
    ("%d-%m-%Y %H:%M", "22-01-2016 14:28"),  # a format not known here
]


@pytest.mark.parametrize(("format", "text"), READ)
def test_a_fixed_shape_reads_as_strptime_reads_it(format: str, text: str) -> None:
    got = read_fixed_shape(text, format)
    expected = datetime.strptime(text, format)
    assert got is not None
    assert (got, got.utcoffset(), got.tzinfo) == (expected, expected.utcoffset(), expected.tzinfo)


@pytest.mark.parametrize(("format", "text"), LEFT_TO_STRPTIME)
def test_other_texts_are_left_to_strptime(format: str, text: str) -> None:
    assert read_fixed_shape(text, format) is None
    try:
        expected: datetime | str = datetime.strptime(text, format)
    except ValueError:
        expected = "refused"
    try:
        got: datetime | str = parse_datetime(text, format)
    except ValueError as exc:
        assert str(exc) == f"{text!r} is not a timestamp in {format}"
        got = "refused"
    if isinstance(expected, datetime) and expected.tzinfo is None:
        assert isinstance(got, datetime)
        expected = expected.replace(tzinfo=got.tzinfo)
    assert got == expected
