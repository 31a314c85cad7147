"""JQL pieces the connector writes: quoted values and minute-precision dates in the user's zone.

Two Jira traps live here. JQL dates such as ``updated >= "2024/03/31 01:59"`` have minute
precision and, written without a zone, are read in the time zone of the account that runs the
search (``/myself`` -> ``timeZone``), not UTC; writing a UTC time there skips or repeats hours of
changes. And ticket content is untrusted, so every value goes into JQL quoted and escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["jql_minute", "quote", "zone"]

_JQL_MINUTE = "%Y/%m/%d %H:%M"


def quote(value: str) -> str:
    """``value`` as a JQL string literal: double-quoted, with backslashes and quotes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def zone(name: str | None) -> ZoneInfo:
    """The ``ZoneInfo`` of a Jira ``timeZone`` (an IANA name); UTC when absent or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def jql_minute(moment: datetime, tz: ZoneInfo) -> str:
    """A JQL date at or before ``moment``, as the searching user's zone reads it.

    The minute is floored (JQL cannot say seconds), so the bound never lies after ``moment``.
    When the local wall time is ambiguous (the hour repeated when summer time ends), Jira may
    read it as either occurrence; the bound then steps back one hour so that both readings lie
    at or before ``moment``. Fetching a little more is harmless: the connector de-duplicates.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(tz)
    naive = local.replace(tzinfo=None, second=0, microsecond=0)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        local = (moment - timedelta(hours=1)).astimezone(tz)
    return local.strftime(_JQL_MINUTE)
