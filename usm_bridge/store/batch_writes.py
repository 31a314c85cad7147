"""The writes of a page's unit of work, held back and sent as one batch per statement.

A backfill page inserts a call, an identity, a remote state and two audit events per record
(and, where a route opens a supplier call for it, that call, its chain link, the writes queued
for it and its comment copies; a re-read of a chained page updates supplier calls and queues
their writes).
Sent as they come, that is five round trips a record; held here and sent at the end of the page
(or before anything else reads the tables: :meth:`PageWrites.flush`), it is one ``executemany``
per statement for the whole page, each statement built once. The audit events keep the order
they were appended in, so their ids come out as record-by-record storing gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.store import schema as t
from usm_bridge.store.conflicts import StoreConflictError
from usm_bridge.store.copy_rows import Converted, insert_rows

__all__ = ["PageWrites"]

_calls, _ids, _states = t.calls, t.identities, t.remote_states


def _by(table: sa.Table, *keys: str) -> sa.Update:
    """An UPDATE of ``table`` whose WHERE takes ``b_<key>`` parameters (never a set column)."""
    return table.update().where(*(table.c[key] == sa.bindparam(f"b_{key}") for key in keys))


# Built once: SQLAlchemy then reuses their compiled form for every page. (The inserts are
# copy_rows.insert_rows: COPY on PostgreSQL.)
#: The version check makes a concurrent change of the call a conflict, as upsert_call does.
_UPDATE_CALL = _by(_calls, "id", "version")
_UPDATE_IDENTITY = _by(_ids, "instance", "remote_id")
#: The identity columns a page changes (executemany takes one shape of parameters).
IDENTITY_CHANGES = ("remote_key", "url", "pushed_hash", "pushed_at", "updated_at")
_UPDATE_STATE = _by(_states, "instance", "remote_id")


@dataclass
class PageWrites:
    """Rows to insert and updates to make, by statement, until :meth:`flush`."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    call_updates: list[dict[str, Any]] = field(default_factory=list)
    #: New identities by remote id: the page changes a row here until it is sent.
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Changes of identities already sent, by instance and remote id, with every column of
    #: :data:`IDENTITY_CHANGES` and the ``b_instance``, ``b_remote_id`` of the row.
    identity_updates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)
    state_updates: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    #: New outbox items (writes the router asked for on the calls chained to the page's).
    outbox: list[dict[str, Any]] = field(default_factory=list)
    #: New chain links and comment copies (the router opening supplier calls).
    links: list[dict[str, Any]] = field(default_factory=list)
    comment_links: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (self.calls, self.call_updates, self.identities, self.identity_updates,
             self.states, self.state_updates, self.audits, self.outbox, self.links,
             self.comment_links)
        )  # fmt: skip

    def change_identity(self, row: dict[str, Any], **changes: Any) -> None:
        """Apply ``changes`` to the identity ``row`` (as the page holds it), and send them with
        its insert, or as an update when it was sent before."""
        row.update(changes)
        if self.identities.get(row["remote_id"]) is not row:
            params = {name: row[name] for name in IDENTITY_CHANGES}
            params.update(b_instance=row["instance"], b_remote_id=row["remote_id"])
            self.identity_updates[row["instance"], row["remote_id"]] = params

    def flush(self, conn: Connection) -> None:
        """Send everything held, calls first (the other rows name them); then hold nothing.

        :raises StoreConflictError: a call changed since it was read (its version moved).
        """
        # A record's rows are written at one moment: its timestamps converted once for all.
        converted: Converted = {}
        if self.calls:
            insert_rows(conn, _calls, self.calls, converted=converted)
        if self.call_updates:
            updated = conn.execute(_UPDATE_CALL, self.call_updates).rowcount
            if conn.dialect.supports_sane_multi_rowcount and updated != len(self.call_updates):
                raise StoreConflictError(
                    "a call of the page was changed concurrently; retry the cycle"
                )
        if self.identities:
            insert_rows(conn, _ids, list(self.identities.values()), converted=converted)
        if self.identity_updates:
            conn.execute(_UPDATE_IDENTITY, list(self.identity_updates.values()))
        if self.states:
            insert_rows(conn, _states, self.states, converted=converted)
        if self.state_updates:
            conn.execute(_UPDATE_STATE, self.state_updates)
        if self.links:
            insert_rows(conn, t.chain_links, self.links, converted=converted)
        if self.comment_links:
            # A copy's id taken after all breaks a unique constraint: as for the outbox below.
            insert_rows(conn, t.comment_links, self.comment_links, converted=converted)
        if self.audits:
            insert_rows(conn, t.audit_log, self.audits, converted=converted)
        if self.outbox:
            # A key taken after all breaks the unique constraint: the page is stored again
            # record by record, where Transaction.enqueue tells it.
            insert_rows(conn, t.outbox, self.outbox, converted=converted)
        self.clear()

    def clear(self) -> None:
        for rows in (
            self.calls, self.call_updates, self.states, self.state_updates, self.audits,
            self.outbox, self.links, self.comment_links,
        ):  # fmt: skip
            rows.clear()
        self.identities.clear()
        self.identity_updates.clear()
