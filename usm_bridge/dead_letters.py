"""Dead letters: what could not be mapped, stored or pushed, and replaying it after a fix.

A ``map`` or ``store`` letter holds the raw record as the connector yielded it (a
:class:`~usm_bridge.connector.RawRecord` as JSON). Retrying hands the records back to the same
ingest stage a sync cycle uses (:mod:`usm_bridge.sync.ingest`: map with the instance's
*current* mapping, merge, store, recognise the echo, route), so fixing a mapping file and
running ``usm-bridge dead-letters retry`` is enough, and a retried record leaves the store, the
audit log and the outbox exactly as the same record read by a cycle would. The writes it asks
for are pushed by the next cycle. A ``push`` letter holds a remote write; retrying puts its
outbox item back in the queue for the next cycle. A letter of a file refused where it was read
(``attachment:...``, stage ``map``: refused by the policy, or not read for now after a 401 or
403) has its file read again now and decided under the instance's policy now
(:meth:`usm_bridge.sync.file_retry.FileRetries.read_again`): accepted, it is routed like a new
file and the letter resolved; refused again, the letter stays open. A file a target refused
(stage ``push``) is skipped with the reason. A letter that fails again stays open with the
new reason and one more attempt counted: nothing is lost either way.

A letter is resolved in its own unit of work after its record is stored: a crash in between
leaves it open, and retrying it again finds the record unchanged and resolves it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .attachments.refusals import is_attachment_subject
from .connector import RawRecord
from .errors import ConfigurationError, RemoteError, StoreError
from .store import DeadLetter, DeadLetterStage, DeadLetterStatus, Store

if TYPE_CHECKING:
    from .sync.engine import SyncEngine
    from .sync.ingest import RecordOutcome

__all__ = ["RetryOutcome", "dismiss_dead_letters", "retry_dead_letters"]

_ATTACHMENT_NOT_RETRIED = (
    "a file the target refused: change the target's attachments policy, or dismiss the letter"
)


@dataclass
class RetryOutcome:
    """What a retry did, letter by letter."""

    resolved: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def retry_dead_letters(
    engine: SyncEngine, *, ids: Iterable[int] = (), instance: str | None = None
) -> RetryOutcome:
    """Replay open dead letters (all, those of ``instance``, or the given ``ids``) through the
    engine's ingest stage and store.

    Each record is stored in its own unit of work, so one bad letter never undoes another.
    """
    store = engine.store
    wanted = set(ids)
    with store.begin(readonly=True) as tx:
        letters = [
            letter
            for letter in tx.list_dead_letters(instance=instance)
            if not wanted or letter.id in wanted
        ]
    if wanted:
        missing = wanted - {letter.id for letter in letters}
        if missing:
            raise StoreError(_not_retried(store, sorted(missing)))
    outcome = RetryOutcome()
    # The records of each instance, as one page, in the order they were kept.
    pages: dict[str, list[tuple[DeadLetter, RawRecord]]] = {}
    for letter in letters:
        if is_attachment_subject(letter.subject) and letter.stage is DeadLetterStage.MAP:
            _read_file_again(engine, letter, outcome)
        elif is_attachment_subject(letter.subject):
            # A file a target's policy (or its tool) refused: nothing to read again.
            outcome.skipped.append((letter.id, _ATTACHMENT_NOT_RETRIED))
        elif letter.stage is DeadLetterStage.PUSH:
            _requeue(store, letter, outcome)
        elif letter.instance not in engine.config.instances:
            outcome.skipped.append(
                (letter.id, f"instance {letter.instance!r} is no longer in the config")
            )
        else:
            try:
                record = RawRecord.model_validate(letter.payload)
            except ValidationError as exc:
                _failed(store, letter, f"not a raw record: {exc}", outcome)
                continue
            pages.setdefault(letter.instance, []).append((letter, record))
    for name, page in pages.items():
        _retry_page(engine, name, page, outcome)
    return outcome


def _read_file_again(engine: SyncEngine, letter: DeadLetter, outcome: RetryOutcome) -> None:
    """A file refused where it was read (by the policy, or not read for now: a 401, a 403):
    read now and decided under the instance's policy now; its letter is closed if it travels
    (:mod:`usm_bridge.sync.file_retry`)."""
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    listed = payload.get("attachment")
    source = listed.get("source") if isinstance(listed, dict) else None
    file_id = source.get("remote_id") if isinstance(source, dict) else None
    if letter.call_id is None or not isinstance(file_id, str):
        outcome.skipped.append((letter.id, "a file's letter without its call or its file id"))
        return
    if letter.instance not in engine.config.instances:
        outcome.skipped.append(
            (letter.id, f"instance {letter.instance!r} is no longer in the config")
        )
        return
    try:
        engine.reload_mapping(letter.instance)  # the policy the admin changed since
        done = engine.file_retries.read_again(
            letter.instance, letter.call_id, file_id, actor="dead-letters retry"
        )
    except ConfigurationError as exc:
        _failed(engine.store, letter, str(exc), outcome)
        return
    with engine.store.begin() as tx:
        now = tx.get_dead_letter(letter.id)
        if now is not None and now.status is DeadLetterStatus.OPEN:
            if done.outcome != "not listed":
                # Refused again (or not readable again): the letter stays open.
                if done.outcome == "refused":
                    tx.increment_dead_letter_attempts(letter.id)
                outcome.failed.append((letter.id, f"file {done.outcome}: {done.detail}"))
                return
            tx.resolve_dead_letter(
                letter.id, resolution="the call no longer lists the file as refused"
            )
    outcome.resolved.append((letter.id, f"file read again: {done.outcome}, {done.detail}"))


def _not_retried(store: Store, ids: list[int]) -> str:
    """Why letters asked for by id are not retried: unknown, or dismissed (said with who and
    why, since a dismissal is a person's decision the retry would silently undo)."""
    with store.begin(readonly=True) as tx:
        dismissed = [
            letter
            for letter in (tx.get_dead_letter(i) for i in ids)
            if letter is not None and letter.status is DeadLetterStatus.DISMISSED
        ]
    if dismissed:
        named = "; ".join(f"{d.id} ({d.resolution})" for d in dismissed)
        return f"dead letter {named} was dismissed and is not retried"
    return f"no open dead letter with id {', '.join(map(str, ids))}"


def _retry_page(
    engine: SyncEngine,
    instance: str,
    page: list[tuple[DeadLetter, RawRecord]],
    outcome: RetryOutcome,
) -> None:
    results: list[RecordOutcome] = []
    error = "not ingested"
    try:
        engine.reload_mapping(instance)  # the fix the admin made since the engine loaded it
        engine.ingest.ingest_page(instance, [record for _, record in page], each=results.append)
    except (ConfigurationError, RemoteError) as exc:
        # The mapping file does not load, or a mapping plugin's look-up failed for a while:
        # the letters from here on stay open, to be retried again.
        error = str(exc)
    for index, (letter, _) in enumerate(page):
        if index >= len(results):
            _failed(engine.store, letter, error, outcome)
            continue
        result = results[index]
        if result.reason is not None:
            _failed(engine.store, letter, result.reason, outcome)
            continue
        with engine.store.begin() as tx:
            tx.resolve_dead_letter(
                letter.id, resolution=f"{result.outcome.value} on retry as {result.call_id}"
            )
        outcome.resolved.append((letter.id, f"stored as {result.call_id} ({result.outcome})"))


def _failed(store: Store, letter: DeadLetter, reason: str, outcome: RetryOutcome) -> None:
    with store.begin() as tx:
        tx.increment_dead_letter_attempts(letter.id, reason=reason)
    outcome.failed.append((letter.id, reason))


def _requeue(store: Store, letter: DeadLetter, outcome: RetryOutcome) -> None:
    if letter.outbox_id is None:
        outcome.skipped.append((letter.id, "a push letter without its outbox item"))
        return
    with store.begin() as tx:
        tx.requeue_outbox(letter.outbox_id)
        tx.resolve_dead_letter(letter.id, resolution="requeued for the next cycle")
    outcome.resolved.append((letter.id, f"outbox item {letter.outbox_id} requeued"))


def dismiss_dead_letters(
    store: Store,
    *,
    reason: str,
    by: str,
    ids: Iterable[int] = (),
    instance: str | None = None,
    stage: DeadLetterStage | str | None = None,
) -> list[DeadLetter]:
    """Dismiss open dead letters (the given ``ids``, or those the filters select) in one unit
    of work, audited with ``by`` and ``reason``.

    Ids that name no letter, or a letter that is not open, are refused together and nothing is
    dismissed. Ids and filters do not mix.
    """
    wanted = sorted(set(ids))
    if wanted and (instance is not None or stage is not None):
        raise ValueError("dismiss either letters by id or by filter, not both")
    with store.begin() as tx:
        if wanted:
            found = {i: tx.get_dead_letter(i) for i in wanted}
            unknown = [str(i) for i, letter in found.items() if letter is None]
            if unknown:
                raise StoreError(f"no dead letter with id {', '.join(unknown)}; nothing dismissed")
            letters = [letter for letter in found.values() if letter is not None]
            closed = [f"{d.id} ({d.status.value})" for d in letters if d.status.value != "open"]
            if closed:
                raise StoreError(f"not open: dead letter {', '.join(closed)}; nothing dismissed")
        else:
            letters = tx.list_dead_letters(instance=instance, stage=stage)
        return [tx.dismiss_dead_letter(d.id, reason=reason, actor=by) for d in letters]
