"""Jira's mapping transforms: its timestamps and its rich text (ADF), as a plugin.

They travel with the Jira connector (registered by :mod:`usm_bridge_jira.plugin`), so a
mapping for Jira works wherever the connector is installed and the core keeps only
tool-neutral transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from usm_bridge.mapping.transforms import as_text, parse_datetime

__all__ = [
    "TRANSFORMS",
    "adf_to_text",
    "format_jira_datetime",
    "jira_datetime",
    "jira_status_change",
    "text_to_adf",
]

# A field an attacker controls must not recurse deeply.
_MAX_ADF_DEPTH = 64


def jira_datetime(value: Any) -> datetime:
    """Jira's ``2021-01-17T12:34:00.000+0000`` (milliseconds, zone without a colon)."""
    return parse_datetime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def format_jira_datetime(value: Any) -> str:
    when = value if isinstance(value, datetime) else parse_datetime(value)
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{text[:-3]}+0000"


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
    text = as_text(value)
    paragraphs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        paragraphs.append(paragraph)
    return {"type": "doc", "version": 1, "content": paragraphs}


#: This distribution's transforms by the name mapping files use.
# -- the changelog ------------------------------------------------------------------------------


def jira_status_change(value: Any, to: list[str], part: str = "author.accountId") -> Any:
    """From an issue's ``changelog.histories``: ``part`` (a dotted path into the history, such
    as ``author.displayName`` or ``created``) of the latest history that moved the status to
    one of ``to``; ``None`` when none did (or the changelog was not asked for).

    Jira lists the most recent histories newest first; they are ordered here by their
    ``created`` time and id anyway, so a site that lists them otherwise reads the same.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("the changelog's histories are not a list")
    wanted = set(to)
    moves = [
        history
        for history in value
        if isinstance(history, dict)
        and any(
            isinstance(item, dict)
            and item.get("field") == "status"
            and item.get("toString") in wanted
            for item in history.get("items") or []
        )
    ]
    if not moves:
        return None
    latest = max(moves, key=lambda h: (jira_datetime(h.get("created")), _int_id(h.get("id"))))
    found: Any = latest
    for key in part.split("."):
        found = found.get(key) if isinstance(found, dict) else None
    return found


def _int_id(value: Any) -> int:
    return int(value) if isinstance(value, str | int) and str(value).isdigit() else 0


TRANSFORMS: dict[str, Callable[..., Any]] = {
    "jira_status_change": jira_status_change,
    "jira_datetime": jira_datetime,
    "format_jira_datetime": format_jira_datetime,
    "adf_to_text": adf_to_text,
    "text_to_adf": text_to_adf,
}
