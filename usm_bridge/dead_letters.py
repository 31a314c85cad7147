"""Dead letters: what could not be mapped, stored or pushed, and replaying it after a fix.

A ``map`` or ``store`` letter holds the raw record as the connector yielded it (a
:class:`~usm_bridge.connector.RawRecord` as JSON); retrying maps it again with the instance's
*current* mapping, so fixing a mapping file and running ``usm-bridge dead-letters retry`` is
enough. The stored call is then routed along the chain exactly as a sync cycle routes it (the
same :class:`~usm_bridge.sync.router.Router`); the writes it asks for are pushed by the next
cycle. A ``push`` letter holds a remote write; retrying puts its outbox item back in the queue
for the next cycle. A letter that fails again stays open with the new reason and one more
attempt counted: nothing is lost either way. A record is stored under the same chain lock a
sync cycle takes (``tx.lock_chain``), so a retry while the daemon runs takes turns with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .config import BridgeConfig
from .connector import RawRecord
from .errors import MappingError, StoreError, UsmBridgeError
from .ingest import store_mapped_call
from .mapping import Mapping, MappingContext, load_mapping
from .plugins import PluginHost
from .store import DeadLetter, DeadLetterStage, Store

if TYPE_CHECKING:
    from .sync.router import Router

__all__ = ["RetryOutcome", "retry_dead_letters"]


@dataclass
class RetryOutcome:
    """What a retry did, letter by letter."""

    resolved: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def retry_dead_letters(
    config: BridgeConfig,
    store: Store,
    host: PluginHost,
    *,
    ids: Iterable[int] = (),
    instance: str | None = None,
) -> RetryOutcome:
    """Replay open dead letters (all, those of ``instance``, or the given ``ids``).

    Each letter is retried in its own transaction, so one bad letter never undoes another.
    """
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
            raise StoreError(f"no open dead letter with id {', '.join(map(str, sorted(missing)))}")
    outcome = RetryOutcome()
    mappings: dict[str, Mapping] = {}
    # Imported here: the sync package imports this module's neighbours, not the other way.
    from .sync.router import Router

    router = Router(config)
    for letter in letters:
        if letter.stage is DeadLetterStage.PUSH:
            _requeue(store, letter, outcome)
            continue
        inst = config.instances.get(letter.instance)
        if inst is None:
            outcome.skipped.append(
                (letter.id, f"instance {letter.instance!r} is no longer in the config")
            )
            continue
        if letter.instance not in mappings:
            mappings[letter.instance] = load_mapping(inst.mapping)
        context = MappingContext.from_host(
            host, unit=inst.unit, instance=letter.instance, priority_matrix=config.priority
        )
        _remap(store, host, letter, mappings[letter.instance], context, outcome, router)
    return outcome


def _remap(
    store: Store,
    host: PluginHost,
    letter: DeadLetter,
    mapping: Mapping,
    context: MappingContext,
    outcome: RetryOutcome,
    router: Router,
) -> None:
    try:
        record = RawRecord.model_validate(letter.payload)
        call = host.map_inbound(mapping, record, context)
    except (ValidationError, MappingError) as exc:
        reason = str(exc) if isinstance(exc, MappingError) else f"not a raw record: {exc}"
        with store.begin() as tx:
            tx.increment_dead_letter_attempts(letter.id, reason=reason)
        outcome.failed.append((letter.id, reason))
        return
    try:
        with store.begin() as tx:
            # First, as a sync cycle does (SyncEngine._store_read): the daemon may be storing
            # calls of the same chain right now, and the reads below must see its commit
            # instead of rewriting the chain from what it held before (PostgreSQL only).
            tx.lock_chain(letter.instance, record.remote_id)
            source = call.source
            existing = tx.find_call(source.instance, source.remote_id) if source else None
            result = store_mapped_call(tx, call, instance=letter.instance)
            if result.changed:
                router.route(
                    tx, result.call_id, previous=existing.call if existing is not None else None
                )
            tx.resolve_dead_letter(letter.id, resolution=f"mapped on retry into {result.call_id}")
    except UsmBridgeError as exc:
        with store.begin() as tx:
            tx.increment_dead_letter_attempts(letter.id, reason=str(exc))
        outcome.failed.append((letter.id, str(exc)))
        return
    outcome.resolved.append((letter.id, f"stored as {call.title!r}"))


def _requeue(store: Store, letter: DeadLetter, outcome: RetryOutcome) -> None:
    if letter.outbox_id is None:
        outcome.skipped.append((letter.id, "a push letter without its outbox item"))
        return
    with store.begin() as tx:
        tx.requeue_outbox(letter.outbox_id)
        tx.resolve_dead_letter(letter.id, resolution="requeued for the next cycle")
    outcome.resolved.append((letter.id, f"outbox item {letter.outbox_id} requeued"))
