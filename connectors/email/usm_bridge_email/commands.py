"""Status commands by mail, after Request Tracker's CommandByMail (the design is our own).

A mailbox has no status field a person could set, so a person entitled to act on a call (see
"Status commands" in :mod:`usm_bridge_email.connector` for who that is) sets one by writing
pseudo-header lines at the very top of a reply's body, before anything else::

    Status: fulfilled

    Maria's desk, badge and laptop are ready.

``Status`` and ``Type`` are the commands; the block ends at the first line that is not one
(leading blank lines are skipped, the blank line after the block belongs to it). A status is
one of the connector's statuses, written with spaces or underscores in any case (``in progress``,
``Waiting for customer``, ``waiting:supplier``), or a plain synonym: ``done``, ``resolved``,
``solved``, ``fixed``, ``complete(d)`` mean fulfilled; ``on hold`` and ``awaiting ...`` mean
waiting (on the customer unless another party is named: ``on hold: vendor``); ``canceled`` is
cancelled; ``reopened`` and ``work in progress`` are in progress. Anything else is refused
with a reason naming what is understood, never guessed at.

``Type`` classifies the call (USM: nobody works on a call before it is classified, so a status
of work on an unclassified call needs one, in the same reply or before)::

    Type: incident
    Status: in progress

The value is one of the call types (``incident``, ``service request``, ``rfc``, ``wish``,
``risk``) or a plain synonym: ``request`` and ``question`` are a service request, ``change``
an rfc, ``complaint`` a wish, ``outage`` an incident, ``problem`` a risk.

This module only reads text; whether a command is obeyed is the connector's decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "TYPES_UNDERSTOOD",
    "UNDERSTOOD",
    "CommandBlock",
    "read_status",
    "read_type",
    "split_commands",
]

_LINE: Final = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z-]*)\s*:\s*(?P<value>.*?)\s*$")
#: What ``waiting`` may be on, in the words people use (ServiceNow's hold reasons among them).
_WAITING_ON: Final = {
    "customer": "customer",
    "caller": "customer",
    "requester": "customer",
    "user": "customer",
    "supplier": "supplier",
    "vendor": "supplier",
    "third party": "supplier",
    "secondary process": "secondary_process",
    "change": "secondary_process",
    "problem": "secondary_process",
}
_WAITING: Final = re.compile(
    r"^(?:waiting|on hold|awaiting)(?: (?:on|for))?(?: the)?(?: (?P<on>.+))?$"
)
_SYNONYMS: Final = {
    "done": "fulfilled",
    "resolved": "fulfilled",
    "solved": "fulfilled",
    "fixed": "fulfilled",
    "complete": "fulfilled",
    "completed": "fulfilled",
    "canceled": "cancelled",
    "reopened": "in_progress",
    "work in progress": "in_progress",
}
#: How the refusal of an unknown value names what is understood.
UNDERSTOOD: Final = (
    "in progress, waiting for customer (or on hold), waiting for supplier, waiting for "
    "secondary process, fulfilled (or done, resolved), confirmed, closed, cancelled, "
    "registered, classified"
)

#: The call types a ``Type`` command names (USM's four support requests and risk), by word.
_TYPES: Final = {
    "incident": "incident",
    "outage": "incident",
    "service request": "service_request",
    "request": "service_request",
    "question": "service_request",
    "rfc": "rfc",
    "change": "rfc",
    "request for change": "rfc",
    "wish": "wish",
    "complaint": "wish",
    "risk": "risk",
    "problem": "risk",
}
#: How the refusal of an unknown type names what is understood.
TYPES_UNDERSTOOD: Final = "incident, service request (or request), rfc (or change), wish, risk"
_COMMANDS: Final = frozenset({"status", "type"})


@dataclass(frozen=True)
class CommandBlock:
    """The ``Status:`` and ``Type:`` lines at the top of a body, and the body without them."""

    #: Each ``Status`` command's value as written, in order.
    values: list[str]
    #: The command lines as written (for the record and the log).
    written: str
    #: The body after the block, stripped: what the mail says besides the command.
    rest: str
    #: Each ``Type`` command's value as written, in order.
    types: list[str] = field(default_factory=list)


def split_commands(body: str) -> CommandBlock | None:
    """The command block at the top of ``body``, or ``None`` when it starts with none."""
    lines = body.split("\n")
    at = 0
    while at < len(lines) and not lines[at].strip():
        at += 1
    values: list[str] = []
    types: list[str] = []
    written: list[str] = []
    while at < len(lines):
        match = _LINE.match(lines[at])
        # Only "Status" and "Type" are commands: "Note: ..." or "Hi Ann:" is where the text
        # begins.
        key = match.group("key").lower() if match is not None else None
        if match is None or key not in _COMMANDS:
            break
        (values if key == "status" else types).append(match.group("value"))
        written.append(lines[at].strip())
        at += 1
    if not values and not types:
        return None
    return CommandBlock(values, "\n".join(written), "\n".join(lines[at:]).strip(), types)


def _plain(text: str) -> str:
    """Lower case, with ``_``, ``-`` and ``:`` as spaces and no trailing full stop."""
    return " ".join(re.sub(r"[_\-:]", " ", text.lower()).split()).rstrip(".!").strip()


def read_status(value: str, statuses: Iterable[str]) -> str | None:
    """The status ``value`` names among ``statuses`` (``waiting:customer`` style), or None."""
    plain = _plain(value)
    known = {_plain(status): status for status in statuses}
    if plain in known:
        return known[plain]
    if plain in _SYNONYMS and _SYNONYMS[plain] in known.values():
        return _SYNONYMS[plain]
    waiting = _WAITING.match(plain)
    if waiting is not None:
        on = _WAITING_ON.get(waiting.group("on") or "customer")
        status = f"waiting:{on}" if on else None
        return status if status in known.values() else None
    return None


def read_type(value: str) -> str | None:
    """The call type ``value`` names (``service_request`` style), or None."""
    return _TYPES.get(_plain(value))
