"""A unit of work over one page of records: reads from rows fetched up front, writes in batches.

:class:`PageTransaction` stands in for the :class:`~usm_bridge.store.Transaction` of a page's
unit of work wherever the ingest stage, the fork resolver and the router take one. What they
ask of the page's own records (their identities and calls, remote states, chain links, pending
outbox items, comment links, the identities their forks name) and of the calls chained to them
(the calls, links, identities, outbox items, comment copies, the audit events the router reads)
comes from the :class:`~usm_bridge.store.page_state.PageState` read when the page began; what
storing a record writes (the call, its identity, its remote state, the pushed hash, the audit
events) and what routing it writes to those calls (their updates, the writes queued for them)
is held in :class:`~usm_bridge.store.batch_writes.PageWrites` and sent in batches. So is a
supplier call the router opens (:func:`open_call`), with its chain link, the writes queued for
it and its comment copies: a new call has none of them yet, so the page follows it from then on
as one of the calls chained to its own, and a backfill that opens a supplier call per record
costs no statement per record either.

Everything else is the real transaction's. Before any of it runs, the held writes are sent, so
it reads what the page stored so far; and once something the page does not keep track of is
written (by a method the page does not serve, or a mapped call of a record not in the page),
the page's rows may be out of date, so from then on every request goes to the real
transaction, as for a single record.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import JsonValue
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.connector import RemoteDraft
from usm_bridge.errors import StoreError
from usm_bridge.model import Call, utcnow
from usm_bridge.store.audit_log import audit_row
from usm_bridge.store.batch_writes import PageWrites
from usm_bridge.store.call_identity_rows import stored_call as _stored_call
from usm_bridge.store.call_rows import (
    call_created,
    call_updated,
    changed_call_row,
    encode_call,
    identity_linked,
    new_call_row,
)
from usm_bridge.store.encoded_json import JsonText
from usm_bridge.store.page_state import PageState, load_page_state, lock_page_chains
from usm_bridge.store.records import (
    AuditEvent,
    ChainLink,
    CommentLink,
    Enqueued,
    Identity,
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
    StoredCall,
    UpsertResult,
)
from usm_bridge.store.remote_state import get_remote_state, set_remote_state
from usm_bridge.store.store import Transaction

__all__ = [
    "PageTransaction",
    "base_of",
    "note_audit",
    "open_call",
    "pushed_hash_of",
    "remember_base",
    "remember_pushed_hash",
]

#: The Transaction methods that only read: one of them keeps the page's rows valid.
_READS = frozenset(
    {
        "get_call", "find_call", "find_calls", "list_calls", "get_identity", "find_identity",
        "find_identity_by_correlation", "identities_of", "find_identities_by_reference",
        "list_identities", "suppliers_of", "upstream_of", "get_cursor",
        "list_cursors", "get_outbox_item", "list_outbox", "count_outbox", "get_dead_letter",
        "list_dead_letters", "dead_letters_about", "count_dead_letters", "get_instance_state",
        "list_instance_states", "find_comment_copy", "find_comment_link", "comment_links_of",
        "list_audit",
    }
)  # fmt: skip


class PageTransaction:
    """The page's unit of work (see the module docstring); get one from :meth:`begin`."""

    def __init__(self, tx: Transaction, state: PageState) -> None:
        self._tx = tx
        self._state = state
        self._writes = PageWrites()
        #: False once something the page's rows do not follow was written.
        self._fresh = True
        self._validated: dict[str, StoredCall] = {}
        #: The page's identities in its instance, by call id.
        self._by_call = {row["call_id"]: row for row in state.identities.values()}
        #: Calls created by the page.
        self._created: set[str] = set()
        #: (call id, kind) of the audit events appended since the page began.
        self._audited: set[tuple[str | None, str]] = set()
        #: References (ids, keys) of records the page linked: a fork may name them.
        self._linked_refs: set[str] = set()
        #: Calls the real transaction queued writes for: their outbox items are read afresh.
        self._outbox_changed: set[str] = set()
        #: Records with a remote state row (stored before, or by this page).
        self._with_state = set(state.bases)

    @classmethod
    def begin(
        cls,
        tx: Transaction,
        instance: str,
        remote_ids: Collection[str],
        *,
        comment_ids: Collection[str] = (),
        references: Collection[str] = (),
        audit_kinds: Collection[str] = (),
    ) -> PageTransaction:
        """Lock the chains of the page's records (PostgreSQL), then read what the page needs
        (:func:`~usm_bridge.store.page_state.load_page_state`)."""
        conn = tx.connection
        try:
            lock_page_chains(conn, instance, remote_ids)
            state = load_page_state(
                conn, instance, remote_ids, comment_ids=comment_ids, references=references,
                audit_kinds=audit_kinds,
            )  # fmt: skip
        except SQLAlchemyError as exc:
            raise tx.store_error("reading the page's state failed", exc) from exc
        return cls(tx, state)

    def as_transaction(self) -> Transaction:
        """This, typed as what the router and the fork resolver take (it answers the same)."""
        return cast(Transaction, self)

    # -- the real transaction -------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """What the page does not serve: the real transaction's, after the held writes."""
        attribute = getattr(self._tx, name)
        self.flush()
        if name not in _READS:
            self._fresh = False
        return attribute

    def flush(self) -> None:
        """Send the held writes (the page's end, or before the real transaction is used)."""
        if not self._writes:
            return
        self._tx.note_calls_inserted(len(self._writes.calls))
        try:
            self._writes.flush(self._tx.connection)
        except SQLAlchemyError as exc:
            raise self._tx.store_error("writing the page failed", exc) from exc

    def _real(self, *, writes: bool = False) -> Transaction:
        self.flush()
        if writes:
            self._fresh = False
        return self._tx

    def _page_record(self, instance: str, remote_id: str) -> bool:
        return (
            self._fresh and instance == self._state.instance and remote_id in self._state.remote_ids
        )

    # -- calls ----------------------------------------------------------------------------------

    def _stored(self, call_id: str) -> StoredCall:
        stored = self._validated.get(call_id)
        if stored is None:
            row = cast(RowMapping, self._state.calls[call_id])
            stored = self._validated[call_id] = _stored_call(row)
        return stored

    def _keep_validated(self, call: Call, row: dict[str, Any]) -> None:
        """The call just stored as ``row``, as reading the row back would give it: the call
        itself, not its document validated again (calls are changed only by copies). Nor
        the record's bookkeeping: the page made each of its values, of the type it has."""
        self._validated[call.id] = StoredCall.model_construct(
            call=call, version=row["version"], content_hash=row["content_hash"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            vanished_at=row["vanished_at"],
        )  # fmt: skip

    def get_call(self, call_id: str) -> StoredCall | None:
        if self._fresh and call_id in self._state.calls:
            return self._stored(call_id)
        return self._real().get_call(call_id)

    def find_call(self, instance: str, remote_id: str) -> StoredCall | None:
        if self._page_record(instance, remote_id):
            identity = self._state.identities.get(remote_id)
            if identity is None:
                return None
            if identity["call_id"] in self._state.calls:
                return self._stored(identity["call_id"])
        return self._real().find_call(instance, remote_id)

    def lock_chain(self, instance: str, remote_id: str) -> list[str]:
        if instance == self._state.instance and remote_id in self._state.remote_ids:
            return []  # locked with the page's chains when it began
        return self._real().lock_chain(instance, remote_id)

    def _store_mapped_call(self, call: Call, *, instance: str) -> UpsertResult:
        """``Transaction._store_mapped_call`` of a record of the page, its writes held."""
        source = call.source
        if source is None or not self._page_record(source.instance, source.remote_id):
            return self._real(writes=True)._store_mapped_call(call, instance=instance)
        identity = self._state.identities.get(source.remote_id)
        if identity is None:
            return self._insert(call, instance)
        row = self._state.calls.get(identity["call_id"])
        if row is None or row["vanished_at"] is not None:
            # Changed by the router, or found again after it vanished: stored as a single
            # record would be (the page reads the call afresh afterwards).
            result = self._real()._store_mapped_call(call, instance=instance)
            self._forget(result.call_id, call)
            return result
        existing = self._stored(row["id"]).call
        # As _store_mapped_call: the chain between units is the bridge's, the forks the tool's.
        chain = existing.chain.model_copy(update={"forks": call.chain.forks})
        call = call.model_copy(update={"id": existing.id, "chain": chain})
        return self._update(call, row, identity, instance=instance, actor="bridge")

    def _insert(self, call: Call, instance: str) -> UpsertResult:
        """A record never seen: its call and identity, both new."""
        source = call.source
        assert source is not None
        encoded = encode_call(call)
        new_hash = encoded.content_hash
        now = utcnow()
        row = new_call_row(call, encoded, now)
        self._writes.calls.append(row)
        identity: dict[str, Any] = {
            "call_id": call.id,
            "instance": source.instance,
            "remote_id": source.remote_id,
            "remote_key": source.remote_key,
            "url": source.url,
            "correlation": None,
            "pushed_hash": None,
            "pushed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        self._writes.identities[source.remote_id] = identity
        self._writes.audits.append(
            call_created(call, encoded, instance=instance, actor="bridge", now=now)
        )
        self._writes.audits.append(identity_linked(identity, actor="bridge", now=now))
        self._state.calls[call.id] = page_row = {**row, "canonical": encoded.canonical}
        self._keep_validated(call, page_row)
        self._state.identities[source.remote_id] = identity
        self._state.linked.add(call.id)
        self._by_call[call.id] = identity
        self._created.add(call.id)
        # A new call has no outbox item: the writes queued for it are held and listed too.
        self._state.outbox[call.id] = []
        self._linked_refs |= {source.remote_id, source.remote_key or source.remote_id}
        return UpsertResult(
            call_id=call.id, created=True, changed=True, old_version=None, new_version=1,
            old_hash=None, content_hash=new_hash,
        )  # fmt: skip

    # -- what the router writes: the page's rows follow ----------------------------------------

    def upsert_call(
        self, call: Call, *, instance: str | None = None, actor: str = "bridge"
    ) -> UpsertResult:
        """``Transaction.upsert_call`` (a call the router changed or opened): held with the
        page's writes when the page read the call (its own or a chained one) and the identity
        of its source; else the real transaction's, and the page reads the call afresh."""
        row = self._state.calls.get(call.id) if self._fresh else None
        identity = self._source_identity(call) if row is not None else False
        if row is None or row["vanished_at"] is not None or identity is False:
            result = self._real().upsert_call(call, instance=instance, actor=actor)
            self._forget(result.call_id, call)
            return result
        return self._update(call, row, identity, instance=instance, actor=actor)

    def _source_identity(self, call: Call) -> dict[str, Any] | Literal[False] | None:
        """The identity row of ``call``'s source as the page read it (``None``: no source);
        ``False`` when the page did not read it linked to the call (linking it is the real
        transaction's: it tells a record linked to another call)."""
        source = call.source
        if source is None:
            return None
        state = self._state
        rows = state.chain_identities.get(call.id)
        if rows is None and source.instance == state.instance:
            page_row = state.identities.get(source.remote_id)
            rows = [] if page_row is None else [page_row]
        for row in rows or ():
            if (row["instance"], row["remote_id"], row["call_id"]) == (
                source.instance, source.remote_id, call.id,
            ):  # fmt: skip
                return row
        return False

    def _update(
        self,
        call: Call,
        row: dict[str, Any],
        identity: dict[str, Any] | None,
        *,
        instance: str | None,
        actor: str,
    ) -> UpsertResult:
        """A call the page read, stored again with its writes held: a record of the page
        (``_store_mapped_call``) or a call the router changed (``upsert_call``)."""
        encoded = encode_call(call)
        new_hash = encoded.content_hash
        old_version, old_hash = int(row["version"]), str(row["content_hash"])
        now = utcnow()
        version = old_version
        if new_hash != old_hash:
            version = old_version + 1
            values = changed_call_row(call, encoded, version, now)
            self._writes.call_updates.append({"b_id": call.id, "b_version": old_version, **values})
            self._writes.audits.append(
                call_updated(call, row, encoded, instance=instance, actor=actor, now=now)
            )
            # The page keeps the document as a dict (the row's text is for the database).
            row.update(values, canonical=encoded.canonical)
            self._keep_validated(call, row)
        source = call.source
        if identity is not None and source is not None:
            changes = {
                name: value
                for name, value in (("remote_key", source.remote_key), ("url", source.url))
                if value is not None and identity[name] != value
            }
            if changes:
                # A fork naming the record by its old or new key is looked up afresh.
                self._linked_refs |= {str(identity["remote_key"]), source.remote_key or ""}
                self._writes.change_identity(identity, **changes, updated_at=now)
        return UpsertResult(
            call_id=call.id, created=False, changed=version != old_version,
            old_version=old_version, new_version=version, old_hash=old_hash,
            content_hash=new_hash,
        )  # fmt: skip

    def _forget(self, call_id: str, written: Call) -> None:
        """After the real transaction wrote ``written`` as ``call_id``: the call is read afresh,
        and its record's identity has the key and URL the write gave it."""
        self._state.calls.pop(call_id, None)
        self._validated.pop(call_id, None)
        source = written.source
        if source is None or source.instance != self._state.instance:
            return
        identity = self._state.identities.get(source.remote_id)
        if identity is not None:
            known = {"remote_key": source.remote_key, "url": source.url}
            identity.update({name: value for name, value in known.items() if value is not None})

    def open_call(self, call: Call, *, actor: str) -> UpsertResult:
        """A call the router made just now (a supplier call, its id fresh), inserted with the
        page's writes; the page then follows it as a call chained to the page's, with no
        identity, chain link, outbox item or comment copy yet. An id taken after all breaks
        the calls' key when the writes go out: the page is stored again record by record,
        where ``Transaction.upsert_call`` stores over that call."""
        state = self._state
        if not self._fresh or call.source is not None or call.id in state.calls:
            return self.upsert_call(call, actor=actor)
        encoded = encode_call(call)
        now = utcnow()
        row = new_call_row(call, encoded, now)
        self._writes.calls.append(row)
        self._writes.audits.append(call_created(call, encoded, instance=None, actor=actor, now=now))
        state.calls[call.id] = page_row = {**row, "canonical": encoded.canonical}
        self._keep_validated(call, page_row)
        state.linked.add(call.id)
        state.chain_calls.add(call.id)
        state.chain_identities[call.id] = []
        state.outbox[call.id] = []
        state.copies[call.id] = {}
        return UpsertResult(
            call_id=call.id, created=True, changed=True, old_version=None, new_version=1,
            old_hash=None, content_hash=encoded.content_hash,
        )  # fmt: skip

    def link_chain(self, upstream_call_id: str, supplier_call_id: str, route: str) -> ChainLink:
        """``Transaction.link_chain``: held with the page's writes when the page knows every
        link of both calls (its own and those chained to them); else the real transaction's."""
        state = self._state
        if self._fresh and {upstream_call_id, supplier_call_id} <= state.linked:
            return self._hold_link(upstream_call_id, supplier_call_id, route)
        link = self._real().link_chain(upstream_call_id, supplier_call_id, route)
        if upstream_call_id in state.linked:
            known = state.suppliers.setdefault(upstream_call_id, [])
            if link not in known:
                known.append(link)
        if supplier_call_id in state.linked:
            state.upstream[supplier_call_id] = link
        return link

    def _hold_link(self, upstream_call_id: str, supplier_call_id: str, route: str) -> ChainLink:
        state = self._state
        existing = state.upstream.get(supplier_call_id)
        if existing is not None:
            if existing.upstream_call_id != upstream_call_id:
                raise StoreError(
                    f"call {supplier_call_id!r} already supplies {existing.upstream_call_id!r}"
                )
            return existing
        now = utcnow()
        link = ChainLink(
            upstream_call_id=upstream_call_id, supplier_call_id=supplier_call_id, route=route,
            created_at=now,
        )  # fmt: skip
        self._writes.links.append(link.model_dump())
        detail: JsonValue = {"supplier_call_id": supplier_call_id, "route": route}
        self._writes.audits.append(
            audit_row("chain_linked", call_id=upstream_call_id, detail=detail, now=now)
        )
        state.suppliers.setdefault(upstream_call_id, []).append(link)
        state.upstream[supplier_call_id] = link
        return link

    def enqueue(
        self,
        target_instance: str,
        call_id: str,
        operation: OutboxOperation | str,
        payload: JsonValue,
        idempotency_key: str,
        *,
        not_before: datetime | None = None,
    ) -> Enqueued:
        """``Transaction.enqueue``: held with the page's writes for a call chained to the
        page's, whose every outbox item the page read (so it knows whether the key is taken),
        and listed with them from then on; else the real transaction's, and the call's outbox
        items are then read afresh.

        A held item has no id until the page's writes are sent: ``0`` (the router asks only
        whether an item is new, and what a call's items are, in order).
        """
        items = self._state.outbox.get(call_id)
        if not self._fresh or items is None or call_id in self._outbox_changed or not_before:
            self._outbox_changed.add(call_id)
            return self._real().enqueue(
                target_instance, call_id, operation, payload, idempotency_key,
                not_before=not_before,
            )  # fmt: skip
        op = OutboxOperation(operation)
        for item in items:
            if item.idempotency_key != idempotency_key:
                continue
            if (item.target_instance, item.call_id, item.operation) != (
                target_instance, call_id, op,
            ):  # fmt: skip
                raise StoreError(
                    f"idempotency key {idempotency_key!r} is already used for a "
                    f"{item.operation} of call {item.call_id!r} in {item.target_instance!r}"
                )
            return Enqueued(item=item, created=False)
        now = utcnow()
        row: dict[str, Any] = {
            "target_instance": target_instance, "call_id": call_id, "operation": op.value,
            "payload": payload, "idempotency_key": idempotency_key,
            "status": OutboxStatus.PENDING.value, "attempts": 0, "next_attempt_at": now,
            "last_error": None, "created_at": now, "updated_at": now,
        }  # fmt: skip
        self._writes.outbox.append(row)
        item = OutboxItem.model_validate({"id": 0, **row})
        # A second decision to make the same write is none (as the key's constraint says).
        items.append(item)
        if call_id in self._created and target_instance == self._state.instance:
            # A new call of the page: its pending items for the page's tool are listed too.
            self._state.pending.setdefault(call_id, []).append(item)
        return Enqueued(item=item, created=True)

    def link_comment(
        self,
        call_id: str,
        instance: str,
        comment_id: str,
        *,
        source_comment_id: str,
        remote_comment_id: str | None = None,
    ) -> CommentLink:
        """``Transaction.link_comment``: a new copy (no remote id yet) on a call chained to the
        page's, whose every copy the page read, is held with the page's writes; else the
        real transaction's, and the page's rows follow it."""
        copies = self._state.copies.get(call_id)
        if self._fresh and copies is not None and remote_comment_id is None:
            existing = copies.get(source_comment_id)
            if existing is None:
                return self._hold_copy(call_id, instance, comment_id, source_comment_id)
            if (existing.instance, existing.comment_id) != (instance, comment_id):
                raise StoreError(
                    f"comment {source_comment_id!r} is already copied onto call {call_id!r} "
                    f"as {existing.comment_id!r}"
                )
            return existing
        link = self._real().link_comment(
            call_id, instance, comment_id, source_comment_id=source_comment_id,
            remote_comment_id=remote_comment_id,
        )  # fmt: skip
        state = self._state
        if link.instance == state.instance and link.remote_comment_id in state.comment_ids:
            state.comment_links[link.remote_comment_id] = link
        if link.call_id in state.copies:
            state.copies[link.call_id][link.source_comment_id] = link
        return link

    def _hold_copy(
        self, call_id: str, instance: str, comment_id: str, source_comment_id: str
    ) -> CommentLink:
        now = utcnow()
        row: dict[str, Any] = {
            "call_id": call_id, "instance": instance, "comment_id": comment_id,
            "source_comment_id": source_comment_id, "remote_comment_id": None,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        self._writes.comment_links.append(row)
        # No id until the page's writes are sent (the router asks only whether it is there).
        link = self._state.copies[call_id][source_comment_id] = CommentLink.model_validate(
            {"id": 0, **row}
        )
        return link

    def find_comment_copy(self, call_id: str, source_comment_id: str) -> CommentLink | None:
        """``Transaction.find_comment_copy``; from the page's rows for a call chained to the
        page's (a copy the page links is added to them)."""
        copies = self._state.copies.get(call_id)
        if self._fresh and copies is not None:
            return copies.get(source_comment_id)
        return self._real().find_comment_copy(call_id, source_comment_id)

    # -- identities and remote states ------------------------------------------------------------

    def _identity_row(self, call_id: str, instance: str) -> dict[str, Any] | None:
        if self._fresh and instance == self._state.instance:
            return self._by_call.get(call_id)
        return None

    def identities_of(self, call_id: str) -> list[Identity]:
        """``Transaction.identities_of``; from the page's rows for a call chained to the page's
        (the page changes none of their identities but their keys and URLs, in the rows)."""
        rows = self._state.chain_identities.get(call_id)
        if self._fresh and rows is not None:
            return [Identity.model_validate(row) for row in rows]
        return self._real().identities_of(call_id)

    def pushed_hash(self, call_id: str, instance: str) -> str | None:
        """The hash last pushed to (or read from) the call's record in ``instance``."""
        row = self._identity_row(call_id, instance)
        if row is not None:
            return cast(str | None, row["pushed_hash"])
        identity = self._real().get_identity(call_id, instance)
        return None if identity is None else identity.pushed_hash

    def remember_pushed_hash(self, call_id: str, instance: str, pushed_hash: str) -> None:
        """``record_pushed_hash``, held with the page's writes."""
        row = self._identity_row(call_id, instance)
        if row is None:
            self._real().record_pushed_hash(call_id, instance, pushed_hash)
            return
        now = utcnow()
        self._writes.change_identity(row, pushed_hash=pushed_hash, pushed_at=now, updated_at=now)

    def find_identities_by_reference(self, reference: str) -> list[Identity]:
        state = self._state
        if self._fresh and reference in state.references and reference not in self._linked_refs:
            return list(state.by_reference[reference])
        # A record the page linked itself: its identity is read once sent.
        return self._real().find_identities_by_reference(reference)

    def base(self, instance: str, remote_id: str) -> RemoteDraft | None:
        """What the record is known to hold (``get_remote_state``)."""
        if instance == self._state.instance and remote_id in self._state.remote_ids:
            return self._state.bases.get(remote_id)
        return get_remote_state(self._real(), instance, remote_id)

    def remember_base(
        self, instance: str, remote_id: str, draft: RemoteDraft, *, encoded: JsonText | None = None
    ) -> None:
        """``set_remote_state``, held with the page's writes (``encoded``: the draft's JSON,
        when the caller has it already)."""
        if instance != self._state.instance or remote_id not in self._state.remote_ids:
            set_remote_state(self._real(), instance, remote_id, draft)
            return
        document = encoded if encoded is not None else draft.model_dump(mode="json")
        values = {"draft": document, "updated_at": utcnow()}
        if remote_id in self._with_state:
            self._writes.state_updates.append(
                {"b_instance": instance, "b_remote_id": remote_id, **values}
            )
        else:
            self._writes.states.append({"instance": instance, "remote_id": remote_id, **values})
            self._with_state.add(remote_id)
        self._state.bases[remote_id] = draft

    # -- chain links, outbox, comment links, audit -------------------------------------------------

    def upstream_of(self, call_id: str) -> ChainLink | None:
        if self._fresh and call_id in self._state.linked:
            return self._state.upstream.get(call_id)
        return self._real().upstream_of(call_id)

    def suppliers_of(self, call_id: str) -> list[ChainLink]:
        if self._fresh and call_id in self._state.linked:
            return list(self._state.suppliers.get(call_id, ()))
        return self._real().suppliers_of(call_id)

    def list_outbox(
        self,
        *,
        status: OutboxStatus | str | None = None,
        instance: str | None = None,
        call_id: str | None = None,
        limit: int | None = None,
    ) -> list[OutboxItem]:
        state = self._state
        if (
            self._fresh
            and status is not None
            and OutboxStatus(status) is OutboxStatus.PENDING
            and instance == state.instance
            and limit is None
            and (call_id in state.pending or call_id in self._created)
            and call_id not in self._outbox_changed
        ):
            return list(state.pending.get(call_id or "", ()))
        chained = state.outbox.get(call_id or "")
        if self._fresh and chained is not None and call_id not in self._outbox_changed:
            wanted = [
                item
                for item in chained
                if (status is None or item.status is OutboxStatus(status))
                and (instance is None or item.target_instance == instance)
            ]
            return wanted[:limit] if limit is not None else wanted
        return self._real().list_outbox(status=status, instance=instance, call_id=call_id,
                                        limit=limit)  # fmt: skip

    def find_comment_link(self, instance: str, remote_comment_id: str) -> CommentLink | None:
        state = self._state
        if self._fresh and instance == state.instance and remote_comment_id in state.comment_ids:
            return state.comment_links.get(remote_comment_id)
        return self._real().find_comment_link(instance, remote_comment_id)

    def list_audit(
        self,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        if (
            self._fresh
            and (call_id in self._by_call or call_id in self._state.chain_calls)
            and kind in self._state.audit_kinds
            and (call_id, kind) not in self._audited
            and (instance, after_id, limit) == (None, None, None)
        ):
            return list(self._state.audits.get((call_id or "", kind or ""), ()))
        return self._real().list_audit(call_id=call_id, instance=instance, kind=kind,
                                       after_id=after_id, limit=limit)  # fmt: skip

    def append_audit(self, kind: str, **event: Any) -> AuditEvent:
        self._audited.add((event.get("call_id"), kind))
        return self._real().append_audit(kind, **event)

    def note_audit(self, kind: str, *, call_id: str, instance: str | None, detail: Any) -> None:
        """An audit event of the bridge about a call, held with the page's writes."""
        if not (self._fresh and call_id in self._by_call):
            self._real().append_audit(kind, call_id=call_id, instance=instance, detail=detail)
        else:
            now = utcnow()
            row = audit_row(kind, call_id=call_id, instance=instance, detail=detail, now=now)
            self._writes.audits.append(row)
        self._audited.add((call_id, kind))


def note_audit(
    tx: Transaction, kind: str, *, call_id: str, instance: str | None, detail: JsonValue
) -> None:
    """``tx.append_audit`` of a finding about a call, held with the page's writes in a page's
    unit of work (the event itself is not needed)."""
    if isinstance(tx, PageTransaction):
        tx.note_audit(kind, call_id=call_id, instance=instance, detail=detail)
    else:
        tx.append_audit(kind, call_id=call_id, instance=instance, detail=detail)


def open_call(tx: Transaction, call: Call, *, actor: str) -> UpsertResult:
    """``tx.upsert_call`` of a call made just now with a fresh id (a supplier call the router
    opens): held with the page's writes in a page's unit of work."""
    if isinstance(tx, PageTransaction):
        return tx.open_call(call, actor=actor)
    return tx.upsert_call(call, actor=actor)


def base_of(tx: Transaction, instance: str, remote_id: str) -> RemoteDraft | None:
    """``get_remote_state``, from the page's rows in a page's unit of work."""
    if isinstance(tx, PageTransaction):
        return tx.base(instance, remote_id)
    return get_remote_state(tx, instance, remote_id)


def remember_base(
    tx: Transaction,
    instance: str,
    remote_id: str,
    draft: RemoteDraft,
    *,
    encoded: JsonText | None = None,
) -> None:
    """``set_remote_state``, held with the page's writes in a page's unit of work
    (``encoded``: the draft as JSON already, written as it is)."""
    if isinstance(tx, PageTransaction):
        tx.remember_base(instance, remote_id, draft, encoded=encoded)
    else:
        set_remote_state(tx, instance, remote_id, draft)


def pushed_hash_of(tx: Transaction, call_id: str, instance: str) -> str | None:
    """The identity's ``pushed_hash`` (``None`` without an identity)."""
    if isinstance(tx, PageTransaction):
        return tx.pushed_hash(call_id, instance)
    identity = tx.get_identity(call_id, instance)
    return None if identity is None else identity.pushed_hash


def remember_pushed_hash(tx: Transaction, call_id: str, instance: str, pushed_hash: str) -> None:
    """``record_pushed_hash``, held with the page's writes in a page's unit of work."""
    if isinstance(tx, PageTransaction):
        tx.remember_pushed_hash(call_id, instance, pushed_hash)
    else:
        tx.record_pushed_hash(call_id, instance, pushed_hash)
