"""Spans in words, as notes and report evidence give them (``spell_span``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from usm_bridge.durations import spell_span


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(days=3), "3 days"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=7, hours=1), "7 days"),
        (timedelta(days=1, hours=12), "36 hours"),
        (timedelta(hours=2), "2 hours"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(0), "0 s"),
    ],
)
def test_a_span_is_spelt_in_its_largest_unit(span: timedelta, words: str) -> None:
    assert spell_span(span) == words
