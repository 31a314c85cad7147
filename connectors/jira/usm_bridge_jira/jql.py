"""JQL pieces the connector writes: quoted values and the incremental read's date bound.

Two Jira traps live here. A quoted JQL date such as ``updated >= "2024/03/31 01:59"`` has
minute precision and is read in the time zone of the account that runs the search (``/myself``
-> ``timeZone``), not UTC; writing a UTC time there skips or repeats hours of changes. An
unquoted number is read as epoch milliseconds instead (Atlassian's JQL date formats: "if you
omit the quote-marks, the number you supply will be interpreted as milliseconds after epoch"),
the same instant in every zone and to the millisecond, so the bound is written that way and
needs no request to learn the zone. And ticket content is untrusted, so every value goes into
JQL quoted and escaped.
"""

from __future__ import annotations

__all__ = ["epoch_bound", "quote"]


def quote(value: str) -> str:
    """``value`` as a JQL string literal: double-quoted, with backslashes and quotes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def epoch_bound(epoch_ms: int) -> str:
    """A JQL date value for the instant ``epoch_ms``: unquoted epoch milliseconds.

    Never negative: an overlap reaching back before 1970 (a cursor that has seen nothing) is
    the epoch itself, since a leading minus is JQL's syntax for a date relative to now.
    """
    return str(max(0, epoch_ms))
