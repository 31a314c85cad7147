"""Inbound: the tool's own links that are forks between processes, as :class:`ProcessLink` s.

A fork (USM workflow patterns W3 and W4: an incident in recover handing work to change or
operate) lives inside one unit, and tools keep it as a link between two of their records:
ServiceNow an incident's ``rfc`` and ``problem_id`` reference fields, Jira an issue link of a
type the unit uses for it. The mapping's ``forks`` section says which (:class:`ForkSpec`); this
module reads them. What the other record is in the bridge (its canonical id) is not known
here: :mod:`usm_bridge.sync.forks` resolves it when the call is stored.

Ticket data is untrusted: a links value that is not a list, a link that is not an object, or a
linked issue without a key or id is a :class:`~usm_bridge.errors.MappingError` naming the fork
and the value, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import MappingError
from ..model import ProcessLink
from .paths import get_path
from .spec import ForkSpec, IssueLinkType
from .values import short_repr

__all__ = ["read_forks"]

#: Where a Jira issue link holds the other issue, by the direction seen from this issue.
_LINKED = {"inward": "inwardIssue", "outward": "outwardIssue"}
#: Longest reference kept (the model's limit); a longer one is not an id of any tool.
_MAX_REF = 300


def read_forks(
    forks: list[ForkSpec],
    data: Any,
    *,
    tool: str,
    transform: Callable[[ForkSpec, Any, str], Any],
    is_empty: Callable[[Any], bool],
) -> list[dict[str, Any]]:
    """The forks a record holds, as :class:`ProcessLink` data, in the file's order.

    :param tool: the mapping's tool (names an issue link's ``via``).
    :param transform: runs a fork's transform chain on a raw value (label for errors).
    :param is_empty: whether a raw value means "no value" for the mapping.
    :raises MappingError: a value that is not what the fork says it is.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str | None]] = set()
    for index, fork in enumerate(forks):
        label = f"forks[{index}]"
        raw = get_path(data, fork.path)
        if is_empty(raw):
            continue
        value = transform(fork, raw, label)
        if is_empty(value):
            continue
        found = (
            _issue_links(fork, fork.link, value, label, tool)
            if fork.link is not None
            else iter([(_ref(value, label), fork.via or fork.path)])
        )
        for ref, via in found:
            key = (fork.role.value, ref, via)
            if key in seen:  # the same link read twice (two specs naming it): one fork
                continue
            seen.add(key)
            link = ProcessLink(role=fork.role, process=fork.process, ref=ref, via=via)
            out.append(link.model_dump(mode="json", exclude_none=True))
    return out


def _ref(value: Any, label: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MappingError(
            f"field {label}: expected the other record's id (a text), got {short_repr(value)}"
        )
    text = str(value).strip()
    if not text or len(text) > _MAX_REF:
        raise MappingError(
            f"field {label}: {short_repr(value)} is not a record id (1 to {_MAX_REF} characters)"
        )
    return text


def _issue_links(
    fork: ForkSpec, wanted: IssueLinkType, value: Any, label: str, tool: str
) -> Iterator[tuple[str, str]]:
    """``(ref, via)`` of each issue link of the wanted type and direction."""
    if not isinstance(value, list):
        raise MappingError(
            f"field {label}: path {fork.path!r} holds {short_repr(value)}, not a list of links"
        )
    side = _LINKED[wanted.direction]
    for position, link in enumerate(value):
        where = f"{label} link {position}"
        if not isinstance(link, dict):
            raise MappingError(f"field {where}: {short_repr(link)} is not a link object")
        kind = link.get("type")
        if not isinstance(kind, dict) or kind.get("name") != wanted.type:
            continue
        other = link.get(side)
        if other is None:
            continue  # the link points the other way: not this fork
        if not isinstance(other, dict):
            raise MappingError(f"field {where}: {side} is {short_repr(other)}, not an issue")
        ref = other.get("key") or other.get("id")
        if ref is None:
            raise MappingError(f"field {where}: the linked issue has neither key nor id")
        phrase = kind.get(wanted.direction)
        via = fork.via or f"{tool}:{phrase if isinstance(phrase, str) else wanted.type}"
        yield _ref(ref, where), via
