"""The period a conformance report covers: ``--period``, ``--since`` and ``--until``.

A period is half-open, ``[since, until)``, and either end may be open. A call belongs to the
period when its life in its tool (``created`` .. ``updated``) overlaps it; a dead letter when
it was created in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import ConfigurationError

__all__ = ["Period", "parse_period"]

_RELATIVE = re.compile(r"^(\d{1,4})([dwmy])$")
_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[qQ]([1-4])$")
_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}
_PERIOD_HELP = "all, 7d, 4w, 3m, 1y, 2026, 2026-03 or 2026-Q1"


@dataclass(frozen=True)
class Period:
    """``[since, until)``; ``None`` leaves that end open."""

    since: datetime | None = None
    until: datetime | None = None
    label: str = "all time"

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` falls in the period."""
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment < self.until
        )

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the interval ``[start, end]`` shares a moment with the period."""
        return (self.until is None or start < self.until) and (
            self.since is None or end >= self.since
        )


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _named(text: str, now: datetime) -> Period:
    value = text.strip()
    if value in ("", "all"):
        return Period()
    if match := _RELATIVE.match(value):
        days = int(match.group(1)) * _DAYS[match.group(2)]
        return Period(now - timedelta(days=days), None, f"last {value}")
    if match := _YEAR.match(value):
        year = int(match.group(1))
        return Period(_month_start(year, 1), _month_start(year + 1, 1), value)
    if match := _MONTH.match(value):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise ConfigurationError(f"--period {value!r}: no month {month}")
        return Period(_month_start(year, month), _month_start(year, month + 1), value)
    if match := _QUARTER.match(value):
        year, quarter = int(match.group(1)), int(match.group(2))
        first = 3 * (quarter - 1) + 1
        return Period(_month_start(year, first), _month_start(year, first + 3), value.upper())
    raise ConfigurationError(f"--period {value!r} is not a period", expected=_PERIOD_HELP)


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a date or time",
            expected="ISO 8601, e.g. 2026-01-31 or 2026-01-31T12:00+01:00",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_period(
    period: str | None = None,
    since: str | None = None,
    until: str | None = None,
    *,
    now: datetime,
) -> Period:
    """The period from the command line options; ``--since``/``--until`` narrow ``--period``.

    Dates without a zone are UTC. ``--until`` is exclusive.

    :raises ConfigurationError: an option that is not a period or a date (exit code 2).
    """
    base = _named(period or "all", now)
    start, end = base.since, base.until
    if since:
        start = _moment(since, "--since")
    if until:
        end = _moment(until, "--until")
    if start is not None and end is not None and end <= start:
        raise ConfigurationError("the period is empty: --until must be later than --since")
    if not since and not until:
        return base
    return Period(start, end, f"{_show(start, '...')} to {_show(end, 'now')}")


def _show(moment: datetime | None, missing: str) -> str:
    if moment is None:
        return missing
    midnight = moment.hour == moment.minute == moment.second == 0
    return moment.date().isoformat() if midnight else moment.isoformat(timespec="minutes")
