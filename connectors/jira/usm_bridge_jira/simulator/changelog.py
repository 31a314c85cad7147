"""An issue's changelog: who changed what, when (``expand=changelog``).

Jira records each change of an issue as a history with its author (the account that signed
in: a person, a customer, or an app account such as the "Automation for Jira" actor of
automation rules) and items (``field``, ``from``/``fromString``, ``to``/``toString``). The
changelog is what tells a customer's own transition from an automation's. An issue read with
``expand=changelog`` carries the most recent histories, newest first, at most
:data:`HISTORIES_SHOWN` of them (Atlassian: "a list of recent updates to an issue, sorted by
date, starting from the most recent"; the cap is 100 in the documentation, lower on some sites).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["HISTORIES_SHOWN", "ChangeItem", "History", "changelog_json"]

HISTORIES_SHOWN: Final = 100


@dataclass(frozen=True)
class ChangeItem:
    """One field's change within a history."""

    field: str
    from_id: str | None
    from_string: str | None
    to_id: str | None
    to_string: str | None
    fieldtype: str = "jira"
    #: The field's id when it is not its name (``Attachment`` is ``attachment``).
    field_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        # A side with no value is left out: the official schema types these members as
        # strings (not nullable), so a ``null`` would not fit it.
        out = {
            "field": self.field,
            "fieldtype": self.fieldtype,
            "fieldId": self.field_id or self.field,
            "from": self.from_id,
            "fromString": self.from_string,
            "to": self.to_id,
            "toString": self.to_string,
        }
        return {key: value for key, value in out.items() if value is not None}


@dataclass(frozen=True)
class History:
    """One change of an issue: by whom, when, and what changed."""

    id: int
    author: str
    created: datetime
    items: tuple[ChangeItem, ...] = field(default_factory=tuple)


def changelog_json(
    histories: list[History],
    *,
    user_json: Callable[[str], Any],
    time_text: Callable[[datetime], str],
) -> dict[str, Any]:
    """The ``changelog`` member of an issue: the most recent histories, newest first."""
    shown = sorted(histories, key=lambda h: (h.created, h.id), reverse=True)[:HISTORIES_SHOWN]
    return {
        "startAt": 0,
        "maxResults": len(shown),
        "total": len(histories),
        "histories": [
            {
                "id": str(history.id),
                "author": user_json(history.author),
                "created": time_text(history.created),
                "items": [item.as_json() for item in history.items],
            }
            for history in shown
        ],
    }
