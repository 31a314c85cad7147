"""``usm-bridge trace`` for people: the chain, each call's routes, outbox, letters and events.

Everything shown comes from tickets and tools, so all of it is escaped: a title can never act
as Rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

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
    if call.waiting_on is not None:
        return f"{call.status.value} (on {call.waiting_on.value})"
    return call.status.value


def _chain_table(trace: Trace) -> Table:
    table = Table(title=f"chain of {escape(trace.reference)} ({len(trace.calls)} calls)")
    for column in ("", "unit", "instance", "reference", "status", "opened by route", "link"):
        table.add_column(column, overflow="fold")
    for traced in trace.calls:
        table.add_row(
            ">" if traced.call.id == trace.call_id else "",
            "  " * traced.depth + escape(traced.call.unit),
            escape(traced.instance or "-"),
            escape(traced.reference),
            escape(_status(traced)),
            escape(traced.via_route or "-"),
            escape(traced.url or "-"),
        )
    return table


def _routes_table(trace: Trace) -> Table:
    refs = {traced.call.id: traced.reference for traced in trace.calls}
    table = Table(title="routes, evaluated for each call of the chain")
    for column in ("call", "route", "from -> to", "outcome", "why"):
        table.add_column(column, overflow="fold")
    for traced in trace.calls:
        for line in traced.routes:
            why = line.verdict.reason
            if line.supplier_call_id is not None:
                why = f"opened {refs.get(line.supplier_call_id, line.supplier_call_id)}"
            table.add_row(
                escape(f"{traced.reference} ({traced.call.unit})"),
                escape(line.route),
                escape(f"{line.from_unit} -> {line.to_unit}"),
                line.outcome,
                escape(why),
            )
    return table


def _outbox_table(trace: Trace) -> Table | str:
    rows = [(traced, item) for traced in trace.calls for item in traced.outbox]
    if not rows:
        return "outbox: no writes"
    table = Table(title=f"outbox ({len(rows)} writes)")
    for column in ("id", "call", "target", "operation", "state", "attempts", "last error"):
        table.add_column(column, overflow="fold")
    for traced, item in rows:
        table.add_row(
            str(item.id),
            escape(traced.reference),
            escape(item.target_instance),
            item.operation.value,
            OUTBOX_STATES[item.status],
            str(item.attempts),
            escape((item.last_error or "-")[:200]),
        )
    return table


def _letters_table(trace: Trace) -> Table | str:
    rows = [(traced, letter) for traced in trace.calls for letter in traced.dead_letters]
    if not rows:
        return "dead letters: none"
    table = Table(title=f"dead letters ({len(rows)})")
    for column in ("id", "call", "instance", "stage", "status", "attempts", "reason"):
        table.add_column(column, overflow="fold")
    for traced, letter in rows:
        # A closed letter shows how it was closed; the reason it failed is in the JSON form.
        why = letter.resolution if letter.status.value != "open" and letter.resolution else None
        table.add_row(
            str(letter.id),
            escape(traced.reference),
            escape(letter.instance),
            letter.stage.value,
            letter.status.value,
            str(letter.attempts),
            escape((why or letter.reason)[:200]),
        )
    return table


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


def _events_table(trace: Trace) -> Table | str:
    if not trace.events:
        return "audit events: none"
    table = Table(title=f"audit events ({len(trace.events)}, oldest first)")
    for column in ("at (UTC)", "unit", "call", "event", "actor", "detail"):
        table.add_column(column, overflow="fold")
    for line in trace.events:
        event = line.event
        text = _event_summary(event)
        table.add_row(
            event.at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(line.unit),
            escape(line.reference),
            escape(event.kind),
            escape(event.actor),
            escape(text[:_DETAIL_WIDTH] + ("..." if len(text) > _DETAIL_WIDTH else "")),
        )
    return table


def trace_renderables(trace: Trace) -> Iterator[RenderableType]:
    """The text form of ``trace``, section by section, for a Rich console."""
    yield _chain_table(trace)
    yield _routes_table(trace)
    yield _outbox_table(trace)
    yield _letters_table(trace)
    yield _events_table(trace)
