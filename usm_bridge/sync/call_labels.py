"""Calls and records in log lines, named the way people know them: by the tool's reference.

A canonical id (``call_3f2a...``) means nothing to the agent who knows the ticket as ``IT-1``,
so every log line that names a call or a record also names its tool reference and instance:
``call_3f2a... (IT-1 at facilities-jira)``. One format for every module that logs.
"""

from __future__ import annotations

import logging

from ..connector import RawRecord
from ..errors import StoreError
from ..model import Call
from ..store import Store, Transaction

__all__ = ["call_label", "call_label_in", "mapped_call_label", "record_label"]

log = logging.getLogger(__name__)


def _at(remote_id: str, remote_key: str | None, instance: str) -> str:
    return f"{remote_key or remote_id} at {instance}"


def record_label(record: RawRecord, instance: str) -> str:
    """``10001 (IT-1 at facilities-jira)``: a record read from a tool."""
    if record.remote_key and record.remote_key != record.remote_id:
        return f"{record.remote_id} ({_at(record.remote_id, record.remote_key, instance)})"
    return f"{record.remote_id} (at {instance})"


def mapped_call_label(call: Call) -> str:
    """A call as just mapped from its tool's record (not stored yet): named by that record."""
    if call.source is None:
        return call.id
    source = call.source
    return f"{call.id} ({_at(source.remote_id, source.remote_key, source.instance)})"


def call_label(tx: Transaction, call_id: str) -> str:
    """``call_3f2a... (IT-1 at facilities-jira)``: the call's own tool record, else any record
    it has; ``(no tool record yet)`` for a supplier call whose create is still to be pushed."""
    stored = tx.get_call(call_id)
    if stored is not None and stored.call.source is not None:
        return mapped_call_label(stored.call)
    identities = tx.identities_of(call_id)
    if identities:
        first = identities[0]
        return f"{call_id} ({_at(first.remote_id, first.remote_key, first.instance)})"
    return f"{call_id} (no tool record yet)"


def call_label_in(store: Store, call_id: str) -> str:
    """:func:`call_label` in a read-only unit of work of its own; the bare id when the store
    cannot say (a log line never fails because of its label)."""
    try:
        with store.begin(readonly=True) as tx:
            return call_label(tx, call_id)
    except StoreError as exc:
        log.debug("no label for call %s: %s", call_id, exc)
        return call_id
