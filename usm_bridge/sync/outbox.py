"""Draining the outbox of one target instance: the remote writes the router asked for.

Each item is claimed in one unit of work, written to the tool, and settled in another, so a
crash between the write and the settle leaves the item pending (due again when its lease runs
out, or at once for the next holder of the target's push lock when the claimer died: see
:meth:`OutboxPusher.drain`) and the write is simply made again, safely:

- ``create``: the correlation marker (``usm-bridge:<call id>``) is looked up first and the
  record created only when the tool holds none, then the identity is linked with the marker,
  the pushed hash recorded, and the call's ``source`` set if it had none. A record *found* by
  its marker (made by an attempt that died or failed between a create's requests: Jira's POST,
  then a transition to the draft's status) holds something unknown: it is linked without a
  pushed hash or base, and an update of the call (key :func:`found_update_key`) is enqueued
  with the link, so the whole draft is written over it. Until that update is made, reading
  the record back changes nothing of the call (see :mod:`.engine`). The same goes for a record
  found by :meth:`OutboxPusher.recover_creates` or by a create given up (below);
- ``update``: the draft is made from the call *as it is now*, and only the part of it that
  differs from the record's base (what the tool is known to hold, :mod:`.merge`) is written:
  never a field the bridge did not change, so a person's change in the tool since the last
  read survives; nothing differs, nothing is written (no no-op writes). Without a base the
  whole draft is written unless its hash is the pushed hash;
- ``comment``: ``add_comment`` with ``CommentDraft.correlation`` = the bridge's comment id, and
  the tool's id for it recorded in ``comment_links`` so that reading it back is an echo. That
  id is the proof the copy is the bridge's (never its text). A comment write is not
  idempotent: when an earlier attempt may have landed (its answer lost), the copy is first
  looked for by proof (:meth:`~usm_bridge.connector.Connector.find_comment`: a marker, or the
  bridge's account as author since the item was made), before the retry and, after a crash,
  by :meth:`OutboxPusher.recover_creates` before the target is read, so it is never posted
  twice nor read back as a person's comment.

Files (:mod:`.attachment_push`): an ``update`` first writes the call's files that have no copy
in the target yet, each looked for on the record before it is written and recorded as soon as
it is; a create whose call carries files enqueues an update for them, except where the tool
creates a record with its files (a mailbox's opening mail carries them). A ``comment`` whose
payload names files (``files``) writes them with it (the update holds them back meanwhile).

Faults are settled item by item: whatever one item's push raises (short of a broken store or a
:class:`BaseException` such as a kill, which end the drain), the item is deferred or
dead-lettered and the drain goes on with the next one.

- An update or comment whose record the bridge has not created yet waits for the create.
- A :class:`~usm_bridge.errors.RetriableRemoteError` is retried with exponential backoff (at
  least the remote's ``Retry-After``) and given up after ``max_attempts``.
- Any other exception from the connector (not a :class:`~usm_bridge.errors.UsmBridgeError`:
  a ``KeyError`` on a malformed answer, a bug) is retried the same way: whether the write was
  made is unknown, and making it again is safe (a create looks its marker up first, an update
  writes the same delta again, a comment is looked for by its proof first).
- A :class:`~usm_bridge.errors.StoreError` while settling the item (a constraint the record's
  link breaks, a conflict with another cycle) is retried the same way: the item is deferred,
  never lost; only a store that cannot record even that ends the drain.
- A :class:`~usm_bridge.errors.PermanentRemoteError`, or a
  :class:`~usm_bridge.errors.MappingError` from outbound mapping, is given up at once.
- A mapping plugin (a ``usm_bridge_map_outbound`` hookimpl) raising anything else (a
  ``ValueError``, a ``KeyError``: a bug in the plugin) is given up at once too, like a
  ``MappingError``: the draft depends only on the call and the code, so trying again fails
  the same way until the plugin is fixed, and a dead letter tells the admin now instead of
  after ``max_attempts`` backoffs. (Transforms already turn their exceptions into a
  ``MappingError``.) A :class:`~usm_bridge.errors.RemoteError` from such a plugin (one that
  looks something up) is classified as any remote error.

Given up means the item becomes a ``push`` dead letter with the reason (the remote's message;
for an unexpected exception its type and message, credentials masked); ``usm-bridge
dead-letters retry`` puts it back in the queue once the cause is fixed. A create given up
after an attempt that may have made its record first looks the marker up and links the record
it finds (asking for its update, as above), so that reading it back is known as this call,
never taken for a new one; when that look-up fails too, the item is kept for a later try
instead (until ``max_attempts``). The engine does not read a target while an interrupted
create of it cannot be looked up (:class:`Recovery`), so its record is not taken for a call of
its own; should it be all the same (a create given up, then its record read), it cannot be
linked any more: the create is dead-lettered naming that call, and nothing is made again.

A tool that does not answer at all (a :class:`~usm_bridge.errors.RetriableRemoteError`
without an HTTP status: a timeout, a refused or reset connection) is the target's fault, not
the item's: the drain stops at that item (deferred with its backoff) and hands the rest it
claimed back untried, due with it (:attr:`PushCounts.stalled` says why). Not so a file's
download from the tool it is copied from (:class:`~usm_bridge.errors.SourceFileError`): the
target answered, so only that item is deferred, and the drain goes on. Trying each pending
item with a full timeout would hold the target's push for as many timeouts; the target is
tried again once that backoff is over.

What the whole drain needs is no item's fault, and failing to get it raises from
:meth:`OutboxPusher.drain` for the caller to report (the engine puts it in the cycle's
``summary.error``), so that the next drain, once the admin fixed it, pushes every item: the
target's connector is built before anything is claimed (wrong settings leave the items as they
were), its mapping and mapping context are loaded once something is due (a mapping file that
does not load hands the claimed items straight back, due now). A
:class:`~usm_bridge.errors.StoreError` ends the drain too: the items it claimed come back when
their lease runs out.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..attachments.kept import KeptFiles
from ..connector import CommentDraft, CommentFile, Connector, RemoteDraft, RemoteRef
from ..errors import (
    MappingError,
    PermanentRemoteError,
    RemoteError,
    RetriableRemoteError,
    SourceFileError,
    StoreError,
)
from ..http import redact_text
from ..mapping import Mapping, MappingContext
from ..model import Call, SourceRef, utcnow
from ..plugins import PluginHost
from ..store import (
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
    Store,
    Transaction,
    get_remote_state,
    set_remote_state,
)
from ..store.scale_queries import tried_outbox_items
from .attachment_push import FilePusher, Identity, comment_files, files_to_push
from .call_labels import call_label_in
from .calls import correlation_for, draft_hash, with_changes
from .merge import changed_fields, merged_base

__all__ = [
    "OutboxPusher",
    "PushCounts",
    "Recovery",
    "awaits_found_update",
    "describe_exception",
    "found_update_key",
    "raised_at",
]

log = logging.getLogger(__name__)

#: How long an update or comment waits before it looks again for the create it needs.
CREATE_WAIT = timedelta(seconds=5)
#: How far before its item was made a comment write is looked for after a lost answer: the
#: tool's clock may run behind the bridge's.
COMMENT_CLOCK_SKEW = timedelta(minutes=5)
#: How much of an unexpected exception's text a reason keeps (a KeyError may quote a whole
#: answer).
_REASON_LIMIT = 500


@dataclass
class PushCounts:
    pushed: int = 0
    skipped: int = 0
    retried: int = 0
    dead: int = 0
    waiting: int = 0
    #: The tool did not answer: why the drain stopped early (see the module docstring).
    stalled: str | None = None


@dataclass(frozen=True)
class _Target:
    """What every item of one drain needs, resolved once for the drain."""

    name: str
    connector: Connector
    mapping: Mapping
    context: MappingContext


@dataclass
class Recovery:
    """What :meth:`OutboxPusher.recover_creates` did."""

    #: Interrupted creates (and comment copies) found made in the tool and settled.
    found: int = 0
    #: Interrupted creates (and comment copies) whose look-up failed (``call id: reason``):
    #: the tool may hold a record (or a copy) of theirs that the store does not know yet.
    unchecked: list[str] = field(default_factory=list)


class _Wait(Exception):
    """The item needs a record the bridge has not created yet."""


class _Unmappable(Exception):
    """The draft could not be made, so this attempt sent nothing: give the item up."""


class _TakenComment(Exception):
    """The tool's id for a comment copy is already another copy's: give the item up."""


class _TakenRecord(Exception):
    """The record a create's marker found was read as another call before it was recognised:
    it cannot be linked to this one, and creating another would duplicate it. Give up."""


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` of an exception the bridge did not raise on purpose, safe to store.

    Its text comes from code that knows nothing of the bridge's rules (a KeyError quoting a
    malformed answer, a library's error quoting a URL with a token): credentials are masked
    and the length bounded, as the HTTP layer does for a remote's own messages.
    """
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised (file, line, function), for a bug report.

    Logged instead of the traceback, whose last line repeats the unmasked message.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "an unknown place"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def found_update_key(call_id: str, target: str) -> str:
    """The idempotency key of the update that writes a found record's whole draft.

    One per call and target: a record is found (and linked) at most once per create, and
    finding it again while its update waits must not ask for a second one.
    """
    return f"{call_id}:{target}:update:found"


def awaits_found_update(tx: Transaction, call_id: str, target: str) -> bool:
    """Whether the call's record in ``target`` was linked as found, its content unknown, and the
    update that writes the call's draft over it is not made yet (see the module docstring)."""
    key = found_update_key(call_id, target)
    return any(
        item.idempotency_key == key
        for item in tx.list_outbox(status=OutboxStatus.PENDING, instance=target, call_id=call_id)
    )


class OutboxPusher:
    """Pushes the due outbox items of a target instance through its connector."""

    def __init__(
        self,
        store: Store,
        host: PluginHost,
        *,
        connector: Callable[[str], Connector],
        mapping: Callable[[str], Mapping],
        context: Callable[[str], MappingContext],
        clock: Callable[[], datetime],
        spool: Path = Path("attachments-spool"),
        kept: KeptFiles | None = None,
        max_attempts: int = 8,
        backoff_initial: timedelta = timedelta(seconds=30),
        backoff_max: timedelta = timedelta(hours=1),
        batch: int = 50,
    ) -> None:
        self.store = store
        self.host = host
        self._connector = connector
        self._mapping = mapping
        self._context = context
        self._clock = clock
        #: Writes a call's files with it (:mod:`.attachment_push`).
        self.files = FilePusher(store, connector=connector, spool_dir=spool, kept=kept)
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.batch = batch

    def drain(
        self, target: str, *, stop: threading.Event | None = None, holder: str | None = None
    ) -> PushCounts:
        """Push every item of ``target`` that is due now; return what happened.

        A fault of one item never ends the drain (see the module docstring).

        :param holder: the identity under which the caller holds the push lock of ``target``
            (:mod:`.exclusion`): the items are claimed in its name, and the claims another
            holder left unsettled (it died) are due again at once instead of after their lease.

        :raises Exception: the target's connector cannot be built or its mapping not loaded
            (nothing was pushed, no item is left leased), or the store failed.
        """
        counts = PushCounts()
        # Before anything is claimed: a connector that cannot be built (wrong settings) is the
        # target's fault, not an item's; the items stay as they were, neither leased nor
        # counted an attempt, and the next drain after the fix pushes them at once.
        connector = self._connector(target)
        if holder is not None:
            self._reclaim(target, holder)
        resolved: _Target | None = None
        seen: set[int] = set()
        while stop is None or not stop.is_set():
            with self.store.begin() as tx:
                items = tx.claim_outbox(
                    instance=target, limit=self.batch, now=self._now(), holder=holder
                )
            fresh = [item for item in items if item.id not in seen]
            # Items this drain pushed already and that fell due again while it ran (a wait
            # for a create, a short Retry-After): pushed by the next drain, not leased till then.
            self._hand_back([item for item in items if item.id in seen], self._now())
            if not fresh:
                break
            if resolved is None:
                # Only once something is due: a drain with nothing to push never reports a
                # broken mapping file (the read of that instance already does).
                try:
                    resolved = _Target(
                        target, connector, self._mapping(target), self._context(target)
                    )
                except Exception as exc:
                    self._release(fresh, f"cannot push to {target}: {describe_exception(exc)}")
                    raise
            for index, item in enumerate(fresh):
                if stop is not None and stop.is_set():
                    # Hand the claimed but unpushed items back instead of leaving them leased.
                    self._release(fresh[index:], "stopped before pushing")
                    return counts
                seen.add(item.id)
                retry_at = self._push(item, resolved, counts)
                if retry_at is not None:
                    rest = fresh[index + 1 :]
                    self._hand_back(rest, retry_at)
                    log.warning("%s does not answer: push stopped after %d item(s), %d handed "
                                "back until %s: %s", target, len(seen), len(rest),
                                retry_at.isoformat(timespec="seconds"), counts.stalled,
                                extra={"event": "push_stalled", "instance": target,
                                       "handed_back": len(rest)})  # fmt: skip
                    return counts
        return counts

    def _hand_back(self, items: list[OutboxItem], at: datetime) -> None:
        if items:
            with self.store.begin() as tx:
                tx.hand_back_outbox([item.id for item in items], at=at)

    def _reclaim(self, target: str, holder: str) -> None:
        with self.store.begin() as tx:
            orphans = tx.reclaim_outbox(instance=target, holder=holder, now=self._now())
        if orphans:
            log.warning("%d write(s) to %s claimed by a process that died are due again now",
                        orphans, target, extra={"event": "outbox_reclaimed",
                                                "instance": target, "items": orphans})  # fmt: skip

    def _now(self) -> datetime:
        # The store stamps new items with the real time; a clock moved forward by a test (or
        # a daemon catching up) must never make them look not yet due.
        return max(self._clock(), utcnow())

    def _label(self, call_id: str) -> str:
        """The call as log lines name it: its id with its tool reference."""
        return call_label_in(self.store, call_id)

    def _release(self, items: list[OutboxItem], reason: str) -> None:
        with self.store.begin() as tx:
            for item in items:
                tx.mark_outbox_failed(item.id, reason, retry_at=self._now())

    def _backoff(self, item: OutboxItem, retry_after: float | None) -> datetime:
        delay = self.backoff_initial * (2 ** max(0, item.attempts - 1))
        delay = min(delay, self.backoff_max)
        if retry_after is not None:
            delay = max(delay, timedelta(seconds=retry_after))
        due: datetime = self._now() + delay
        return due

    def _push(self, item: OutboxItem, target: _Target, counts: PushCounts) -> datetime | None:
        """Push one item and settle it; when the tool did not answer, when the item is due
        again (the drain stops: see the module docstring), else ``None``."""
        try:
            wrote = self._write(item, target)
        except _Wait as wait:
            counts.waiting += 1
            self._fail_or_die(item, str(wait), self._now() + CREATE_WAIT, target, counts)
            return None
        except _Unmappable as exc:
            self._give_up(item, str(exc), target, counts, sent=False)
            return None
        except (_TakenRecord, _TakenComment) as exc:
            self._dead(item, str(exc), counts)
            return None
        except (PermanentRemoteError, MappingError) as exc:
            self._give_up(item, str(exc), target, counts, sent=True)
            return None
        except StoreError as exc:
            # The store refused to settle this item (a constraint its link breaks, a conflict
            # with another cycle): deferred like a failed write, the write's lookups make a
            # second try safe, and the drain goes on. A store that cannot even record that is
            # broken, not this item: the caller ends the cycle, the lease brings the items back.
            log.warning("push %s of %s to %s not settled: %s", item.operation,
                        self._label(item.call_id), item.target_instance, exc)  # fmt: skip
            counts.retried += 1
            self._fail_or_die(item, str(exc), self._backoff(item, None), target, counts)
            return None
        except RemoteError as exc:  # retriable, or an unclassified remote failure
            counts.retried += 1
            retry_at = self._backoff(item, exc.retry_after)
            self._fail_or_die(item, str(exc), retry_at, target, counts)
            if (
                isinstance(exc, RetriableRemoteError)
                and exc.status is None
                and not isinstance(exc, SourceFileError)  # the target answered: this item only
            ):
                counts.stalled = str(exc)
                return retry_at
            return None
        except Exception as exc:
            # The connector broke its contract (a KeyError on a malformed answer, a bug): the
            # write may or may not have been made, like a timeout, and trying again is as safe.
            reason = describe_exception(exc)
            log.warning("push %s of %s to %s raised %s at %s", item.operation,
                        self._label(item.call_id), item.target_instance, reason,
                        raised_at(exc))  # fmt: skip
            counts.retried += 1
            self._fail_or_die(item, reason, self._backoff(item, None), target, counts)
            return None
        if wrote:
            counts.pushed += 1
        else:
            counts.skipped += 1
        return None

    def _fail_or_die(
        self,
        item: OutboxItem,
        reason: str,
        retry_at: datetime,
        target: _Target,
        counts: PushCounts,
    ) -> None:
        if item.attempts >= self.max_attempts:
            reason = f"gave up after {item.attempts} attempts: {reason}"
            self._give_up(item, reason, target, counts, sent=True)
            return
        self._defer(item, reason, retry_at)

    def _defer(self, item: OutboxItem, reason: str, retry_at: datetime) -> None:
        log.info("push %s of %s to %s deferred: %s", item.operation, self._label(item.call_id),
                 item.target_instance, reason)  # fmt: skip
        with self.store.begin() as tx:
            tx.mark_outbox_failed(item.id, reason, retry_at=retry_at)

    def _give_up(
        self, item: OutboxItem, reason: str, target: _Target, counts: PushCounts, *, sent: bool
    ) -> None:
        """Dead-letter the item; a create that may have made its record links it first.

        :param sent: this attempt may have reached the tool (else only an earlier one can have
            made the record).
        """
        if item.operation is OutboxOperation.CREATE and (sent or item.attempts > 1):
            try:
                self._adopt_failed_create(item, target.connector)
            except StoreError:
                raise
            except _TakenRecord as taken:
                reason = f"{reason}; {taken}"
            except Exception as lookup:
                reason = f"{reason}; could not check for the record: {describe_exception(lookup)}"
                if item.attempts < self.max_attempts:
                    # Unknown whether the record was made: dead-lettering now could leave one
                    # to be read back as a stranger's call (a duplicate chain). Look again later.
                    counts.retried += 1
                    self._defer(item, reason, self._backoff(item, None))
                    return
        self._dead(item, reason, counts)

    def _dead(self, item: OutboxItem, reason: str, counts: PushCounts) -> None:
        counts.dead += 1
        log.warning("push %s of %s to %s dead-lettered: %s", item.operation,
                    self._label(item.call_id), item.target_instance, reason)  # fmt: skip
        with self.store.begin() as tx:
            letter = tx.mark_outbox_dead(item.id, reason)
        self.host.dead_letter(item.target_instance, "push", reason, letter.payload)

    # -- the writes ---------------------------------------------------------------------------

    def _draft(self, target: _Target, call: Call) -> RemoteDraft:
        """The outbound draft of ``call``; :class:`_Unmappable` when it cannot be made."""
        try:
            return self.host.map_outbound(target.mapping, call, target.context)
        except MappingError as exc:
            raise _Unmappable(str(exc)) from exc
        except (RemoteError, StoreError):
            raise  # a plugin that looks something up: classified like any such failure
        except Exception as exc:
            # A plugin's bug: the same call fails the same way until it is fixed (see the
            # module docstring), so the letter names the exception for the admin to report.
            log.warning("mapping %s outbound for %s raised %s at %s", self._label(call.id),
                        target.name, describe_exception(exc), raised_at(exc))  # fmt: skip
            raise _Unmappable(
                f"mapping outbound for {target.name} failed in a plugin: {describe_exception(exc)}"
            ) from exc

    def _write(self, item: OutboxItem, target: _Target) -> bool:
        """Make the write; ``False`` when there was nothing to write."""
        with self.store.begin(readonly=True) as tx:
            stored = tx.get_call(item.call_id)
            identity = tx.get_identity(item.call_id, target.name)
        assert stored is not None  # the outbox's foreign key keeps the call
        call = stored.call
        connector = target.connector
        if item.operation is OutboxOperation.CREATE:
            if identity is not None:
                self._settle(item)
                return False
            correlation = correlation_for(call.id)
            draft = self._draft(target, call)
            # The lookup first: a create whose answer was lost (or a crash before the settle
            # below) must not make a second record.
            found = connector.find_by_correlation(correlation)
            if found is not None:
                # Made by an earlier attempt that never learnt how far it got: what the record
                # holds is unknown, so it is linked without a state and its update asked for.
                self._link_created(item, found, None)
                return True
            if connector.creates_with_files and connector.carries_attachments:
                # A mailbox's opening mail carries the call's files (one mail, not one more
                # per file); a record found above gets them from its update (listing first).
                self._create_with_files(item, target, call, draft, correlation)
            else:
                self._link_created(item, connector.create(draft, correlation), draft)
            return True
        if identity is None:
            raise _Wait(f"waiting for the create of {call.id} in {target.name}")
        if item.operation is OutboxOperation.UPDATE:
            # The files first, each recorded as it is written: a retry of the item after a
            # failure lists the record's files and writes only those not there yet.
            self.files.push(
                call, target.name, connector, target.mapping.spec.attachments, identity.remote_id
            )
            draft = self._draft(target, call)
            with self.store.begin(readonly=True) as tx:
                base = get_remote_state(tx, target.name, identity.remote_id)
            if base is None:
                # What the tool holds is unknown: the whole draft, unless known to be there.
                if draft_hash(draft) == identity.pushed_hash:
                    self._settle(item)
                    return False
                write, held = draft, draft
            else:
                # Only what the bridge changed: a person's change since the last read stays.
                delta = changed_fields(draft, base)
                if delta is None:
                    self._settle(item)
                    return False
                write, held = delta, merged_base(base, delta)
            connector.update(identity.remote_id, write)
            with self.store.begin() as tx:
                set_remote_state(tx, target.name, identity.remote_id, held)
                tx.record_pushed_hash(call.id, target.name, draft_hash(held))
                tx.mark_outbox_done(item.id)
            return True
        payload: dict[str, Any] = item.payload if isinstance(item.payload, dict) else {}
        comment_id = str(payload.get("comment_id") or item.idempotency_key)
        author = payload.get("author")
        source_comment = payload.get("source_comment_id")
        if source_comment:
            with self.store.begin(readonly=True) as tx:
                link = tx.find_comment_copy(item.call_id, str(source_comment))
            if link is not None and link.remote_comment_id is not None:
                # Made before a crash, and recognised by its proof since.
                self._settle(item)
                return False
            if item.attempts > 1 and self._found_comment(
                item, connector, target.name, identity.remote_id
            ):
                # An earlier attempt landed but its answer was lost: never post twice.
                return True
        comment = CommentDraft(
            body=str(payload.get("body", "")),
            public=bool(payload.get("public", True)),
            correlation=comment_id,
            author=str(author) if author else None,
        )
        # The source comment's files are looked up only while the call has files to write here
        # (a walk of the chain's calls); otherwise those the payload names are all there is.
        wanted = (
            self.files.files_of_comment(call.id, payload)
            if files_to_push(call, target.name)
            else comment_files(payload)
        )
        if wanted:
            return self._comment_with_files(item, target, call, identity.remote_id, comment, wanted)
        remote_comment = connector.add_comment(identity.remote_id, comment)
        with self.store.begin() as tx:
            if source_comment:
                self._link_copy(tx, item, target.name, remote_comment)
            tx.mark_outbox_done(item.id)
        return True

    def _comment_with_files(
        self, item: OutboxItem, target: _Target, call: Call, remote_id: str,
        draft: CommentDraft, wanted: set[Identity],
    ) -> bool:  # fmt: skip
        """Write a comment with its files, in the tool's way (see :mod:`.attachment_push`).

        The files the record holds already (an earlier attempt's, found by listing) are
        recorded first, then an earlier attempt's comment is looked for by its proof, as for
        any comment: a crash or a lost answer anywhere leaves one copy of each. What is left
        goes in one :meth:`~usm_bridge.connector.Connector.add_comment_with_files`, whose
        comment names every file of it. Which comes first in the tool is the connector's
        choice (uploads before the comment naming them on Jira and ServiceNow; one mail).
        """
        connector = target.connector
        policy = target.mapping.spec.attachments
        named, todo = self.files.for_comment(
            call, target.name, connector, policy, remote_id, wanted
        )
        if item.attempts > 1 and self._found_comment(item, connector, target.name, remote_id):
            if todo:
                # Its files did not all land with it: they go on the record, listing first.
                with self.store.begin() as tx:
                    tx.enqueue(target.name, call.id, OutboxOperation.UPDATE, {"files": True},
                               f"{item.idempotency_key}:files")  # fmt: skip
            return True
        with self.files.outgoing(call.id, target.name, todo) as ready:
            files = [*named, *(CommentFile(name=f.name, size=f.size) for _, f in ready)]
            draft = draft.model_copy(update={"files": files})
            if ready:
                remote_comment, writes = connector.add_comment_with_files(
                    remote_id, draft, [file for _, file in ready]
                )
            else:
                remote_comment, writes = connector.add_comment(remote_id, draft), []
        self.files.settle(call.id, target.name, ready, writes)
        with self.store.begin() as tx:
            self._link_copy(tx, item, target.name, remote_comment)
            tx.mark_outbox_done(item.id)
        return True

    def _create_with_files(
        self, item: OutboxItem, target: _Target, call: Call, draft: RemoteDraft, correlation: str
    ) -> None:
        """Create the record with the call's files in the same write (a mailbox's opening
        mail); the files of its comments waiting to be written go with those instead."""
        connector = target.connector
        held = self.files.held_back(call.id, target.name)
        wanted = {a.identity for a in files_to_push(call, target.name)} - held
        _, todo = self.files.for_comment(
            call, target.name, connector, target.mapping.spec.attachments, None, wanted
        )
        with self.files.outgoing(call.id, target.name, todo) as ready:
            ref, writes = connector.create_with_files(
                draft, correlation, [file for _, file in ready]
            )
        # The copies first: linking asks for an update only for files still without one.
        self.files.settle(call.id, target.name, ready, writes)
        self._link_created(item, ref, draft)

    @staticmethod
    def _link_copy(tx: Transaction, item: OutboxItem, instance: str, remote_comment: str) -> None:
        """Record the tool's id of the copy ``item`` made: reading it back is then an echo.

        :raises _TakenComment: the connector answered with the id of another copy.
        """
        payload: dict[str, Any] = item.payload if isinstance(item.payload, dict) else {}
        owner = tx.find_comment_link(instance, remote_comment)
        comment_id = str(payload.get("comment_id") or item.idempotency_key)
        if owner is not None and owner.comment_id != comment_id:
            # Two copies cannot be one comment in the tool: a connector that recognised a
            # copy by its text would do this (a repeat of the same words). The item fails
            # alone instead of failing the cycle on the store's unique constraint.
            raise _TakenComment(
                f"{instance} answered comment {remote_comment!r} for copy {comment_id}, but it "
                f"is already the copy {owner.comment_id} of another comment"
            )
        tx.link_comment(
            item.call_id, instance, comment_id,
            source_comment_id=str(payload.get("source_comment_id")),
            remote_comment_id=remote_comment,
        )  # fmt: skip

    def _found_comment(
        self, item: OutboxItem, connector: Connector, instance: str, remote_id: str
    ) -> bool:
        """Link and settle the copy an earlier attempt of ``item`` made, if the tool proves
        one (:meth:`Connector.find_comment`); ``False`` when it holds none."""
        payload: dict[str, Any] = item.payload if isinstance(item.payload, dict) else {}
        comment_id = str(payload.get("comment_id") or item.idempotency_key)
        with self.store.begin(readonly=True) as tx:
            known = [
                link.remote_comment_id
                for link in tx.comment_links_of(item.call_id, instance)
                if link.remote_comment_id is not None
            ]
        found = connector.find_comment(
            remote_id,
            comment_id,
            since=item.created_at - COMMENT_CLOCK_SKEW,
            known=known,
            public=bool(payload.get("public", True)),
        )
        if found is None:
            return False
        with self.store.begin() as tx:
            self._link_copy(tx, item, instance, found)
            tx.mark_outbox_done(item.id)
        return True

    def _adopt_failed_create(self, item: OutboxItem, connector: Connector) -> None:
        """Link the record a create made before a later step of it failed for good.

        A create can be several requests (Jira: the POST, then a transition to the draft's
        status). When a later one is refused, the record exists and carries the marker: it is
        linked although the item is dead-lettered, so that reading it back is known as this
        call, never taken for a new one, and what it holds is unknown, so its update is asked
        for (:meth:`_link_created`). The same holds for a create given up after an attempt
        whose outcome was unknown.
        """
        ref = connector.find_by_correlation(correlation_for(item.call_id))
        if ref is not None:
            self._link_created(item, ref, None, settle=False)

    def _link_created(
        self, item: OutboxItem, ref: RemoteRef, draft: RemoteDraft | None, *, settle: bool = True
    ) -> None:
        """Settle a create: identity with its marker, pushed hash and base, the call's source.

        :param draft: what this attempt wrote; ``None`` for a record found by its marker,
            whose content is unknown (a create that died or failed between its requests): no
            pushed hash and no base, and an update of the call is enqueued in the same unit of
            work, so the whole draft is written over whatever the record holds.
        """
        target, call_id = item.target_instance, item.call_id
        with self.store.begin() as tx:
            owner = tx.find_identity(target, ref.remote_id)
            if owner is not None and owner.call_id != call_id:
                # Read before its create was recognised (the look-up of the marker failed
                # then): it became a call of its own. Linking it fails for good, so the item
                # would stop the drain (or the read) every cycle; a person has to decide.
                raise _TakenRecord(
                    f"the record {ref.remote_id} this create made (found by its marker) was "
                    f"read as call {owner.call_id} before it was recognised; it is left to "
                    "that call and not made again"
                )
            tx.link_identity(
                call_id, target, ref.remote_id, remote_key=ref.remote_key, url=ref.url,
                correlation=correlation_for(call_id),
            )  # fmt: skip
            if draft is not None:
                tx.record_pushed_hash(call_id, target, draft_hash(draft))
                set_remote_state(tx, target, ref.remote_id, draft)
                made = tx.get_call(call_id)
                if made is not None and files_to_push(made.call, target):
                    # Its files go with an update, which retries them on its own.
                    tx.enqueue(target, call_id, OutboxOperation.UPDATE, {"files": True},
                               f"{call_id}:{target}:update:files")  # fmt: skip
            else:
                # Without it nothing would ever write what the record lacks (a status the
                # create's last step never set): no later change of the call need come.
                tx.enqueue(
                    target, call_id, OutboxOperation.UPDATE, {"found": ref.remote_id},
                    found_update_key(call_id, target),
                )  # fmt: skip
            current = tx.get_call(call_id)
            if current is not None and current.call.source is None:
                source = SourceRef(
                    instance=target, remote_id=ref.remote_id, remote_key=ref.remote_key, url=ref.url
                )
                tx.upsert_call(with_changes(current.call, source=source), actor="bridge")
            if settle:
                tx.mark_outbox_done(item.id)

    def recover_creates(self, target: str) -> Recovery:
        """Settle the creates (and comment copies) of ``target`` that were tried but never
        settled (a crash).

        Run before reading the target: the record such a create made is then known as the
        bridge's own when it is read, instead of being taken for a new call, and its update is
        asked for (:meth:`_link_created`). The lease of the interrupted claim does not matter
        here, as nothing is written, only looked up. A look-up that fails leaves the item as it
        is and is counted in :attr:`Recovery.unchecked`: the caller must not read the target
        then, or the record that create may have made would be read as a stranger's new call.
        """
        with self.store.begin(readonly=True) as tx:
            tried = tried_outbox_items(tx, target, OutboxOperation.CREATE, OutboxOperation.COMMENT)
        items = [item for item in tried if item.operation is OutboxOperation.CREATE]
        comments = [item for item in tried if item.operation is OutboxOperation.COMMENT]
        recovery = Recovery()
        if not items and not comments:
            return recovery
        # Outside the loop's guard: a connector that cannot be built is the instance's fault,
        # which its read reports the same way.
        connector = self._connector(target)
        for item in items:
            try:
                ref = connector.find_by_correlation(correlation_for(item.call_id))
            except StoreError:
                raise
            except RemoteError as exc:
                log.info("cannot check create of %s in %s yet: %s", self._label(item.call_id),
                         target, exc)  # fmt: skip
                recovery.unchecked.append(f"{item.call_id}: {exc}")
                continue
            except Exception as exc:
                # The connector broke its contract (a bug, a malformed answer). The item stays
                # as it is, for its push (which looks the marker up again, and gives the item
                # up after its attempts) or the next cycle.
                log.warning("checking create of %s in %s raised %s at %s",
                            self._label(item.call_id), target, describe_exception(exc),
                            raised_at(exc))  # fmt: skip
                recovery.unchecked.append(f"{item.call_id}: {describe_exception(exc)}")
                continue
            if ref is None:
                continue
            try:
                self._link_created(item, ref, None)
            except _TakenRecord as taken:
                self._dead(item, str(taken), PushCounts())
                continue
            recovery.found += 1
        for item in comments:
            self._recover_comment(item, connector, recovery)
        return recovery

    def _recover_comment(self, item: OutboxItem, connector: Connector, recovery: Recovery) -> None:
        """Link the copy a tried comment item made, if its answer was lost (a crash).

        Before the read, like a create: a copy the store does not know would be read back as
        a person's new comment and copied back. Found by proof only
        (:meth:`Connector.find_comment`); a look-up that fails makes the read wait.
        """
        payload: dict[str, Any] = item.payload if isinstance(item.payload, dict) else {}
        if not payload.get("source_comment_id"):
            return  # an internal note never travels, so it cannot echo
        target = item.target_instance
        with self.store.begin(readonly=True) as tx:
            identity = tx.get_identity(item.call_id, target)
            link = tx.find_comment_copy(item.call_id, str(payload["source_comment_id"]))
        if identity is None or (link is not None and link.remote_comment_id is not None):
            return
        try:
            found = self._found_comment(item, connector, target, identity.remote_id)
        except StoreError:
            raise
        except _TakenComment as taken:
            self._dead(item, str(taken), PushCounts())
            return
        except Exception as exc:
            log.info("cannot check comment on %s in %s yet: %s", self._label(item.call_id),
                     target, describe_exception(exc))  # fmt: skip
            recovery.unchecked.append(f"{item.call_id}: {describe_exception(exc)}")
            return
        if found:
            recovery.found += 1

    def _settle(self, item: OutboxItem) -> None:
        with self.store.begin() as tx:
            current = tx.get_outbox_item(item.id)
            if current is not None and current.status is OutboxStatus.PENDING:
                tx.mark_outbox_done(item.id)
