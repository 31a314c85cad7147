"""Timestamps in the fixed shapes tools send, read without ``strptime``.

``datetime.strptime`` costs about as much as the rest of a field's mapping (it consults the
locale and builds its answer through a general parser on every call), and every record a
tool sends carries a few timestamps in one fixed shape: Jira's ``2021-01-17T12:34:00.000+0000``,
ServiceNow's ``2016-01-22 14:28:24``. :func:`read_fixed_shape` reads a text that has exactly
such a shape (two-digit fields, ASCII digits) for the formats it knows, and gives the datetime
``strptime`` gives for it; anything else (another format, single digits, a value out of range)
is left to ``strptime``, which then decides as it always did.
"""

from __future__ import annotations

import re
from datetime import datetime

__all__ = ["read_fixed_shape"]

_DATE_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
#: strptime format -> the exact shape read here: date and time, and for the second one a
#: fraction of 1 to 6 digits and an offset ``+HHMM`` (what strptime's ``%f`` and ``%z`` take).
_SHAPES = {
    "%Y-%m-%d %H:%M:%S": re.compile(_DATE_TIME.replace("[T ]", " ")),
    "%Y-%m-%dT%H:%M:%S.%f%z": re.compile(
        _DATE_TIME.replace("[T ]", "T") + r"\.[0-9]{1,6}[+-][0-9]{2}[0-5][0-9]"
    ),
}


def read_fixed_shape(text: str, format: str) -> datetime | None:
    """The datetime ``datetime.strptime(text, format)`` gives, when ``text`` has the exact
    shape of a format known here; ``None`` otherwise (let ``strptime`` read it)."""
    pattern = _SHAPES.get(format)
    if pattern is None or pattern.fullmatch(text) is None:
        return None
    # Each shape here is also an ISO 8601 text, which ``fromisoformat`` reads (in C, ten times
    # faster than taking the match apart) into the same datetime and zone as ``strptime``.
    # An hour of 24 is refused first: later Pythons read it as the next day's midnight.
    if text[11:13] >= "24":
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # out of range: strptime's own error says so
        return None
