"""USM states a tool's workflow skips, declared by the mapping (``fields.status.passes_through``).

ServiceNow closes a delivered requested item at once (Closed Complete): the table has no
state for *fulfilled*, so the bridge sees ``in_progress -> closed``, a move USM's lifecycle
does not allow. The tool did nothing wrong; its workflow has one state where USM has two. The
mapping says so once::

    status:
      values: {"2": in_progress, "3": closed}
      passes_through:
        closed: [fulfilled]      # Closed Complete is also the end of fulfilment

A move into ``closed`` is then legal when it is legal through ``fulfilled``
(:func:`legal_through`), and the conformance report shows the declaration as a property of
the mapping instead of an illegal transition per call. The loader refuses a declaration that
could hide a real skip (:func:`passes_through_problems`): the status must be one the file
reads, each state passed through must be one the tool has no status for, and the whole path
must be legal in :mod:`usm_bridge.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

from ..lifecycle import allowed
from ..model import Status
from .loader import Loc
from .spec import StatusField

__all__ = [
    "describe_passes_through",
    "legal_through",
    "passes_through_problems",
    "statuses_read",
]

_AT: Loc = ("fields", "status", "passes_through")


def statuses_read(item: StatusField | None) -> set[Status]:
    """Every canonical status a read can give: the table's, the rules' and the default."""
    if item is None:
        return set()
    found = [*(item.values or {}).values(), *(rule.status for rule in item.rules)]
    if item.default:
        found.append(item.default)
    return {Status(str(value).partition(":")[0]) for value in found}


def legal_through(before: Status, after: Status, through: Sequence[Status] = ()) -> bool:
    """Whether ``before -> after`` is a legal lifecycle move, counting the states ``after``
    passes through (declared by the mapping) as steps on the way.

    A call already in one of those states continues from there (fulfilled -> closed passes
    through nothing more). The plain state machine applies, as in :func:`allowed` without a
    call type.
    """
    if allowed(before, after):
        return True
    steps = list(through)
    if before in steps:
        steps = steps[steps.index(before) + 1 :]
    return bool(steps) and all(allowed(a, b) for a, b in pairwise([before, *steps, after]))


def describe_passes_through(item: StatusField | None) -> list[str]:
    """The declarations as sentences (``closed passes through fulfilled``), in file order."""
    if item is None:
        return []
    return [
        f"{status.value} passes through {', '.join(s.value for s in states)}"
        for status, states in item.passes_through.items()
    ]


def passes_through_problems(item: StatusField | None) -> Iterator[tuple[Loc, str, str | None]]:
    """Errors in ``passes_through``: (where, message, expected), as the loader reports them."""
    if item is None:
        return
    read = statuses_read(item)
    for status, states in item.passes_through.items():
        loc = (*_AT, status.value)
        if status not in read:
            yield (
                loc,
                f"passes_through names {status.value!r}, but no tool status reads as it",
                f"one of {sorted(s.value for s in read)}",
            )
            continue
        if not states:
            yield loc, f"passes_through of {status.value!r} lists no state", "[fulfilled]"
            continue
        if status in states or len(set(states)) != len(states):
            yield (
                loc,
                f"passes_through of {status.value!r} repeats a state or names the status itself",
                "each skipped state once, in lifecycle order",
            )
            continue
        own = [s.value for s in states if s in read]
        if own:
            yield (
                loc,
                f"{', '.join(map(repr, own))} has a tool status of its own, so a move that "
                "skips it is a real skip, not one the tool's workflow forces",
                "only states the tool has no status for",
            )
            continue
        path = [*states, status]
        broken = next(((a, b) for a, b in pairwise(path) if not allowed(a, b)), None)
        if broken is not None:
            yield (
                loc,
                f"{' -> '.join(s.value for s in path)} is not a lifecycle path: "
                f"{broken[0].value} -> {broken[1].value} is not a legal move",
                "the skipped states in lifecycle order (e.g. closed: [fulfilled])",
            )
