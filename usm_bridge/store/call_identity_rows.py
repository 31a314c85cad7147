"""Calls and identities: the canonical calls a unit of work stores, and which remote record of
which connector instance each one is.

Storing a call runs a few statements, thousands of times in a backfill; they are built once,
at import. A whole page of records goes through
:mod:`.page_transaction` instead, which batches the same writes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.errors import StoreError
from usm_bridge.model import Call, utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import AuditLog, audit_row
from usm_bridge.store.call_rows import (
    call_created,
    call_updated,
    changed_call_row,
    encode_call,
    identity_linked,
    new_call_row,
)
from usm_bridge.store.chain_query import chunked
from usm_bridge.store.conflicts import StoreConflictError
from usm_bridge.store.records import Identity, StoredCall, UpsertResult
from usm_bridge.store.unit_of_work import guarded, per_back_end

__all__ = ["CallIdentityRows", "stored_call"]

# --- statements, built once (see the package's docstring) -----------------------------------
#
# Storing calls runs a few statements per call, thousands of times in a backfill. Parameters of
# WHERE clauses are named ``b_...`` so they never clash with the columns an UPDATE or INSERT
# sets from the same parameter dictionary.

_calls = t.calls
_ids = t.identities
_b_id: sa.BindParameter[Any] = sa.bindparam("b_id")
_b_instance: sa.BindParameter[Any] = sa.bindparam("b_instance")
_b_remote_id: sa.BindParameter[Any] = sa.bindparam("b_remote_id")
_b_call_id: sa.BindParameter[Any] = sa.bindparam("b_call_id")
_by_record = (_ids.c.instance == _b_instance, _ids.c.remote_id == _b_remote_id)

# -- calls
_SELECT_CALL = sa.select(*t.CALL_ROW).where(_calls.c.id == _b_id)
#: The call row, locked on PostgreSQL until the unit of work ends.
_LOCK_CALL = _SELECT_CALL.with_for_update()
_INSERT_CALL = _calls.insert()
#: Insert unless the id is taken; RETURNING says which (rowcount is not reliable).
_INSERT_CALL_IF_NEW = per_back_end(
    lambda insert: (
        insert(_calls).on_conflict_do_nothing(index_elements=[_calls.c.id]).returning(_calls.c.id)
    )
)
_UPDATE_CALL = _calls.update().where(
    _calls.c.id == _b_id, _calls.c.version == sa.bindparam("b_version")
)
_SET_VANISHED = _calls.update().where(_calls.c.id == _b_id)
_SELECT_VANISHED = sa.select(_calls.c.vanished_at).where(_calls.c.id == _b_id)
_linked = _calls.join(_ids, _ids.c.call_id == _calls.c.id)
_FIND_CALL = sa.select(*t.CALL_ROW).select_from(_linked).where(*_by_record)
#: The calls linked to some records of one instance, with each record's id.
_FIND_CALLS = (
    sa.select(*t.CALL_ROW, _ids.c.remote_id.label("identity_remote_id"))
    .select_from(_linked)
    .where(
        _ids.c.instance == sa.bindparam("b_instance"),
        _ids.c.remote_id.in_(sa.bindparam("b_part", expanding=True)),
    )
)
#: The call linked to a record, with that identity, the call locked on PostgreSQL.
_LOCK_LINKED_CALL = (
    sa.select(
        _calls,
        _ids.c.id.label("identity_id"),
        _ids.c.remote_key.label("identity_remote_key"),
        _ids.c.url.label("identity_url"),
    )
    .select_from(_linked)
    .where(*_by_record)
    .with_for_update(of=_calls)
)
#: Every stored call, oldest first: :meth:`CallIdentityRows.list_calls` adds its filters.
_LIST_CALLS = sa.select(*t.CALL_ROW).order_by(_calls.c.created_at, _calls.c.id)

# -- identities
_IDENTITY_OF_CALL = sa.select(_ids).where(
    _ids.c.call_id == _b_call_id, _ids.c.instance == _b_instance
)
_IDENTITY_OF_RECORD = sa.select(_ids).where(*_by_record)
_IDENTITY_BY_CORRELATION = sa.select(_ids).where(
    _ids.c.instance == _b_instance, _ids.c.correlation == sa.bindparam("b_correlation")
)
#: The identity of the record and that of the call in the instance (each on its index).
_IDENTITY_CLAIMS = sa.union_all(_IDENTITY_OF_RECORD, _IDENTITY_OF_CALL)
_INSERT_IDENTITY = _ids.insert()
#: Insert unless the record (or the call's slot in the instance) is taken.
_INSERT_IDENTITY_IF_FREE = per_back_end(
    lambda insert: insert(_ids).on_conflict_do_nothing().returning(_ids.c.id)
)
_UPDATE_IDENTITY = _ids.update().where(_ids.c.id == sa.bindparam("b_identity_id"))
_SET_PUSHED_HASH = (
    _ids.update()
    .where(_ids.c.call_id == _b_call_id, _ids.c.instance == _b_instance)
    .returning(*_ids.c)
)
_IDENTITIES_OF_CALL = sa.select(_ids).where(_ids.c.call_id == _b_call_id).order_by(_ids.c.instance)
_b_reference: sa.BindParameter[Any] = sa.bindparam("b_reference")
_IDENTITIES_BY_REFERENCE = (
    sa.select(_ids)
    .where(sa.or_(_ids.c.remote_key == _b_reference, _ids.c.remote_id == _b_reference))
    .order_by(_ids.c.instance, _ids.c.id)
)
_IDENTITIES_OF_INSTANCE = sa.select(_ids).where(_ids.c.instance == _b_instance).order_by(_ids.c.id)


class CallIdentityRows(AuditLog):
    """A unit of work's calls and identities."""

    # -- calls ------------------------------------------------------------------------------

    @guarded
    def upsert_call(
        self, call: Call, *, instance: str | None = None, actor: str = "bridge"
    ) -> UpsertResult:
        """Store ``call``; bump its version and audit it only if its content really changed.

        A call whose content hash equals the stored one is left as it is (no write, no version,
        no audit event): this is how a re-read, or the echo of the bridge's own write, is
        ignored. A call found vanished before is marked present again. When the call has a
        ``source``, that remote record is linked to it as an identity.

        :param instance: the connector instance the call was read from, for the audit log.
        :param actor: who made the change, for the audit log.
        """
        row = self._conn.execute(_LOCK_CALL, {"b_id": call.id}).mappings().first()
        return self._store_call(call, row, instance=instance, actor=actor)

    def _store_mapped_call(self, call: Call, *, instance: str) -> UpsertResult:
        """What :func:`usm_bridge.sync.ingest.store_mapped_call` does, in few statements.

        Equivalent to ``find_call`` on the call's source, then :meth:`upsert_call` of the call
        under the found call's id and chain links; but one statement finds (and, on PostgreSQL,
        locks) the stored call together with its identity, which then needs no other look-up,
        and a record never seen is inserted without first looking for its fresh id.
        """
        if self._ended:
            raise StoreError("this unit of work has ended; open a new one with store.begin()")
        source = call.source
        if source is None:
            return self.upsert_call(call, instance=instance)
        try:
            row = (
                self._conn.execute(
                    _LOCK_LINKED_CALL,
                    {"b_instance": source.instance, "b_remote_id": source.remote_id},
                )
                .mappings()
                .first()
            )
            if row is None:
                return self._store_call(call, None, instance=instance, actor="bridge", new=True)
            existing = stored_call(row)
            # The chain between units is the bridge's; the forks inside the unit are the
            # tool's own links, as just read (and resolved by usm_bridge.sync.forks).
            chain = existing.call.chain.model_copy(update={"forks": call.chain.forks})
            call = call.model_copy(update={"id": existing.id, "chain": chain})
            return self._store_call(call, row, instance=instance, actor="bridge", linked=row)
        except SQLAlchemyError as exc:
            raise self._store._error("upsert_call failed", exc) from exc

    def _store_call(
        self,
        call: Call,
        row: RowMapping | None,
        *,
        instance: str | None,
        actor: str,
        new: bool = False,
        linked: RowMapping | None = None,
    ) -> UpsertResult:
        """:meth:`upsert_call` once the stored row (locked on PostgreSQL) is known.

        :param row: the stored call, ``None`` when there is none.
        :param new: ``row`` was not looked for: the call is inserted unless its id is taken.
        :param linked: the call's row as read with the identity of ``call.source`` (which is
            therefore linked to it already).
        """
        encoded = encode_call(call)
        new_hash = encoded.content_hash
        now = utcnow()
        # Written together at the end (and before any error this method raises), in order.
        audits: list[dict[str, Any]] = []
        if row is None:
            values = new_call_row(call, encoded, now)
            if new:
                if self._conn.execute(_INSERT_CALL_IF_NEW[self._pg], values).first() is None:
                    # The id is taken after all: store over that call, as upsert_call would.
                    return self.upsert_call(call, instance=instance, actor=actor)
            else:
                self._conn.execute(_INSERT_CALL, values)
            audits.append(call_created(call, encoded, instance=instance, actor=actor, now=now))
            result = UpsertResult(
                call_id=call.id,
                created=True,
                changed=True,
                old_version=None,
                new_version=1,
                old_hash=None,
                content_hash=new_hash,
            )
        else:
            old_version = int(row["version"])
            old_hash = str(row["content_hash"])
            if row["vanished_at"] is not None:
                self._conn.execute(_SET_VANISHED, {"b_id": call.id, "vanished_at": None})
                audits.append(
                    audit_row(
                        "call_reappeared", call_id=call.id, instance=instance, actor=actor, now=now
                    )
                )
            new_version = old_version if old_hash == new_hash else old_version + 1
            if new_version != old_version:
                values = changed_call_row(call, encoded, new_version, now)
                updated = self._conn.execute(
                    _UPDATE_CALL, {"b_id": call.id, "b_version": old_version, **values}
                )
                if updated.rowcount != 1:
                    self._write_audits(audits)
                    raise StoreConflictError(
                        f"call {call.id} was changed concurrently; retry the cycle"
                    )
                # Only now is the old content needed: diff it, never on an unchanged re-read.
                audits.append(
                    call_updated(call, row, encoded, instance=instance, actor=actor, now=now)
                )
            result = UpsertResult(
                call_id=call.id,
                created=False,
                changed=new_version != old_version,
                old_version=old_version,
                new_version=new_version,
                old_hash=old_hash,
                content_hash=new_hash,
            )
        source = call.source
        if source is not None:
            if linked is not None:
                # Linked already (that is how the call was found): only refresh key and URL.
                self._refresh_identity(
                    linked["identity_id"],
                    {"remote_key": linked["identity_remote_key"], "url": linked["identity_url"]},
                    remote_key=source.remote_key,
                    url=source.url,
                    correlation=None,
                )
            else:
                self._link(
                    call.id,
                    source.instance,
                    source.remote_id,
                    remote_key=source.remote_key,
                    url=source.url,
                    correlation=None,
                    actor=actor,
                    audits=audits,
                    new_call=result.created,
                )
        self._write_audits(audits)
        return result

    @guarded
    def get_call(self, call_id: str) -> StoredCall | None:
        """The stored call with this canonical id, or ``None``."""
        found = self._conn.execute(_SELECT_CALL, {"b_id": call_id}).mappings().first()
        return None if found is None else stored_call(found)

    @guarded
    def find_call(self, instance: str, remote_id: str) -> StoredCall | None:
        """The call linked to the record ``remote_id`` of connector instance ``instance``."""
        found = (
            self._conn.execute(_FIND_CALL, {"b_instance": instance, "b_remote_id": remote_id})
            .mappings()
            .first()
        )
        return None if found is None else stored_call(found)

    @guarded
    def find_calls(self, instance: str, remote_ids: Collection[str]) -> dict[str, StoredCall]:
        """The calls linked to the records ``remote_ids`` of ``instance``, by remote id (one
        not linked is missing): :meth:`find_call` of many records, one query per
        :data:`~usm_bridge.store.chain_query.CHUNK` of them."""
        found: dict[str, StoredCall] = {}
        for part in chunked(set(remote_ids)):
            rows = self._conn.execute(_FIND_CALLS, {"b_instance": instance, "b_part": part})
            for row in rows.mappings():
                found[row["identity_remote_id"]] = stored_call(row)
        return found

    @guarded
    def list_calls(
        self,
        *,
        unit: str | None = None,
        include_vanished: bool = True,
        limit: int | None = None,
    ) -> list[StoredCall]:
        """Stored calls, oldest first, optionally of one unit only."""
        query = _LIST_CALLS
        if unit is not None:
            query = query.where(_calls.c.unit == unit)
        if not include_vanished:
            query = query.where(_calls.c.vanished_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        return [stored_call(row) for row in self._conn.execute(query).mappings()]

    @guarded
    def mark_vanished(
        self, call_id: str, *, instance: str | None = None, actor: str = "bridge"
    ) -> bool:
        """Record that the call's remote record was deleted; the call itself is kept.

        :returns: False when it was already marked vanished.
        :raises StoreError: no such call.
        """
        now = utcnow()
        row = self._conn.execute(_SELECT_VANISHED, {"b_id": call_id}).first()
        if row is None:
            raise StoreError(f"no call {call_id!r} to mark vanished")
        if row.vanished_at is not None:
            return False
        self._conn.execute(_SET_VANISHED, {"b_id": call_id, "vanished_at": now})
        self._audit("call_vanished", call_id=call_id, instance=instance, actor=actor, now=now)
        return True

    # -- identities -------------------------------------------------------------------------

    @guarded
    def link_identity(
        self,
        call_id: str,
        instance: str,
        remote_id: str,
        *,
        remote_key: str | None = None,
        url: str | None = None,
        correlation: str | None = None,
        actor: str = "bridge",
    ) -> Identity:
        """Link the canonical call to a remote record; linking the same pair again is a no-op.

        A call has at most one record per instance, and a record belongs to one call.
        ``remote_key``, ``url`` and ``correlation`` are updated when given.

        :raises StoreError: the record is linked to another call, or the call to another record.
        """
        audits: list[dict[str, Any]] = []
        values = self._link(
            call_id,
            instance,
            remote_id,
            remote_key=remote_key,
            url=url,
            correlation=correlation,
            actor=actor,
            audits=audits,
        )
        self._write_audits(audits)
        return Identity.model_validate(values)

    def _link(
        self,
        call_id: str,
        instance: str,
        remote_id: str,
        *,
        remote_key: str | None,
        url: str | None,
        correlation: str | None,
        actor: str,
        audits: list[dict[str, Any]],
        new_call: bool = False,
    ) -> dict[str, Any]:
        """:meth:`link_identity`, its audit event added to ``audits``; the identity's columns.

        :param new_call: the call was inserted in this unit of work, so no identity can name it
            yet and only the record can be taken: the identity is inserted straight away.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "call_id": call_id,
            "instance": instance,
            "remote_id": remote_id,
            "remote_key": remote_key,
            "url": url,
            "correlation": correlation,
            "pushed_hash": None,
            "pushed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        if new_call:
            inserted = self._conn.execute(_INSERT_IDENTITY_IF_FREE[self._pg], values).first()
            if inserted is not None:
                values["id"] = int(inserted[0])
                audits.append(identity_linked(values, actor=actor, now=now))
                return values
            # Taken: the checks below say by what.
        rows = (
            self._conn.execute(
                _IDENTITY_CLAIMS,
                {"b_instance": instance, "b_remote_id": remote_id, "b_call_id": call_id},
            )
            .mappings()
            .all()
        )
        existing = next((row for row in rows if row["remote_id"] == remote_id), None)
        if existing is not None and existing["call_id"] != call_id:
            self._write_audits(audits)
            raise StoreError(
                f"record {remote_id!r} of {instance!r} is already linked to call "
                f"{existing['call_id']!r}, not {call_id!r}"
            )
        if existing is None:
            other = next((row for row in rows if row["call_id"] == call_id), None)
            if other is not None:
                self._write_audits(audits)
                raise StoreError(
                    f"call {call_id!r} is already linked to record {other['remote_id']!r} of "
                    f"{instance!r}, not {remote_id!r}"
                )
            result = self._conn.execute(_INSERT_IDENTITY, values)
            assert result.inserted_primary_key is not None
            values["id"] = int(result.inserted_primary_key[0])
            audits.append(identity_linked(values, actor=actor, now=now))
            return values
        found = dict(existing)
        found.update(
            self._refresh_identity(
                existing["id"], existing, remote_key=remote_key, url=url, correlation=correlation
            )
        )
        return found

    def _refresh_identity(
        self,
        identity_id: int,
        current: Mapping[Any, Any],
        *,
        remote_key: str | None,
        url: str | None,
        correlation: str | None,
    ) -> dict[str, Any]:
        """Update the given (not ``None``) values that differ from ``current``; the changes."""
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("remote_key", remote_key),
                ("url", url),
                ("correlation", correlation),
            )
            if value is not None and current[name] != value
        }
        if changes:
            changes["updated_at"] = utcnow()
            self._conn.execute(_UPDATE_IDENTITY, {"b_identity_id": identity_id, **changes})
        return changes

    @guarded
    def get_identity(self, call_id: str, instance: str) -> Identity | None:
        """The call's record in ``instance``, or ``None``."""
        return self._one_identity(_IDENTITY_OF_CALL, {"b_call_id": call_id, "b_instance": instance})

    @guarded
    def find_identity(self, instance: str, remote_id: str) -> Identity | None:
        """The identity of record ``remote_id`` in ``instance``, or ``None``."""
        return self._one_identity(
            _IDENTITY_OF_RECORD, {"b_instance": instance, "b_remote_id": remote_id}
        )

    @guarded
    def find_identity_by_correlation(self, instance: str, correlation: str) -> Identity | None:
        """The identity the bridge created in ``instance`` with this correlation marker."""
        return self._one_identity(
            _IDENTITY_BY_CORRELATION,
            {"b_instance": instance, "b_correlation": correlation},
        )

    def _one_identity(self, query: sa.Select[Any], params: dict[str, Any]) -> Identity | None:
        row = self._conn.execute(query, params).mappings().first()
        return None if row is None else Identity.model_validate(dict(row))

    @guarded
    def identities_of(self, call_id: str) -> list[Identity]:
        """Every remote record of the call, by instance name."""
        rows = self._conn.execute(_IDENTITIES_OF_CALL, {"b_call_id": call_id}).mappings()
        return [Identity.model_validate(dict(row)) for row in rows]

    @guarded
    def find_identities_by_reference(self, reference: str) -> list[Identity]:
        """Every remote record whose key (``IT-1``, ``RITM0010001``) or id is ``reference``,
        in any instance (``usm-bridge trace``); ordered by instance."""
        rows = self._conn.execute(_IDENTITIES_BY_REFERENCE, {"b_reference": reference})
        return [Identity.model_validate(dict(row)) for row in rows.mappings()]

    @guarded
    def record_pushed_hash(self, call_id: str, instance: str, pushed_hash: str) -> Identity:
        """Remember the content hash last written to the call's record in ``instance``.

        :raises StoreError: the call has no record in that instance.
        """
        row = (
            self._conn.execute(
                _SET_PUSHED_HASH,
                {
                    "b_call_id": call_id,
                    "b_instance": instance,
                    "pushed_hash": pushed_hash,
                    "pushed_at": utcnow(),
                    "updated_at": utcnow(),
                },
            )
            .mappings()
            .first()
        )
        if row is None:
            raise StoreError(f"call {call_id!r} has no record in {instance!r}")
        return Identity.model_validate(dict(row))

    @guarded
    def list_identities(self, instance: str) -> list[Identity]:
        """Every remote record of ``instance`` the store knows (for the census)."""
        rows = self._conn.execute(_IDENTITIES_OF_INSTANCE, {"b_instance": instance}).mappings()
        return [Identity.model_validate(dict(row)) for row in rows]


def stored_call(row: RowMapping) -> StoredCall:
    """The stored call of a ``calls`` row; a clear error when it no longer validates."""
    try:
        call = Call.model_validate(row["canonical"])
    except ValidationError as exc:
        raise StoreError(
            f"stored call {row['id']!r} no longer validates against the model: "
            f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
        ) from exc
    return StoredCall.from_row(call, row)
