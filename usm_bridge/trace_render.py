"""``usm-bridge trace`` for people: the chain, each call's routes, outbox, letters and events.

Everything shown comes from tickets and tools, so all of it is escaped: a title can never act
as Rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

from pydantic import JsonValue
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from .store import AuditEvent
from .trace import OUTBOX_STATES, Trace, TracedCall

__all__ = ["trace_renderables"]

#: An audit event's detail is cut to this many characters in the text form (JSON has it all).
_DETAIL_WIDTH = 160
#: A value in a change is cut to this many characters (a description, a list of comments).
_VALUE_WIDTH = 40
#: Bookkeeping in call events that says nothing to a person reading a trace.
_NOISE = frozenset({"content_hash", "old_hash"})


def _status(traced: TracedCall) -> str:
    call = traced.call
    if call.waiting_process is not None:
        return f"{call.status.value} (on {call.waiting_process.value})"
    if call.waiting_on is not None:
        return f"{call.status.value} (on {call.waiting_on.value})"
    return call.status.value


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A table of already escaped cells; long ones fold instead of being cut."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _chain_table(trace: Trace) -> Table:
    columns = ("", "unit", "instance", "reference", "process", "status", "opened by route", "link")
    rows = [
        (
            ">" if traced.call.id == trace.call_id else "",
            "  " * traced.depth + escape(traced.call.unit),
            escape(traced.instance or "-"),
            escape(traced.reference),
            traced.call.process.value if traced.call.process else "-",
            escape(_status(traced)),
            escape(traced.via_route or "-"),
            escape(traced.url or "-"),
        )
        for traced in trace.calls
    ]
    return _table(f"chain of {escape(trace.reference)} ({len(trace.calls)} calls)", columns, rows)


def _route_rows(trace: Trace) -> Iterator[tuple[str, ...]]:
    refs = {traced.call.id: traced.reference for traced in trace.calls}
    for traced in trace.calls:
        for line in traced.routes:
            why = line.verdict.reason
            if line.supplier_call_id is not None:
                why = f"opened {refs.get(line.supplier_call_id, line.supplier_call_id)}"
            yield (
                escape(f"{traced.reference} ({traced.call.unit})"),
                escape(line.route),
                escape(f"{line.from_unit} -> {line.to_unit}"),
                line.outcome,
                escape(why),
            )


def _fork_rows(trace: Trace) -> list[tuple[str, ...]]:
    """Each call's forks to other processes of its unit, and which call each one is."""
    refs = {traced.call.id: traced.reference for traced in trace.calls}
    rows: list[tuple[str, ...]] = []
    for traced in trace.calls:
        for fork in traced.call.chain.forks:
            other = "unresolved" if fork.call is None else refs.get(fork.call, fork.call)
            rows.append(
                (
                    escape(traced.reference),
                    fork.role.value,
                    fork.process.value if fork.process else "-",
                    escape(fork.ref),
                    escape(other),
                    escape(fork.via or "-"),
                )
            )
    return rows


def _outbox_rows(trace: Trace) -> list[tuple[str, ...]]:
    return [
        (
            str(item.id),
            escape(traced.reference),
            escape(item.target_instance),
            item.operation.value,
            OUTBOX_STATES[item.status],
            str(item.attempts),
            escape((item.last_error or "-")[:200]),
        )
        for traced in trace.calls
        for item in traced.outbox
    ]


def _letter_rows(trace: Trace) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for traced in trace.calls:
        for letter in traced.dead_letters:
            # A closed letter shows how it was closed; why it failed is in the JSON form.
            closed = letter.status.value != "open" and letter.resolution
            why = letter.resolution if closed and letter.resolution else letter.reason
            rows.append(
                (
                    str(letter.id),
                    escape(traced.reference),
                    escape(letter.instance),
                    letter.stage.value,
                    letter.status.value,
                    str(letter.attempts),
                    escape(why[:200]),
                )
            )
    return rows


def _short(value: JsonValue) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _event_summary(event: AuditEvent) -> str:
    """A changed call as ``status "registered" -> "waiting"; chain``; a new one by its status
    and title; any other event as its detail, without the content hashes."""
    if event.kind == "call_updated" and isinstance(event.after, dict):
        before = event.before if isinstance(event.before, dict) else {}
        # A value is shown when it is one; a table or a list (comments, chain) only named.
        changes = [
            name
            if isinstance(value, dict | list) or isinstance(before.get(name), dict | list)
            else f"{name} {_short(before.get(name))} -> {_short(value)}"
            for name, value in event.after.items()
        ]
        return "; ".join(changes)
    detail = event.detail
    if isinstance(detail, dict):
        detail = {key: value for key, value in detail.items() if key not in _NOISE}
    if event.kind == "call_created" and isinstance(event.after, dict):
        return (
            f"status {_short(event.after.get('status'))}, title {_short(event.after.get('title'))}"
        )
    return "" if detail is None else json.dumps(detail, ensure_ascii=False, default=str)


def _event_rows(trace: Trace) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for line in trace.events:
        event = line.event
        text = _event_summary(event)
        cut = text[:_DETAIL_WIDTH] + ("..." if len(text) > _DETAIL_WIDTH else "")
        rows.append(
            (
                event.at.strftime("%Y-%m-%d %H:%M:%S"),
                escape(line.unit),
                escape(line.reference),
                escape(event.kind),
                escape(event.actor),
                escape(cut),
            )
        )
    return rows


def trace_renderables(trace: Trace) -> Iterator[RenderableType]:
    """The text form of ``trace``, section by section, for a Rich console."""
    yield _chain_table(trace)
    yield _table("routes, evaluated for each call of the chain",
                 ("call", "route", "from -> to", "outcome", "why"), _route_rows(trace))  # fmt: skip
    forks = _fork_rows(trace)
    yield _table(
        f"forks between processes ({len(forks)})",
        ("call", "other is", "process", "ref", "call of ref", "via"), forks,
    ) if forks else "forks between processes: none"  # fmt: skip
    outbox = _outbox_rows(trace)
    yield _table(
        f"outbox ({len(outbox)} writes)",
        ("id", "call", "target", "operation", "state", "attempts", "last error"), outbox,
    ) if outbox else "outbox: no writes"  # fmt: skip
    letters = _letter_rows(trace)
    yield _table(
        f"dead letters ({len(letters)})",
        ("id", "call", "instance", "stage", "status", "attempts", "reason"), letters,
    ) if letters else "dead letters: none"  # fmt: skip
    events = _event_rows(trace)
    yield _table(
        f"audit events ({len(events)}, oldest first)",
        ("at (UTC)", "unit", "call", "event", "actor", "detail"), events,
    ) if events else "audit events: none"  # fmt: skip
