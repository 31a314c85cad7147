"""Tool-neutral mapping transforms: text, numbers, lists, templates and timestamps.

Mapping files name these (``transform: strip``); a transform gets the raw value and the
keyword arguments the file gives (``transform: {name: parse_datetime, args: {format:
"%d-%m-%Y %H:%M"}}``). The engine never calls a transform on an empty value, so each one may
assume it has something; a value it cannot convert raises ``ValueError``, which dead-letters
the record with this message.

Only conversions that mean the same for every tool live here, registered by
:mod:`usm_bridge.mapping.plugin`. A tool's own formats (Jira's timestamps and ADF, ServiceNow's
timestamps and reference objects, mail dates and addresses) travel with that tool's connector
distribution as its plugin's transforms; :data:`PROVIDERS` says which distribution provides
each of those, so that a file naming one that is not installed is told what to install.
Inbound transforms come in pairs with their outbound inverse (``parse_datetime`` /
``format_datetime``), so a field can be read and written and a round trip gives back what the
tool held.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .timestamp_shapes import read_fixed_shape

__all__ = [
    "PROVIDERS",
    "TRANSFORMS",
    "as_text",
    "dayfirst_datetime",
    "first",
    "format_datetime",
    "format_dayfirst_datetime",
    "from_bool",
    "join",
    "lower",
    "missing_transform",
    "parse_datetime",
    "regex_extract",
    "split",
    "strip",
    "template",
    "to_bool",
    "to_int",
    "to_text",
    "truncate",
    "upper",
    "zone",
]

# A field an attacker controls must not make one transform run for long or recurse deeply.
_MAX_TEXT = 1_000_000


def as_text(value: Any, what: str = "text") -> str:
    """A raw scalar as text, bounded: what every text transform starts from."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value)
        if len(text) > _MAX_TEXT:
            raise ValueError(f"{what} longer than {_MAX_TEXT} characters")
        return text
    raise ValueError(f"expected {what}, got {type(value).__name__}")


def zone(tz: str | None) -> tzinfo:
    """The time zone an IANA name (or UTC / Z) names; ``ValueError`` for an unknown one."""
    if tz is None or tz.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


# -- text ---------------------------------------------------------------------------------------


def strip(value: Any) -> str:
    """Surrounding blanks differ between tools and mail clients; they never carry meaning."""
    return as_text(value).strip()


def lower(value: Any) -> str:
    """For values one tool capitalises and another does not (``Phone`` / ``phone``)."""
    return as_text(value).lower()


def upper(value: Any) -> str:
    return as_text(value).upper()


def to_text(value: Any) -> str:
    """Numbers and booleans as text, for tables keyed by text and for text fields."""
    return as_text(value)


def to_int(value: Any) -> int:
    """ServiceNow sends every number as a string."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    text = as_text(value, "a whole number").strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text[:50]!r} is not a whole number") from None


_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def to_bool(value: Any) -> bool:
    """ServiceNow says ``"true"``, the event log ``TRUE``, Jira a real boolean."""
    if isinstance(value, bool):
        return value
    text = as_text(value, "a boolean").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text[:50]!r} is not a boolean (true/false, yes/no, 1/0)")


def from_bool(value: Any, true: str = "true", false: str = "false") -> str:
    """Outbound inverse of :func:`to_bool` for tools that keep booleans as text."""
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {type(value).__name__}")
    return true if value else false


def truncate(value: Any, max: int = 255) -> str:
    """Mail subjects have no length limit; tool titles do."""
    if max < 1:
        raise ValueError("max must be at least 1")
    text = as_text(value)
    return text if len(text) <= max else text[: max - 1] + "…"


def regex_extract(value: Any, pattern: str, group: int | str = 0) -> str | None:
    """Pull a part out of a text (a ticket key ``[HR-42]`` out of a mail subject).

    No match gives ``None``, an empty value, so the field's default applies.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
    match = compiled.search(as_text(value))
    if match is None:
        return None
    try:
        return match.group(group)
    except IndexError:
        raise ValueError(f"the pattern has no group {group!r}") from None


def first(value: Any) -> Any:
    """First element of a list (the first address of a To header, the first label)."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value[0] if value else None


def split(value: Any, sep: str = ",") -> list[str]:
    """A delimited text as a list, blanks dropped."""
    return [part.strip() for part in as_text(value).split(sep) if part.strip()]


def join(value: Any, sep: str = ",") -> str:
    """Outbound inverse of :func:`split`."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return sep.join(as_text(item) for item in value)


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


def template(value: Any, format: str, empty: list[Any] | None = None) -> str | None:
    """Compose a text from several raw fields (use with ``path: $``, the whole record).

    ``{a.b}`` is replaced by the value at that dotted path; a missing value, or one listed in
    ``empty`` (e.g. ``["?"]``), gives an empty text, and when every placeholder is empty the
    result is ``None`` so the field's default applies. Only plain placeholders are recognised
    (no attribute access, no format specs), so a record's content cannot reach into Python
    objects.
    """
    if not isinstance(value, dict):
        raise ValueError("template needs the whole record or an object (use path: $)")
    blanks = {as_text(item) for item in (empty or [])}
    filled = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal filled
        current: Any = value
        for part in match.group(1).split("."):
            if isinstance(current, dict):
                current = current.get(part)
            elif isinstance(current, list) and part.lstrip("-").isdigit():
                index = int(part)
                current = current[index] if -len(current) <= index < len(current) else None
            else:
                current = None
        if current is None or isinstance(current, dict | list):
            return ""
        text = as_text(current)
        if text in blanks or not text:
            return ""
        filled += 1
        return text

    result = _PLACEHOLDER.sub(substitute, format).strip()
    has_placeholders = _PLACEHOLDER.search(format) is not None
    return None if has_placeholders and not filled else result


# -- timestamps ---------------------------------------------------------------------------------


def parse_datetime(value: Any, format: str | None = None, tz: str = "UTC") -> datetime:
    """A timestamp in any ISO 8601 shape, or in ``format`` (strptime codes).

    A timestamp without a zone is read in ``tz`` (an IANA name, default UTC): tools differ
    in which zone they mean and the canonical model refuses naive times.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        # A text (what tools send) needs none of as_text's conversions, only its bound.
        plain = value.__class__ is str and len(value) <= _MAX_TEXT
        text = (value if plain else as_text(value, "a timestamp")).strip()
        try:
            if format is None:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                parsed = read_fixed_shape(text, format) or datetime.strptime(text, format)
        except ValueError:
            expected = format or "ISO 8601"
            raise ValueError(f"{text[:60]!r} is not a timestamp in {expected}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz))
    return parsed


def format_datetime(value: Any, format: str | None = None, tz: str = "UTC") -> str:
    """Outbound inverse of :func:`parse_datetime`: the time in ``tz``, in ``format`` or ISO."""
    when = value if isinstance(value, datetime) else parse_datetime(value)
    if when.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    local = when.astimezone(zone(tz))
    return local.isoformat() if format is None else local.strftime(format)


def dayfirst_datetime(value: Any, tz: str = "UTC") -> datetime:
    """Day-first display dates (``29-02-2016 01:16``, seconds optional), as exports show them."""
    text = as_text(value, "a timestamp").strip()
    for fmt in ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S"):
        try:
            return parse_datetime(text, fmt, tz)
        except ValueError:
            continue
    raise ValueError(f"{text[:60]!r} is not a day-first timestamp (DD-MM-YYYY HH:MM)")


def format_dayfirst_datetime(value: Any, tz: str = "UTC") -> str:
    return format_datetime(value, "%d-%m-%Y %H:%M", tz)


#: Every tool-neutral transform by the name mapping files use.
TRANSFORMS: dict[str, Callable[..., Any]] = {
    "strip": strip,
    "lower": lower,
    "upper": upper,
    "to_text": to_text,
    "to_int": to_int,
    "to_bool": to_bool,
    "from_bool": from_bool,
    "truncate": truncate,
    "regex_extract": regex_extract,
    "first": first,
    "split": split,
    "join": join,
    "template": template,
    "parse_datetime": parse_datetime,
    "format_datetime": format_datetime,
    "dayfirst_datetime": dayfirst_datetime,
    "format_dayfirst_datetime": format_dayfirst_datetime,
}

#: Transforms of the connector distributions in this repository: which to install for each.
PROVIDERS: dict[str, str] = {
    **dict.fromkeys(
        (
            "jira_datetime",
            "format_jira_datetime",
            "adf_to_text",
            "text_to_adf",
            "jira_status_change",
        ),
        "usm-bridge-jira",
    ),
    **dict.fromkeys(
        (
            "servicenow_datetime",
            "format_servicenow_datetime",
            "servicenow_display_code",
            "servicenow_display_label",
            "servicenow_value",
            "servicenow_display_value",
        ),
        "usm-bridge-servicenow",
    ),
    **dict.fromkeys(
        (
            "rfc2822_datetime",
            "format_rfc2822_datetime",
            "email_address",
            "email_name",
            "email_domain",
        ),
        "usm-bridge-email",
    ),
}


def missing_transform(name: str) -> str:
    """What to say about a transform no installed plugin provides: the distribution to
    install when it is a known one, else that no plugin provides it."""
    provider = PROVIDERS.get(name)
    if provider is not None:
        return (
            f"transform {name!r} is provided by {provider}, which is not installed "
            f"(pip install {provider})"
        )
    return f"transform {name!r} is not installed (no plugin provides it)"
