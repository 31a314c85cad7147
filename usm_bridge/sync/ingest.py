"""The ingest stage: what a tool said, from its raw record to the writes queued for other tools.

Every path that stores what a tool said goes through here: the sync cycle
(:meth:`~.engine.SyncEngine.run_cycle`) and ``dead-letters retry``
(:func:`usm_bridge.dead_letters.retry_dead_letters`). A record ingested through either leaves the
store, the audit log and the outbox the same. :meth:`IngestStage.ingest_page` takes a page of
raw records of one instance, maps them, stores them in one unit of work with a few statements
for the whole page (:mod:`.page_ingest`), and answers one :class:`RecordOutcome` per record.
One record goes, top to bottom:

1. **Map** (:meth:`IngestStage._map`): the instance's mapping makes a canonical call of the
   record, and the call's outbound draft (what the tool holds, as the bridge would write it).
   A record the mapping refuses, or a mapping plugin's bug, is a ``map`` dead letter.
2. **Merge** (:func:`.merge.merge_read`, in :meth:`IngestStage._store`): against what is stored.
   A field the tool does not map is kept (:func:`.calls.keep_unmapped`), and so is a stored
   confirmation the read no longer shows (:mod:`.kept_confirmation`); a field the read holds
   as the base (``remote_states``: what the tool was known to hold) was not changed in the
   tool, so the stored value stays (a decision not pushed yet survives a stale read); a field
   the tool changed is taken.
3. **Store** (:func:`store_mapped_call`): under the canonical id the remote record already has,
   with its chain links, and its forks between processes resolved to the calls the bridge
   holds (:mod:`.forks`; after the page, older forks naming its records are filled in); the
   read draft becomes the new base. A service or agreement the config does not register is
   audited once per call and value (:mod:`.references`).
4. **Recognise the echo**: a read equal to the base, or whose draft hash is the identity's
   ``pushed_hash`` (what the bridge wrote, or last read), is the bridge's own write coming
   back: stored, not routed (unless it brings a new public comment).
5. **Route** (:class:`.router.Router`): the chain's rules decide which other tools hear of the
   change; their writes go into the outbox in the same unit of work as the call.

Steps 2-5 of a page's records are one unit of work, which first locks every call of their
chains (PostgreSQL; SQLite runs writers one at a time), so that two cycles never rewrite a
linked call from what they read before the other's commit; one the database rolls back for a
conflict with another unit of work (:class:`~usm_bridge.store.StoreConflictError`) runs again
from the start, ``STORE_ATTEMPTS`` times at most. A page that fails otherwise (or conflicts
every time) is stored again record by record, each record in a unit of work of its own
(:meth:`IngestStage.store_record`), which is how one record's fault stays its own.

Nothing a record holds fails the page: any exception while ingesting it (a constraint
violation, a plugin bug, a mapping error) makes it a dead letter outcome naming the error
(credentials masked, length bounded), and the page goes on. Two things do end the page, for
the caller to handle as the end of the read: a remote error a mapping plugin raises that may
pass (not a :class:`~usm_bridge.errors.PermanentRemoteError`: the record is read again next
time), and a mapping file that does not load at all (the admin's to fix; no record is to blame).

A record the outbox linked as found by its correlation marker, whose update is still to come
(:func:`~.outbox.awaits_found_update`), holds what a create that failed half-way left in it:
its read becomes the base, but changes no field the bridge writes and is not routed, so the
update writes what the record lacks instead of the read undoing the call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from ..connector import RawRecord, RemoteDraft
from ..errors import (
    ConfigurationError,
    MappingError,
    PermanentRemoteError,
    RemoteError,
    StoreError,
)
from ..mapping import Mapping as MappingFile
from ..mapping import MappingContext
from ..model import Call
from ..plugins import PluginHost
from ..store import (
    DeadLetterStage,
    Store,
    StoreConflictError,
    Transaction,
    UpsertResult,
)
from ..store.page_transaction import (
    base_of,
    pushed_hash_of,
    remember_base,
    remember_pushed_hash,
)
from .attachment_intake import AttachmentIntake, carry_attachments, new_files
from .call_labels import mapped_call_label, record_label
from .calls import draft_json, hash_of_draft, keep_unmapped
from .file_retry import settle_file_letters
from .forks import ForkResolver
from .kept_confirmation import keep_confirmation
from .merge import merge_read
from .outbox import awaits_found_update, describe_exception, raised_at
from .page_ingest import MappedRecord, PageEnd, store_page
from .references import audit_unknown_references
from .router import Router

__all__ = [
    "STORE_ATTEMPTS",
    "IngestStage",
    "MappedElsewhere",
    "Outcome",
    "RecordOutcome",
    "store_mapped_call",
]

log = logging.getLogger(__name__)

#: Times a record is stored before a conflict with concurrent cycles makes it a dead letter.
STORE_ATTEMPTS = 5


class Outcome(StrEnum):
    """What became of one record."""

    #: Stored and handed to the router (its writes, if any, are in the outbox).
    ROUTED = "routed"
    #: Stored, but the bridge's own write coming back: not routed.
    ECHO = "echo"
    #: Read again without any change: nothing stored.
    UNCHANGED = "unchanged"
    #: Could not be mapped or stored: the caller keeps it as a dead letter.
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class RecordOutcome:
    """One record's outcome; ``stage`` and ``reason`` are set for a dead letter only."""

    record: RawRecord
    outcome: Outcome
    call_id: str | None = None
    #: The instances the router queued writes for.
    targets: frozenset[str] = frozenset()
    stage: DeadLetterStage | None = None
    reason: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the record changed the store (echoes included)."""
        return self.outcome in (Outcome.ROUTED, Outcome.ECHO)


def _files_not_taken(instance: str, record: RawRecord, error: Exception) -> RecordOutcome:
    """The ``map`` dead letter of a record whose listed files could not be taken in for a
    reason of their own (a value the model refuses, a bug): that record waits for a retry of
    its letter, the read goes on past it (one record must not hold up every later one)."""
    reason = f"its files could not be taken in: {describe_exception(error)}"
    log.warning("record %s: %s at %s", record_label(record, instance), reason, raised_at(error))
    return RecordOutcome(record, Outcome.DEAD_LETTER, stage=DeadLetterStage.MAP, reason=reason)


@dataclass(frozen=True, slots=True)
class MappedElsewhere:
    """A record mapped in another process (:mod:`.child_read`): what
    :meth:`IngestStage.map_only` made of it there. Exactly one of: ``call`` (with its
    ``draft``), a ``map`` dead letter's ``reason``, or the exception that ``ended`` the read at
    this record (a mapping plugin's remote error that may pass, a mapping file that does not
    load), raised where the record is ingested as if it had been mapped here. Its files are
    taken in where it is stored, as a page's are (:meth:`IngestStage._attach_page`)."""

    record: RawRecord
    call: Call | None = None
    draft: RemoteDraft | None = None
    reason: str | None = None
    ended: Exception | None = None


class _Unmappable(Exception):
    """The record cannot be mapped: the reason of its ``map`` dead letter."""


def store_mapped_call(tx: Transaction, call: Call, *, instance: str) -> UpsertResult:
    """Upsert ``call`` under the canonical id its remote record already has, if any.

    A mapping knows the tool's record, not the bridge's history: every mapped call gets a fresh
    canonical id and no chain links. When the remote record is already known, the stored call's
    id and chain links are kept, so re-reading a record updates its call instead of creating
    another. The same as ``tx.find_call`` of the call's source followed by ``tx.upsert_call``
    of the call with the found call's id and chain links; the store does both in fewer
    statements.
    """
    return tx._store_mapped_call(call, instance=instance)


class IngestStage:
    """Map, merge, store, recognise the echo, route: see the module docstring."""

    def __init__(
        self,
        store: Store,
        host: PluginHost,
        router: Router,
        *,
        mapping: Callable[[str], MappingFile],
        context: Callable[[str], MappingContext],
        attachments: AttachmentIntake | None = None,
    ) -> None:
        """
        :param mapping: the instance's current mapping (reloaded by its owner when it changes).
        :param context: the instance's mapping context.
        :param attachments: takes in the files records list (:mod:`.attachment_intake`);
            ``None``: the files a record lists are not read (the stored ones are kept).
        """
        self.store = store
        self.attachments = attachments
        self.host = host
        self.router = router
        self._mapping = mapping
        self._context = context
        self.forks = ForkResolver(router.config)

    def ingest_page(
        self,
        instance: str,
        records: Iterable[RawRecord | MappedElsewhere],
        *,
        stop: threading.Event | None = None,
        each: Callable[[RecordOutcome], None] | None = None,
        end: PageEnd | None = None,
    ) -> list[RecordOutcome]:
        """One outcome per record, in order (a record :class:`MappedElsewhere` is taken as it
        was mapped there, its files taken in here); ``each`` is called for each record once the page
        is stored. ``end``: the checkpoint ``records`` end at, its cursor saved with them when
        every one is mapped and stored together (``end.stored`` then says so; see
        :mod:`.page_ingest`).

        The page is mapped first, then stored in one unit of work (:mod:`.page_ingest`); when
        that fails, record by record, each in its own. When ``stop`` is set the page ends after
        the record in flight: the records after it get no outcome (nothing of them is stored;
        they are read again).

        :raises RemoteError: a mapping plugin raised a remote error that may pass; the records
            before it have their outcomes through ``each``, this one and the rest none.
        :raises ConfigurationError: the instance's mapping file does not load (first use).
        """
        outcomes: list[RecordOutcome] = []
        mapped: list[MappedRecord] = []
        ended: Exception | None = None
        page_end: PageEnd | None = None
        try:
            for record in records:
                try:
                    mapped.append(
                        self.map_only(instance, record)
                        if isinstance(record, RawRecord)
                        else self._taken_as_mapped(instance, record)
                    )
                except Exception as exc:  # the end of the read: stored up to this record
                    ended = exc
                    break
                if stop is not None and stop.is_set():
                    break
            else:
                page_end = end  # every record mapped: the page may end at the checkpoint
            attached, failed = self._attach_page(instance, mapped, stop)
            if len(attached) < len(mapped):  # cut before a record whose files failed
                page_end, ended = None, failed or ended
            mapped = attached
            outcomes = store_page(self, instance, mapped, stop=stop, end=page_end)
            if each is not None:
                for outcome in outcomes:
                    each(outcome)
        finally:
            # Also when the page ends early: what was stored may be named by older forks.
            self._backfill_forks(instance, outcomes)
        if ended is not None:
            raise ended
        return outcomes

    def _backfill_forks(self, instance: str, outcomes: list[RecordOutcome]) -> None:
        """Forks stored before that name a record of the page get its call (one unit of work
        per page); a failure leaves them unresolved for the next page, never fails this one."""
        stored = [o.call_id for o in outcomes if o.stored and o.call_id is not None]
        if not stored:
            return
        try:
            with self.store.begin() as tx:
                self.forks.backfill(tx, instance, stored)
        except StoreError as exc:
            log.warning("resolving forks named by %s records of %s failed: %s",
                        len(stored), instance, exc)  # fmt: skip

    def ingest(self, instance: str, record: RawRecord) -> RecordOutcome:
        """One record's outcome (see :meth:`ingest_page`), in a unit of work of its own."""
        mapped = self._map_record(instance, record)
        return mapped if isinstance(mapped, RecordOutcome) else self.store_record(*mapped)

    def _map_record(self, instance: str, record: RawRecord, *, attach: bool = True) -> MappedRecord:
        """The record mapped, or its ``map`` dead letter outcome; with ``attach``, its files
        taken in (a page takes its records' in :meth:`_attach_page`)."""
        try:
            call, read_draft = self._map(instance, record)
        except _Unmappable as exc:
            return RecordOutcome(record, Outcome.DEAD_LETTER, stage=DeadLetterStage.MAP,
                                 reason=str(exc))  # fmt: skip
        if attach and self.attachments is not None and record.attachments:
            # Downloads, outside any unit of work; a failure that may pass ends the read
            # before this record (read again next time), like a mapping plugin's remote error.
            call = self.attachments.attach(instance, record, call)
        return instance, record, call, read_draft

    def map_only(self, instance: str, record: RawRecord) -> MappedRecord:
        """Step 1 without the files: the record's call and draft, or its ``map`` dead letter
        outcome. Touches neither the store nor the connector, so it may run in the child
        process that reads (:mod:`.child_read`); the files are taken in for the page where it
        is stored (:meth:`_attach_page`).

        :raises RemoteError: a mapping plugin's remote error that may pass (ends the read).
        :raises ConfigurationError: the mapping file does not load.
        """
        return self._map_record(instance, record, attach=False)

    @staticmethod
    def _taken_as_mapped(instance: str, item: MappedElsewhere) -> MappedRecord:
        """A record mapped in the reading child, as :meth:`map_only` would have made it here."""
        if item.ended is not None:
            raise item.ended
        if item.call is None:
            return RecordOutcome(item.record, Outcome.DEAD_LETTER, stage=DeadLetterStage.MAP,
                                 reason=item.reason or "mapping failed")  # fmt: skip
        return instance, item.record, item.call, item.draft

    def _attach_page(
        self, instance: str, page: list[MappedRecord], stop: threading.Event | None
    ) -> tuple[list[MappedRecord], Exception | None]:
        """The page's mapped records with their files taken in (outside any unit of work: a
        download may take long), their stored calls looked up in one query for the page;
        cut before the record whose files failed (with the failure: the read ends there, the
        record is read again next time), or after the record in flight once ``stop`` is set.
        A record whose files fail for a reason of their own (not the tool's, the store's or the
        config's) is a ``map`` dead letter instead, and the page goes on."""
        listing = [
            item[1].remote_id for item in page if isinstance(item, tuple) and item[1].attachments
        ]
        if self.attachments is None or not listing:
            return page, None
        out: list[MappedRecord] = []
        try:
            held = self.attachments.held_calls(instance, listing)
            for item in page:
                if isinstance(item, tuple) and item[1].attachments:
                    if stop is not None and stop.is_set():
                        break
                    _, record, call, draft = item
                    try:
                        call = self.attachments.attach_to(
                            instance, record, call, held.get(record.remote_id)
                        )
                    except (RemoteError, OSError, StoreError, ConfigurationError):
                        raise  # may pass, or the bridge's own to fix: the read ends here
                    except Exception as exc:  # what this record's files hold: its alone
                        out.append(_files_not_taken(instance, record, exc))
                        continue
                    item = (instance, record, call, draft)
                out.append(item)
        except Exception as exc:  # the end of the read: stored up to this record
            return out, exc
        return out, None

    def store_record(
        self, instance: str, record: RawRecord, call: Call, read_draft: RemoteDraft | None
    ) -> RecordOutcome:
        """Merge, store, recognise the echo, route a mapped record: one unit of work, again on
        a conflict; anything it raises makes it a dead letter outcome."""
        attempt = 1
        while True:
            try:
                return self.store_in(None, instance, record, call, read_draft)
            except StoreConflictError as exc:
                if attempt < STORE_ATTEMPTS:
                    # A cycle of another instance stored calls of the same chain at the same
                    # time and the database rolled this unit of work back: nothing of it was
                    # kept, and storing the record again sees that cycle's changes.
                    log.info("storing record %s met another cycle (%s); again",
                             record_label(record, instance), exc)  # fmt: skip
                    attempt += 1
                    continue
                reason = str(exc)
            except StoreError as exc:  # a constraint the record breaks, a value refused
                reason = str(exc)
            except Exception as exc:  # a bug in the merge, the router, a plugin hook
                reason = describe_exception(exc)
                log.warning("storing record %s raised %s at %s", record_label(record, instance),
                            reason, raised_at(exc))  # fmt: skip
            return RecordOutcome(record, Outcome.DEAD_LETTER, stage=DeadLetterStage.STORE,
                                 reason=reason)  # fmt: skip

    # -- 1. map -------------------------------------------------------------------------------

    def _map(self, instance: str, record: RawRecord) -> tuple[Call, RemoteDraft | None]:
        """The record's call, and its outbound draft (``None``: the tool holds something the
        bridge could not write back, so it is never an echo).

        :raises _Unmappable: the record goes to the dead letters with this reason.
        """
        mapping, context = self._mapping(instance), self._context(instance)
        try:
            call = self.host.map_inbound(mapping, record, context)
        except MappingError as exc:
            raise _Unmappable(str(exc)) from exc
        except Exception as exc:
            raise _Unmappable(self._plugin_fault("inbound", instance, record, exc)) from exc
        try:
            return call, self.host.map_outbound(mapping, call, context)
        except MappingError:
            return call, None
        except Exception as exc:
            # Not "cannot be written back": a bug whose draft is unknown. Storing the call
            # without one would leave the bridge unable to tell its own write coming back, and
            # route the echo along the chain again.
            raise _Unmappable(self._plugin_fault("outbound", instance, record, exc)) from exc

    @staticmethod
    def _plugin_fault(direction: str, instance: str, record: RawRecord, exc: Exception) -> str:
        """The dead letter's reason for a mapping plugin's exception other than a MappingError;
        re-raises a remote error that may pass (the read ends; the record is read again)."""
        if isinstance(exc, RemoteError) and not isinstance(exc, PermanentRemoteError):
            raise exc
        reason = describe_exception(exc)
        # The place, for the plugin's author; the traceback would repeat the unmasked message.
        log.warning("mapping record %s %s raised %s at %s", record_label(record, instance),
                    direction, reason, raised_at(exc))  # fmt: skip
        return f"mapping {direction} for {instance} failed in a plugin: {reason}"

    def _merge_outbound(
        self, instance: str, mapping: MappingFile, context: MappingContext
    ) -> Callable[[Call], RemoteDraft]:
        """``map_outbound`` for :func:`merge_read`, which takes a field it cannot map from the
        read: a plugin's bug on one of its probes is such a field, not the end of the read."""

        def outbound(call: Call) -> RemoteDraft:
            try:
                return self.host.map_outbound(mapping, call, context)
            except (MappingError, RemoteError, StoreError):
                raise
            except Exception as exc:
                reason = describe_exception(exc)
                log.warning("mapping %s outbound for %s to merge a read raised %s at %s",
                            mapped_call_label(call), instance, reason, raised_at(exc))  # fmt: skip
                raise MappingError(f"a mapping plugin failed: {reason}") from exc

        return outbound

    # -- 2-5. merge, store, recognise the echo, route ------------------------------------------

    @contextmanager
    def _unit_of_work(self, page: Transaction | None) -> Iterator[Transaction]:
        """The page's unit of work, or a new one for the record alone."""
        if page is not None:
            yield page
        else:
            with self.store.begin() as tx:
                yield tx

    def store_in(
        self,
        page: Transaction | None,
        instance: str,
        record: RawRecord,
        call: Call,
        read_draft: RemoteDraft | None,
    ) -> RecordOutcome:
        """Store and route one mapped record in the page's unit of work, or in one of its own
        (``page`` is ``None``). Raises what the store (or a hook the router calls) raises, with
        nothing kept."""
        mapping, context = self._mapping(instance), self._context(instance)
        # Encoded once: hashed for echo recognition, and kept as it is as the record's base.
        read_json = draft_json(read_draft) if read_draft is not None else None
        read_hash = hash_of_draft(read_json) if read_json is not None else None
        with self._unit_of_work(page) as tx:
            # First, so that what follows reads the chain's calls as they are and no other
            # cycle rewrites them before this one commits (PostgreSQL; SQLite is serial).
            tx.lock_chain(instance, record.remote_id)
            existing = tx.find_call(instance, record.remote_id)
            previous = existing.call if existing is not None else None
            base = base_of(tx, instance, record.remote_id)
            # Linked as found, holding what a create that failed half-way left: the update
            # queued with the link writes the call over it, so nothing read may change the
            # call first (it would undo what the update is to write). The read is what the
            # record holds, so it becomes the base the update writes the difference from.
            found = (
                previous is not None
                and base is None
                and read_draft is not None
                and awaits_found_update(tx, previous.id, instance)
            )
            # 2. Merge with what is stored.
            if previous is not None:
                call = keep_confirmation(keep_unmapped(call, previous, mapping), previous)
                call = carry_attachments(call, previous)
                merge_base = read_draft if found else base
                if merge_base is not None and read_draft is not None:
                    # A field the tool still holds as last known keeps the stored value.
                    call = merge_read(
                        call, previous, read_draft, merge_base,
                        self._merge_outbound(instance, mapping, context),
                    )  # fmt: skip
            # The tool's links to other processes of the unit, to the calls the bridge holds.
            call, refused = self.forks.resolve(tx, call)
            # 3. Store: the read is what the tool now holds, the base of the next merge.
            if read_draft is not None and read_draft != base:
                remember_base(tx, instance, record.remote_id, read_draft, encoded=read_json)
            result = store_mapped_call(tx, call, instance=instance)
            if refused:  # the call as stored, copied only for a record with refused forks
                stored_as = call.model_copy(update={"id": result.call_id})
                self.forks.audit_refusals(tx, stored_as, refused)
            if not result.changed:
                return RecordOutcome(record, Outcome.UNCHANGED, call_id=result.call_id)
            # 4. Recognise the echo: a read equal to what the tool was known to hold.
            pushed = pushed_hash_of(tx, result.call_id, instance)
            same = found or (read_draft is not None and (read_draft == base or pushed == read_hash))
            if read_hash is not None and pushed != read_hash:
                # What the tool now holds: a later write of exactly this is a no-op.
                remember_pushed_hash(tx, result.call_id, instance, read_hash)
            stored = tx.get_call(result.call_id)
            assert stored is not None
            audit_unknown_references(
                tx, stored.call, self.router.agreements, self.router.config.routes
            )
            files = new_files(stored.call, previous, instance)
            # A refused file's note and dead letter, once; a refusal no longer listed, closed.
            settle_file_letters(
                tx, previous, stored.call, files, instance=instance, call_id=result.call_id,
                retry_at=self.attachments.first_retry if self.attachments is not None else None,
            )  # fmt: skip
            travels = any(a.refused is None for a in files)
            if same and not travels and not self.router.new_public_comments(tx, stored.call):
                return RecordOutcome(record, Outcome.ECHO, call_id=result.call_id)
            # 5. Route along the chain: the writes for other tools go into the outbox.
            routed = self.router.route(tx, result.call_id, previous=previous, echo=same)
            return RecordOutcome(record, Outcome.ROUTED, call_id=result.call_id,
                                 targets=frozenset(routed.targets))  # fmt: skip
