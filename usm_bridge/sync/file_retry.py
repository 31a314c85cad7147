"""Files not read for now, read again; and the dead letters of files that no longer wait.

A file whose download its tool refused for a reason to fix (401, 403, a URL the connector will
not request) is listed on its call as not read for now (:mod:`.attachment_intake`): its record
is stored, the file gets a dead letter, and a row in the store (``file_retries``) says when it
is tried again. Its record's next read tries it too (such a refusal is never settled), but a
record may not change for weeks: so each cycle of the instance, after its read, tries the files
due (:meth:`FileRetries.run`), at most :data:`PER_CYCLE` of them, the longest due first. A file
still refused waits longer each time: the instance's interval after the first try, doubled
after each further one, a day at most (:func:`backoff`); its dead letter counts the tries and
says the last answer. A file read is taken in as on its record's read (the policy of the
instance now decides), replaces the waiting one on the call, and, if it travels, is routed like
a new file (the router gives it to the calls of the chain; the cycle pushes them); its dead
letter is closed and its row goes, in the same unit of work as the call.

A tool in trouble is not asked for files: no file is tried after a cycle whose read failed, and
the first try the tool does not answer (a timeout, a 5xx, a 429) ends the cycle's tries. That
file is put off by the instance's interval, its tries and its letter as they were (an outage is
no refusal); the files not tried keep their due time. A call with no record left in the
instance keeps its letter open saying so (no record to read the file from), and its row goes;
so do, at an engine's first tries, the rows of instances the config no longer names.

``usm-bridge dead-letters retry`` reads the file of a ``map`` letter of an attachment now the
same way (:meth:`FileRetries.read_again`), whatever refused it: after a change of the mapping's
``attachments:`` policy, a file it refused travels at once instead of on its record's next
change.

:func:`settle_file_letters` is what both ways and the ingest stage do with the files of a call
just stored: a new refused file gets its dead letter (and, unless it waits to be read, its note
on the call); a refused file the call listed before and no longer lists as it was (read again
and accepted, or refused on other grounds) gets its open letter closed, resolved with what
became of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from ..connector import RemoteAttachment
from ..errors import RemoteError, RetriableRemoteError, StoreError
from ..model import Attachment, Call
from ..store import DeadLetterStage, DeadLetterStatus, Store, Transaction
from .attachment_intake import (
    AttachmentIntake,
    listed_at,
    new_files,
    source_id,
    waits_to_be_read,
    with_file_replaced,
)
from .call_files import all_attachments, record_refusal, refusal_of
from .router import Router

__all__ = [
    "LONGEST_WAIT",
    "PER_CYCLE",
    "FileRetries",
    "ReadAgain",
    "backoff",
    "settle_file_letters",
]

log = logging.getLogger(__name__)

#: The most files of one instance read again in one cycle: a tool that refuses hundreds of
#: files costs a cycle no more than this many requests.
PER_CYCLE: Final = 20
#: The longest a file not read for now waits between two tries.
LONGEST_WAIT: Final = timedelta(days=1)


def backoff(interval: float, attempts: int) -> timedelta:
    """How long a file waits after its ``attempts``-th try (1: the read that first met the
    refusal): the instance's ``interval``, doubled for each try after the first, a day at
    most."""
    doubled = max(interval, 1.0) * 2.0 ** min(max(attempts - 1, 0), 32)
    return min(timedelta(seconds=doubled), LONGEST_WAIT)


def _from(attachment: Attachment, instance: str) -> bool:
    return attachment.source is not None and attachment.source.instance == instance


def _subject(attachment: Attachment, instance: str, call_id: str) -> str:
    reason = attachment.refused or ""
    return refusal_of(attachment, instance, call_id, reason, "read").subject


def settle_file_letters(
    tx: Transaction,
    previous: Call | None,
    stored: Call,
    files: list[Attachment],
    *,
    instance: str,
    call_id: str,
    retry_at: Callable[[str], datetime] | None,
) -> None:
    """The dead letters (and notes, and rows to read again) of the files read from
    ``instance`` for the call ``call_id``, now ``stored`` (``previous``: as it was; ``files``:
    what :func:`~.attachment_intake.new_files` found new). See the module docstring.

    :param retry_at: when a file not read for now is first tried again (``None``: it keeps
        the row it has).
    """
    for file in files:
        if file.refused is None or file.source is None:
            continue
        refusal = refusal_of(file, instance, call_id, file.refused, "read")
        waiting = waits_to_be_read(file)
        # A file not read for now is the admin's to fix, and may pass: no note on the call.
        record_refusal(tx, refusal, home=None if waiting else instance)
        if waiting and retry_at is not None:
            tx.schedule_file_retry(instance, file.source.remote_id, call_id, at=retry_at(instance))
    if previous is None:
        return
    listed = {
        _subject(a, instance, call_id)
        for a in all_attachments(stored)
        if a.refused is not None and _from(a, instance)
    }
    for held in all_attachments(previous):
        if held.refused is None or held.source is None or not _from(held, instance):
            continue
        now = listed_at(stored, instance, held.source.remote_id)
        if waits_to_be_read(held) and (now is None or not waits_to_be_read(now)):
            # Read, refused on other grounds (its letter, of the same subject when it has no
            # SHA-256, took the new reason above) or gone: nothing to read again.
            tx.drop_file_retry(instance, held.source.remote_id)
        subject = _subject(held, instance, call_id)
        if subject in listed:
            continue
        if now is None:
            became = "the file is no longer listed on the call"
        elif now.refused is None:
            became = f"read again and accepted: it travels (SHA-256 {now.sha256})"
        else:
            became = f"read again: {now.refused}"[:1000]
        _close_letters(tx, instance, subject, became)


def _open_letters(tx: Transaction, instance: str, subject: str) -> list[int]:
    """The open ``map`` letters of the file ``subject`` (one at most, by the store's index)."""
    letters = tx.dead_letters_about(call_ids=(), records=[(instance, subject)], outbox_ids=())
    return [
        letter.id
        for letter in letters
        if letter.status is DeadLetterStatus.OPEN and letter.stage is DeadLetterStage.MAP
    ]


def _close_letters(tx: Transaction, instance: str, subject: str, resolution: str) -> None:
    for letter_id in _open_letters(tx, instance, subject):
        tx.resolve_dead_letter(letter_id, resolution=resolution)


@dataclass
class ReadAgain:
    """What reading one file again did: ``outcome`` is ``"accepted"`` (it travels),
    ``"refused"`` (by the policy, or gone), ``"waiting"`` (not read for now, again),
    ``"unavailable"`` (the tool did not answer: a timeout, a 5xx; nothing counted),
    ``"no record"`` (the call has no record in the instance left to read it from) or
    ``"not listed"`` (the call no longer lists it refused: nothing to read)."""

    outcome: str
    detail: str
    #: The instances whose outboxes got writes (pushed by the cycle, or the next one).
    targets: set[str] = field(default_factory=set)


class FileRetries:
    """Reads again the files not read for now (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        intake: AttachmentIntake,
        router: Router,
        *,
        interval: Callable[[str], float],
        clock: Callable[[], datetime],
        per_cycle: int = PER_CYCLE,
        known: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.store = store
        self.intake = intake
        self.router = router
        self._interval = interval
        self._clock = clock
        self.per_cycle = per_cycle
        #: The instances the config names (``None``: rows of any instance are kept).
        self._known: Callable[[], Collection[str]] = known or (lambda: ())
        self._swept = known is None

    def first_retry(self, instance: str) -> datetime:
        """When a file first found not readable is tried again."""
        return self._clock() + backoff(self._interval(instance), 1)

    def run(self, instance: str, *, stop: threading.Event | None = None) -> set[str]:
        """Read again the files of ``instance`` due now, :attr:`per_cycle` at most; the
        instances whose outboxes got writes."""
        if not self._swept:
            # Rows of an instance the config no longer names (removed, renamed) would wait
            # for good: dropped once per engine, before its first retries.
            with self.store.begin() as tx:
                gone = tx.drop_file_retries_except(self._known())
            if gone:
                log.info("%d file(s) to read again dropped: their instances are no longer "
                         "in the config", gone)  # fmt: skip
            self._swept = True
        with self.store.begin(readonly=True) as tx:
            due = tx.due_file_retries(instance, now=self._clock(), limit=self.per_cycle)
        targets: set[str] = set()
        for retry in due:
            if stop is not None and stop.is_set():
                break
            try:
                done = self.read_again(instance, retry.call_id, retry.file_id)
            except StoreError:
                raise
            except Exception as exc:  # a bug on one file never stalls the others, or the cycle
                log.error("reading file %s of %s (call %s) again failed", retry.file_id,
                          instance, retry.call_id, exc_info=True)  # fmt: skip
                at = self._clock() + backoff(self._interval(instance), retry.attempts + 1)
                with self.store.begin() as tx:
                    tx.postpone_file_retry(instance, retry.file_id, at=at)
                log.debug("next try of file %s at %s: %s", retry.file_id, at, exc)
                continue
            log.info("file %s of %s (call %s) read again: %s, %s", retry.file_id, instance,
                     retry.call_id, done.outcome, done.detail)  # fmt: skip
            targets |= done.targets
            if done.outcome == "unavailable":
                # The tool is in trouble: asking it for the next files would cost each the
                # connector's whole retry budget, under the instance's locks. They keep their
                # due time, for the next cycle.
                break
        return targets

    def read_again(
        self, instance: str, call_id: str, file_id: str, *, actor: str = "bridge"
    ) -> ReadAgain:
        """Read the file ``file_id`` of ``instance``, listed refused on the call ``call_id``,
        now, and decide it under the instance's policy now (see the module docstring).

        :raises StoreError: the store failed (nothing of this file changed).
        """
        with self.store.begin(readonly=True) as tx:
            stored = tx.get_call(call_id)
            records = [i.remote_id for i in tx.identities_of(call_id) if i.instance == instance]
        held = listed_at(stored.call, instance, file_id) if stored is not None else None
        if held is None or held.refused is None:
            with self.store.begin() as tx:
                tx.drop_file_retry(instance, file_id)
            return ReadAgain("not listed", "the call no longer lists the file as not read")
        if not records:
            return self._no_record(instance, call_id, file_id, held)
        if source_id(file_id) != file_id or file_id.startswith("sha256:"):
            # Known by a digest of an id too long to keep: the tool's id is not known, so
            # there is nothing to ask it for (refused for good where it was read).
            return ReadAgain("refused", held.refused)
        listed = RemoteAttachment(
            remote_id=file_id, name=held.name, declared_type=held.declared_type,
            size=held.size or None, inline=held.inline,
        )  # fmt: skip
        failure: str | None = None
        taken: Attachment | None = None
        try:
            taken = self.intake.read_again(instance, records[0], listed, call_id)
        except RetriableRemoteError as exc:
            return self._unavailable(instance, file_id, exc)
        except (RemoteError, OSError) as exc:  # may pass: tried again after the back-off
            failure = f"{held.name}: not read for now: {exc}"
        with self.store.begin() as tx:
            tx.lock_chain(instance, records[0])
            current = tx.get_call(call_id)
            now_held = listed_at(current.call, instance, file_id) if current is not None else None
            if current is None or now_held is None or now_held.refused is None:
                # Read (and stored) meanwhile by its record's read: nothing to change.
                tx.drop_file_retry(instance, file_id)
                return ReadAgain("not listed", "the call no longer lists the file as not read")
            if taken is None or waits_to_be_read(taken):
                reason = failure or (taken.refused if taken is not None else None) or "not read"
                return self._wait(tx, instance, call_id, file_id, now_held, reason)
            previous = current.call
            tx.upsert_call(
                with_file_replaced(previous, instance, file_id, taken), instance=instance,
                actor=actor,
            )  # fmt: skip
            after = tx.get_call(call_id)
            assert after is not None
            files = new_files(after.call, previous, instance)
            settle_file_letters(tx, previous, after.call, files, instance=instance,
                                call_id=call_id, retry_at=None)  # fmt: skip
            tx.drop_file_retry(instance, file_id)
            if taken.refused is not None:
                return ReadAgain("refused", taken.refused)
            # Only its files (and comments) travel: nothing else of the call changed here.
            routed = self.router.route(tx, call_id, previous=previous, echo=True)
            return ReadAgain("accepted", f"it travels (SHA-256 {taken.sha256})", routed.targets)

    def _unavailable(self, instance: str, file_id: str, exc: RetriableRemoteError) -> ReadAgain:
        """The tool did not answer: the file is tried again after the instance's interval,
        its back-off and its letter as they were (an outage is no refusal)."""
        at = self._clock() + backoff(self._interval(instance), 1)
        with self.store.begin() as tx:
            tx.defer_file_retry(instance, file_id, at=at)
        return ReadAgain("unavailable", f"{instance} did not answer ({exc}); tried again "
                         f"after {at.isoformat()}")  # fmt: skip

    def _no_record(self, instance: str, call_id: str, file_id: str, held: Attachment) -> ReadAgain:
        """The call still lists the file refused, but keeps no record of it in ``instance``
        (unlinked there): no record to read it from, so no more tries; its letter stays open
        saying so, for the admin."""
        detail = (
            f"{held.name}: not read again: call {call_id} has no record in {instance} any "
            f"more to read it from (was: {held.refused})"
        )[:1000]
        with self.store.begin() as tx:
            tx.drop_file_retry(instance, file_id)
            for letter_id in _open_letters(tx, instance, _subject(held, instance, call_id)):
                tx.increment_dead_letter_attempts(letter_id, reason=f"attachment refused: {detail}")
        return ReadAgain("no record", detail)

    def _wait(
        self, tx: Transaction, instance: str, call_id: str, file_id: str, held: Attachment,
        reason: str,
    ) -> ReadAgain:  # fmt: skip
        """Still not readable: the next try later (the back-off), one more counted on its
        letter with the last answer."""
        row = tx.get_file_retry(instance, file_id)
        attempts = row.attempts + 1 if row is not None else 1
        at = self._clock() + backoff(self._interval(instance), attempts)
        if row is None:
            tx.schedule_file_retry(instance, file_id, call_id, at=at)
        else:
            tx.postpone_file_retry(instance, file_id, at=at)
        for letter_id in _open_letters(tx, instance, _subject(held, instance, call_id)):
            tx.increment_dead_letter_attempts(letter_id, reason=f"attachment refused: {reason}")
        return ReadAgain("waiting", f"{reason} (tried again after {at.isoformat()})")
