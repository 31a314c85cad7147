"""The state store: SQLAlchemy Core over SQLite (embedded default, WAL) or PostgreSQL (by URL).

::

    from usm_bridge.store import Store

    with Store.open("sqlite:///var/usm-bridge.db") as store:   # creates a new store's schema
        with store.begin() as tx:                               # one unit of work
            result = tx.upsert_call(call, instance="hr-jira")
            if result.changed:
                key = f"{call.id}:it-snow:v{result.new_version}"
                tx.enqueue("it-snow", call.id, "update", payload, key)
            tx.set_cursor("hr-jira", checkpoint.cursor)

Tables: ``calls`` (canonical JSON, version, content hash, vanished marker), ``identities``
(call <-> remote record per connector instance, with the hash last pushed and the correlation
marker), ``chain_links``, ``cursors``, ``outbox``, ``dead_letters``, the append-only
``audit_log``, ``instance_states`` (how each instance's last sync went) and ``comment_links``
(which remote comment is the bridge's copy of which canonical one) and ``remote_states`` (what
each remote record is known to hold: :mod:`usm_bridge.store.remote_state`) and
``conformance_scores`` (recorded conformance reports' scores, for trends:
:mod:`usm_bridge.store.conformance_scores`). Migrations ship in
``migrations/``: :meth:`Store.open` creates a new store with them, and upgrades an older one
only when asked (``schema=SchemaPolicy.UPGRADE``, :meth:`Store.upgrade`; see
:mod:`usm_bridge.store.upgrades`).

One query style in every module: a statement is built once, at import, as a module-level
constant (``_SELECT_CALL``, ``_INSERT_LINK``), its values bound parameters named ``b_<name>`` (never
the name of a column the statement sets, so one dictionary carries both); one whose ``ON
CONFLICT`` needs the dialect's own insert is built for each back end
(:func:`~usm_bridge.store.unit_of_work.per_back_end`), and a row lock is the same statement on
both (SQLite renders no ``FOR UPDATE``). What the arguments decide, optional filters and limits,
is added at the call onto such a constant. SQLAlchemy then reuses the statement's cache key and
compiled SQL instead of building, coercing and hashing a new construct for every call, which
the store's units of work make thousands of times in a backfill; and a module's queries read in
one place, above the code that runs them. The page's reads (:mod:`.page_state`,
:mod:`.page_chain`, :mod:`.chain_query`) and writes (:mod:`.batch_writes`,
:mod:`.copy_rows`) follow their own batching rules, described there.
"""

from usm_bridge.store.conflicts import StoreConflictError
from usm_bridge.store.records import (
    AuditEvent,
    ChainLink,
    CommentLink,
    CursorRecord,
    DeadLetter,
    DeadLetterAdded,
    DeadLetterStage,
    DeadLetterStatus,
    Enqueued,
    Identity,
    InstanceState,
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
    StoredCall,
    UpsertResult,
)
from usm_bridge.store.remote_state import get_remote_state, set_remote_state
from usm_bridge.store.store import Store, Transaction, content_hash, safe_url
from usm_bridge.store.upgrades import Migration, SchemaPolicy, SchemaState, SchemaStatus

__all__ = [
    "AuditEvent",
    "ChainLink",
    "CommentLink",
    "CursorRecord",
    "DeadLetter",
    "DeadLetterAdded",
    "DeadLetterStage",
    "DeadLetterStatus",
    "Enqueued",
    "Identity",
    "InstanceState",
    "Migration",
    "OutboxItem",
    "OutboxOperation",
    "OutboxStatus",
    "SchemaPolicy",
    "SchemaState",
    "SchemaStatus",
    "Store",
    "StoreConflictError",
    "StoredCall",
    "Transaction",
    "UpsertResult",
    "content_hash",
    "get_remote_state",
    "safe_url",
    "set_remote_state",
]
