"""Durations and bounded numbers a config file may give, refused when they make no sense.

A schedule interval of ``inf`` or ``nan`` used to stop the daemon silently, ``1e308`` crashed
it, and a huge page size or retry count only failed at the first request. Every interval,
timeout or other duration in a config is therefore a finite number of seconds between
:data:`MIN_SECONDS` and :data:`MAX_SECONDS` (``60``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``),
and numeric connector settings use the bounded types below, so that ``usm-bridge check``
refuses them with the file, line and key instead of the daemon failing later.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Final

from pydantic import BeforeValidator, Field

__all__ = [
    "MAX_SECONDS",
    "MIN_SECONDS",
    "Attempts",
    "Debounce",
    "Duration",
    "PageSize",
    "Term",
    "Wait",
    "parse_seconds",
    "spell_span",
]

#: Shortest duration a config may give: below a second a schedule or a timeout is a typo
#: (``0.5`` meant as minutes) or a busy loop.
MIN_SECONDS: Final = 1.0
#: Longest duration a config may give: a day (the daemon's census runs daily by default).
MAX_SECONDS: Final = 86_400.0
#: Longest wait between two attempts of a request.
MAX_WAIT_SECONDS: Final = 3_600.0
#: Longest debounce of an event: past a minute an event is no faster than a frequent poll.
MAX_DEBOUNCE_SECONDS: Final = 60.0

# Bounded digit counts: a number of seconds past a day needs no more, and the pattern stays
# linear on any input.
_DURATION = re.compile(r"^[ \t]*([0-9]{1,12}(?:\.[0-9]{1,12})?)[ \t]*(ms|s|m|h|d)?[ \t]*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, None: 1.0}
_EXAMPLE: Final = "a duration such as 60, '90s', '5m', '1h' or '1d'"


def parse_seconds(
    value: object, *, minimum: float = MIN_SECONDS, maximum: float = MAX_SECONDS
) -> float:
    """``30``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` -> seconds, within the bounds.

    :raises ValueError: for anything else, saying what is expected.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {_EXAMPLE}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float: certainly more than a day
            seconds = math.inf
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected {_EXAMPLE}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds; expected {_EXAMPLE}")
    if not minimum <= seconds <= maximum:
        raise ValueError(
            f"a duration must be between {_spell(minimum)} and {_spell(maximum)}, "
            f"not {_spell(seconds)}"
        )
    return seconds


def _spell(seconds: float) -> str:
    if seconds >= 86_400 * 1_000:
        return "more than 1000 days"
    return f"{seconds / 86_400:g} days" if seconds > 86_400 else f"{seconds:g} s"


def spell_span(span: timedelta) -> str:
    """A span in words for evidence and notes, in its largest whole-ish unit: ``3 days``,
    ``12 hours``, ``90 minutes``, ``45 s``."""
    seconds = span.total_seconds()
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if seconds == size:
            return f"1 {unit}"
        if seconds >= 2 * size:
            return f"{round(seconds / size, 1):g} {unit}s"
    return f"{seconds:g} s"


def _wait(value: object) -> float:
    return parse_seconds(value, minimum=0.0, maximum=MAX_WAIT_SECONDS)


def _debounce(value: object) -> float:
    return parse_seconds(value, minimum=0.0, maximum=MAX_DEBOUNCE_SECONDS)


#: Longest term an agreement may set (a target time, a confirmation period): a year and a day.
MAX_TERM_SECONDS: Final = 366 * 86_400.0


def _term(value: object) -> float:
    return parse_seconds(value, maximum=MAX_TERM_SECONDS)


#: An interval, timeout or other duration: finite, between 1 s and 1 day.
Duration = Annotated[float, BeforeValidator(parse_seconds)]
#: A pause between attempts (a backoff): finite, between 0 and an hour; 0 retries at once.
Wait = Annotated[float, BeforeValidator(_wait)]
#: How long an event waits for more before it wakes a cycle: 0 (at once) to a minute. Unlike
#: a schedule, a debounce under a second is meant ("250ms", 0.25), not a typo: it is the floor
#: under an event's lag.
Debounce = Annotated[float, BeforeValidator(_debounce)]
#: A term of an agreement (a target time, how long until silence confirms): 1 s to 366 days.
Term = Annotated[float, BeforeValidator(_term)]
#: How many attempts one request gets.
Attempts = Annotated[int, Field(ge=1, le=100)]
#: How many records one page asks a tool for.
PageSize = Annotated[int, Field(ge=1, le=10_000)]
