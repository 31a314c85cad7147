"""Built-in mapping transforms: the conversions every shipped mapping file needs.

Mapping files name these (``transform: servicenow_datetime``); a transform gets the raw value
and the keyword arguments the file gives (``transform: {name: parse_datetime, args: {format:
"%d-%m-%Y %H:%M"}}``). The engine never calls a transform on an empty value, so each one may
assume it has something; a value it cannot convert raises ``ValueError``, which dead-letters
the record with this message.

Inbound transforms come in pairs with their outbound inverse (``jira_datetime`` /
``format_jira_datetime``, ``adf_to_text`` / ``text_to_adf``), so a field can be read and written
and a round trip gives back what the tool held.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..hookspecs import hookimpl

__all__ = ["TRANSFORMS", "usm_bridge_mapping_transforms"]

# A field an attacker controls must not make one transform run for long or recurse deeply.
_MAX_TEXT = 1_000_000
_MAX_ADF_DEPTH = 64


def _text(value: Any, what: str = "text") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value)
        if len(text) > _MAX_TEXT:
            raise ValueError(f"{what} longer than {_MAX_TEXT} characters")
        return text
    raise ValueError(f"expected {what}, got {type(value).__name__}")


def _zone(tz: str | None) -> tzinfo:
    if tz is None or tz.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


# -- text ---------------------------------------------------------------------------------------


def strip(value: Any) -> str:
    """Surrounding blanks differ between tools and mail clients; they never carry meaning."""
    return _text(value).strip()


def lower(value: Any) -> str:
    """For values one tool capitalises and another does not (``Phone`` / ``phone``)."""
    return _text(value).lower()


def upper(value: Any) -> str:
    return _text(value).upper()


def to_text(value: Any) -> str:
    """Numbers and booleans as text, for tables keyed by text and for text fields."""
    return _text(value)


def to_int(value: Any) -> int:
    """ServiceNow sends every number as a string."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    text = _text(value, "a whole number").strip()
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
    text = _text(value, "a boolean").strip().lower()
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
    text = _text(value)
    return text if len(text) <= max else text[: max - 1] + "…"


def regex_extract(value: Any, pattern: str, group: int | str = 0) -> str | None:
    """Pull a part out of a text (a ticket key ``[HR-42]`` out of a mail subject).

    No match gives ``None``, an empty value, so the field's default applies.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
    match = compiled.search(_text(value))
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
    return [part.strip() for part in _text(value).split(sep) if part.strip()]


def join(value: Any, sep: str = ",") -> str:
    """Outbound inverse of :func:`split`."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return sep.join(_text(item) for item in value)


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
    blanks = {_text(item) for item in (empty or [])}
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
        text = _text(current)
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
        text = _text(value, "a timestamp").strip()
        try:
            if format is None:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                parsed = datetime.strptime(text, format)
        except ValueError:
            expected = format or "ISO 8601"
            raise ValueError(f"{text[:60]!r} is not a timestamp in {expected}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(tz))
    return parsed


def format_datetime(value: Any, format: str | None = None, tz: str = "UTC") -> str:
    """Outbound inverse of :func:`parse_datetime`: the time in ``tz``, in ``format`` or ISO."""
    when = value if isinstance(value, datetime) else parse_datetime(value)
    if when.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    local = when.astimezone(_zone(tz))
    return local.isoformat() if format is None else local.strftime(format)


def jira_datetime(value: Any) -> datetime:
    """Jira's ``2021-01-17T12:34:00.000+0000`` (milliseconds, zone without a colon)."""
    return parse_datetime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def format_jira_datetime(value: Any) -> str:
    when = value if isinstance(value, datetime) else parse_datetime(value)
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{text[:-3]}+0000"


def servicenow_datetime(value: Any) -> datetime:
    """ServiceNow's ``2016-01-22 14:28:24``, always UTC when ``display_value=false``."""
    return parse_datetime(value, "%Y-%m-%d %H:%M:%S", "UTC")


def format_servicenow_datetime(value: Any) -> str:
    return format_datetime(value, "%Y-%m-%d %H:%M:%S", "UTC")


def dayfirst_datetime(value: Any, tz: str = "UTC") -> datetime:
    """Day-first display dates (``29-02-2016 01:16``, seconds optional), as exports show them."""
    text = _text(value, "a timestamp").strip()
    for fmt in ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S"):
        try:
            return parse_datetime(text, fmt, tz)
        except ValueError:
            continue
    raise ValueError(f"{text[:60]!r} is not a day-first timestamp (DD-MM-YYYY HH:MM)")


def format_dayfirst_datetime(value: Any, tz: str = "UTC") -> str:
    return format_datetime(value, "%d-%m-%Y %H:%M", tz)


def rfc2822_datetime(value: Any) -> datetime:
    """A mail ``Date`` header (``Tue, 01 Mar 2016 10:00:00 +0100``); ``-0000`` is read as UTC."""
    text = _text(value, "a mail date").strip()
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{text[:60]!r} is not an RFC 2822 date") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_rfc2822_datetime(value: Any) -> str:
    when = value if isinstance(value, datetime) else parse_datetime(value)
    return email.utils.format_datetime(when.astimezone(UTC))


# -- Atlassian Document Format ------------------------------------------------------------------

_BLOCKS_JOINED_BY_NEWLINE = frozenset(
    {"doc", "bulletList", "orderedList", "blockquote", "panel", "table", "tableRow", "expand"}
)


def _adf_inline(node: Any, depth: int) -> str:
    if depth > _MAX_ADF_DEPTH:
        raise ValueError("ADF document nested too deeply")
    if not isinstance(node, dict):
        raise ValueError("ADF node is not an object")
    kind = node.get("type")
    attrs = node.get("attrs") if isinstance(node.get("attrs"), dict) else {}
    assert isinstance(attrs, dict)
    if kind == "text":
        text = node.get("text", "")
        return text if isinstance(text, str) else ""
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status", "date"):
        return str(attrs.get("text") or attrs.get("shortName") or attrs.get("timestamp") or "")
    if kind in ("inlineCard", "blockCard"):
        return str(attrs.get("url") or "")
    content = node.get("content", [])
    if not isinstance(content, list):
        raise ValueError("ADF content is not a list")
    if kind in _BLOCKS_JOINED_BY_NEWLINE or kind in ("tableCell", "tableHeader", "listItem"):
        parts = []
        for index, child in enumerate(content):
            text = _adf_inline(child, depth + 1)
            if kind == "bulletList":
                text = f"- {text}"
            elif kind == "orderedList":
                text = f"{index + 1}. {text}"
            parts.append(text)
        sep = " | " if kind == "tableRow" else "\n"
        return sep.join(parts)
    return "".join(_adf_inline(child, depth + 1) for child in content)


def adf_to_text(value: Any) -> str:
    """Plain text of a Jira v3 rich-text field (ADF); a v2 plain string passes through.

    Paragraphs and other blocks become lines; marks (bold, links) are dropped; mentions and
    cards keep their visible text. The canonical model keeps plain text so that every tool
    can show it.
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or value.get("type") != "doc":
        raise ValueError("not an ADF document (expected an object with type 'doc')")
    return _adf_inline(value, 0)


def text_to_adf(value: Any) -> dict[str, Any]:
    """An ADF document for plain text: one paragraph per line (Jira v3 refuses plain strings).

    Inverse of :func:`adf_to_text` on its own output, so a round trip is stable.
    """
    text = _text(value)
    paragraphs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        paragraphs.append(paragraph)
    return {"type": "doc", "version": 1, "content": paragraphs}


# -- ServiceNow ---------------------------------------------------------------------------------

_DISPLAY = re.compile(r"^\s*(-?\d+)\s*-\s*(.*?)\s*$")


def servicenow_display_code(value: Any) -> str:
    """The code of a ServiceNow choice display value: ``"2 - Medium"`` -> ``"2"``.

    Exports and ``display_value=true`` show choices as "code - label"; tables keyed by the
    code then serve both the API and the exports.
    """
    text = _text(value).strip()
    match = _DISPLAY.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a 'code - label' display value")
    return match.group(1)


def servicenow_display_label(value: Any) -> str:
    """The label of a ServiceNow choice display value: ``"2 - Medium"`` -> ``"Medium"``."""
    text = _text(value).strip()
    match = _DISPLAY.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a 'code - label' display value")
    return match.group(2)


def servicenow_value(value: Any) -> Any:
    """The stored value of a ServiceNow field however the instance was asked for it.

    A reference is ``{"link", "value"}`` (or a bare sys_id with
    ``sysparm_exclude_reference_link``); with ``display_value=all`` every field is
    ``{"display_value", "value"}``. This gives ``value`` in every case.
    """
    if isinstance(value, dict):
        if "value" not in value:
            raise ValueError("ServiceNow field object has no 'value'")
        return value["value"]
    return value


def servicenow_display_value(value: Any) -> Any:
    """The display value of a ``display_value=all`` field (``{"display_value", "value"}``)."""
    if isinstance(value, dict):
        if "display_value" not in value:
            raise ValueError("ServiceNow field object has no 'display_value'")
        return value["display_value"]
    return value


# -- e-mail -------------------------------------------------------------------------------------


def _address(value: Any) -> tuple[str, str]:
    text = _text(value, "an address").strip()
    if len(text) > 2_000:
        raise ValueError("address header longer than 2000 characters")
    name, addr = email.utils.parseaddr(text)
    if not addr or "@" not in addr or addr.count("@") != 1:
        raise ValueError(f"{text[:80]!r} is not an e-mail address")
    local, domain = addr.rsplit("@", 1)
    if not local or not domain or " " in addr:
        raise ValueError(f"{text[:80]!r} is not an e-mail address")
    return name, addr


def email_address(value: Any) -> str:
    """The address of ``"Ann Smith <Ann@Example.org>"``, domain lower-cased.

    The local part keeps its case (RFC 5321 lets servers treat it as case-sensitive).
    """
    _, addr = _address(value)
    local, domain = addr.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def email_name(value: Any) -> str | None:
    """The display name of an address header (``None`` when it has none)."""
    name, _ = _address(value)
    return name.strip() or None


def email_domain(value: Any) -> str:
    """The domain of an address, lower-cased (units allow calls from listed domains)."""
    return email_address(value).rsplit("@", 1)[1]


#: Every built-in transform by the name mapping files use.
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
    "jira_datetime": jira_datetime,
    "format_jira_datetime": format_jira_datetime,
    "servicenow_datetime": servicenow_datetime,
    "format_servicenow_datetime": format_servicenow_datetime,
    "dayfirst_datetime": dayfirst_datetime,
    "format_dayfirst_datetime": format_dayfirst_datetime,
    "rfc2822_datetime": rfc2822_datetime,
    "format_rfc2822_datetime": format_rfc2822_datetime,
    "adf_to_text": adf_to_text,
    "text_to_adf": text_to_adf,
    "servicenow_display_code": servicenow_display_code,
    "servicenow_display_label": servicenow_display_label,
    "servicenow_value": servicenow_value,
    "servicenow_display_value": servicenow_display_value,
    "email_address": email_address,
    "email_name": email_name,
    "email_domain": email_domain,
}


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """Contribute the built-in transforms (a copy, so no caller can change the registry)."""
    return dict(TRANSFORMS)
