"""One sync cycle of one connector instance (ARCHITECTURE.md, "the flow of one sync cycle").

``run_cycle`` reads what changed since the stored cursor and hands it page by page to the
ingest stage (:mod:`.ingest`: map, merge, store, recognise the echo, route; read that module to
follow one record), keeps the records it could not take as dead letters, reads again the files
of the instance a tool would not let it read before and that are due now (:mod:`.file_retry`:
a 401 or 403 on a file holds up nothing, the file waits with a back-off; not after a read
that failed), pushes the outbox of
every target the cycle touched, and records the run. The cursor of a checkpoint is stored only
after every record before it is: a crash re-reads, never skips.

Each instance's connector, mapping, mapping context and lock come from the instance registry
(:mod:`.instances`). A mapping file is checked for a change once per cycle of its instance (and
before a drain pushes to it): a file the admin fixed is used from the next cycle on, without a
restart, so ``dead-letters retry`` of what it failed works.

Cycles of different instances run at once (the daemon's workers); the ingest stage locks the
chain of the record it stores, and every use of an instance's connector holds that instance's
lock. Among processes on one store (a daemon, ``sync --once``, workers), a cycle holds its
instance's cycle lock and a read or a drain its tool's push lock (:mod:`.exclusion`): a cycle
whose instance, or whose own tool, is busy in another process is skipped (``summary.skipped``
says why; nothing is recorded), a drain to a busy target is left to the process pushing it.

Two ways to run it. :meth:`SyncEngine.run_cycle` does the whole cycle in the caller's thread,
pushes included (``sync --once``, one instance after another). A scheduler that runs instances
side by side (the daemon, Celery workers) calls :meth:`SyncEngine.cycle` (read, ingest and
the closure only; ``summary.targets`` names the outboxes it filled) and then
:meth:`SyncEngine.push` for each of those targets on the target's own thread or queue: a
target that hangs then holds back its own pushes only, never another instance's cycle.

A record the ingest stage cannot take (unmappable, refused by the store, a plugin's or the
router's bug) becomes a ``map`` or ``store`` dead letter naming the error; the cycle goes on.
Only a remote error a mapping plugin raises that may pass (not a ``PermanentRemoteError``) ends
the read like a connector's failure, to be read again next cycle. A connector that fails
mid-read ends the cycle with ``summary.error`` set and what was stored kept. Nothing here
raises for remote or mapping problems; a broken store ends the cycle the same way (the run is
then recorded if it can be).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from ..config import BridgeConfig
from ..connector import Checkpoint, Connector, RawRecord
from ..errors import StoreError, UsmBridgeError
from ..mapping.passes_through import statuses_read
from ..model import Status, utcnow
from ..plugins import PluginHost
from ..store import Store
from ..store.locks import Busy
from .attachment_intake import AttachmentIntake
from .call_labels import record_label
from .calls import writable_fields
from .child_read import ChildRead, reads_in_child
from .closure import Closure
from .exclusion import cycle_lock, push_lock
from .file_retry import FileRetries
from .ingest import IngestStage, MappedElsewhere, Outcome, RecordOutcome
from .instances import InstanceRegistry
from .outbox import OutboxPusher, PushCounts
from .page_ingest import PageEnd
from .read_ahead import ReadAhead
from .router import Router
from .summary import CycleCounts, CycleProgress, CycleSummary, PushSummary

__all__ = ["CycleProgress", "CycleSummary", "PushSummary", "SyncEngine"]

log = logging.getLogger(__name__)

#: Records ingested at once at most when the connector yields no checkpoint for longer.
PAGE_SIZE = 100


@dataclass
class _Tally(CycleCounts):
    """The counters of the cycle running, and what it needs to remember."""

    #: The instances the cycle queued writes for: their outboxes are pushed at its end.
    touched: set[str] = field(default_factory=set)
    #: Instances whose mapping file this cycle checked for a change already.
    mappings_checked: set[str] = field(default_factory=set)


class SyncEngine:
    """Runs sync cycles and the census; one engine per process, reused between cycles."""

    def __init__(
        self,
        config: BridgeConfig,
        store: Store,
        host: PluginHost,
        *,
        connectors: Mapping[str, Connector] | None = None,
        instances: InstanceRegistry | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """
        :param connectors: connectors by instance name (tests inject them); the others are
            built from the config through the host, and closed by :meth:`close`.
        :param instances: the registry to take the instances' parts from (one is built from
            the config, the host and ``connectors`` when not given; ``connectors`` is then
            ignored). :func:`usm_bridge.runtime.open_runtime` passes the process's one.
        :param stop: when set, a cycle finishes the record in flight, commits and returns.
        :param clock: "now" for outbox due times (tests move it forward instead of sleeping).
        """
        self.config = config
        self.store = store
        self.host = host
        self.stop = stop or threading.Event()
        self._clock = clock or utcnow
        #: Each instance's connector, mapping, mapping context and lock.
        self.instances = instances or InstanceRegistry(config, host, connectors=connectors)
        self.router = Router(config, writable=self._writable)
        self.ingest = IngestStage(
            store,
            host,
            self.router,
            mapping=self.instances.mapping,
            context=self.instances.context,
            attachments=AttachmentIntake(
                store,
                connector=self.instances.connector,
                mapping=self.instances.mapping,
                spool=config.attachments.spool,
                quarantine=config.attachments.quarantine,
                kept=config.attachments.kept_files(),
            ),
        )
        intake = self.ingest.attachments
        assert intake is not None
        #: The files a tool would not let the bridge read for now, read again after a while.
        self.file_retries = FileRetries(
            store, intake, self.router, interval=lambda name: config.instances[name].interval,
            clock=self._clock, known=lambda: config.instances.keys(),
        )  # fmt: skip
        intake.first_retry = self.file_retries.first_retry
        self.closure = Closure(config, store, self.router, shows=self._shows, clock=self._clock)
        self.pusher = OutboxPusher(
            store,
            host,
            connector=self.instances.connector,
            mapping=self.instances.mapping,
            context=self.instances.context,
            clock=self._clock,
            spool=config.attachments.spool,
            kept=config.attachments.kept_files(),
        )

    def _check_mapping(self, instance: str, tally: _Tally) -> None:
        """Reload the instance's mapping file if it changed; once a cycle, with the instance's
        lock held, before its read or a drain to it. Per cycle, not per record: a ``stat`` for
        every record of a backfill would cost more than it is worth, and a mapping that changed
        in the middle of a read would map its records in two ways."""
        if instance in tally.mappings_checked:
            return
        tally.mappings_checked.add(instance)
        self.instances.reload_mapping(instance)

    def reload_mapping(self, instance: str) -> None:
        """Use the instance's mapping file as it is now if it changed (``dead-letters retry``
        after a fix); a file that does not load leaves the last good one in use."""
        with self.instances.lock(instance):
            self.instances.reload_mapping(instance)

    def _shows(self, instance: str) -> frozenset[Status] | None:
        """The statuses ``instance``'s tool can show (what its mapping reads back)."""
        try:
            return frozenset(statuses_read(self.instances.mapping(instance).spec.fields.status))
        except UsmBridgeError:
            return None

    def _writable(self, instance: str) -> frozenset[str] | None:
        try:
            return writable_fields(self.instances.mapping(instance))
        except UsmBridgeError:
            return None

    def close(self) -> None:
        """Close the connectors the engine's registry built (injected ones belong to the
        caller)."""
        self.instances.close()

    # -- the cycle ----------------------------------------------------------------------------

    def run_cycle(
        self, instance: str, *, progress: Callable[[CycleProgress], None] | None = None
    ) -> CycleSummary:
        """Sync ``instance`` once; see the module docstring.

        :raises ConfigurationError: ``instance`` is not in the config.
        """
        return self._locked_cycle(instance, progress, push=True)

    def cycle(
        self, instance: str, *, progress: Callable[[CycleProgress], None] | None = None
    ) -> CycleSummary:
        """Read and ingest what changed in ``instance`` once, without pushing anything.

        The same cycle as :meth:`run_cycle` (same lock, same run record) but for the drains:
        the writes it queued wait in the outboxes of ``summary.targets``, for the caller to
        hand to :meth:`push`, each on its target's own thread or queue, so that a target that
        does not answer delays no other instance's cycle.

        :param progress: called after each record read.
        :returns: what the cycle did; ``skipped`` set (and nothing done) when the instance,
            or its tool, is busy in another process; never raises for remote or store faults
            (``summary.error``).
        :raises ConfigurationError: ``instance`` is not in the config.
        """
        return self._locked_cycle(instance, progress, push=False)

    def push(self, target: str) -> PushSummary:
        """Push the due writes of ``target``'s outbox, under its push lock (:mod:`.exclusion`).

        Stops early when the tool does not answer (``stalled``: the rest is handed back, due
        with the item that timed out) or when the engine's stop event is set.

        :returns: what was pushed; ``busy`` set (and nothing done) when another process is
            pushing to the target; never raises for remote or store faults (``error``).
        :raises ConfigurationError: ``target`` is not in the config.
        """
        self.instances.instance(target)
        summary = PushSummary(target=target, started=utcnow(), finished=utcnow())
        try:
            done = self._drain_target(target, _Tally())
        except Exception as exc:  # the connector cannot be built, the store failed
            log.warning(
                "pushing to %s failed: %s", target, exc, exc_info=isinstance(exc, StoreError)
            )
            summary.error = f"pushing to {target} failed: {type(exc).__name__}: {exc}"
        else:
            if isinstance(done, Busy):
                summary.busy = f"{target} is being pushed to by {done.who}"
            else:
                summary.pushed, summary.skipped, summary.retried = (
                    done.pushed, done.skipped, done.retried
                )  # fmt: skip
                summary.dead_letters, summary.waiting = done.dead, done.waiting
                summary.stalled = done.stalled
        summary.finished = utcnow()
        return summary

    def _locked_cycle(
        self, instance: str, progress: Callable[[CycleProgress], None] | None, *, push: bool
    ) -> CycleSummary:
        self.instances.instance(instance)
        with self.store.locks.hold(cycle_lock(instance)) as busy:
            if busy is not None:
                return self._skipped(instance, f"a cycle of {instance} runs in {busy.who}")
            return self._cycle(instance, progress, push=push)

    @contextmanager
    def _tool(self, instance: str) -> Iterator[Busy | None]:
        """The instance's tool to this thread: its thread lock (other threads of this process
        wait), then its push lock (yields who holds it when another process does)."""
        with self.instances.lock(instance), self.store.locks.hold(push_lock(instance)) as busy:
            yield busy

    def _skipped(self, instance: str, why: str) -> CycleSummary:
        # Debug only: the caller says it (the daemon's cycle line, sync --once's summary).
        log.debug("cycle of %s skipped: %s", instance, why)
        now = utcnow()
        summary = CycleSummary(instance=instance, started=now, finished=now)
        summary.skipped = why
        return summary

    def _cycle(
        self, instance: str, progress: Callable[[CycleProgress], None] | None, *, push: bool
    ) -> CycleSummary:
        started = utcnow()
        tally = _Tally(touched={instance})
        error: str | None = None
        try:
            with self._tool(instance) as busy:
                if busy is not None:
                    return self._skipped(instance, f"{instance} is being pushed to by {busy.who}")
                self.host.before_cycle(instance)
                self._check_mapping(instance, tally)
                # Creates interrupted by a crash are settled before their records are read back.
                recovery = self.pusher.recover_creates(instance)
                if recovery.unchecked:
                    # Reading now could take a record such a create made for a stranger's new
                    # call (a duplicate chain): the read waits until the look-up answers.
                    error = (
                        f"reading {instance} waits: {len(recovery.unchecked)} interrupted "
                        f"create(s) could not be checked ({recovery.unchecked[0]})"
                    )
                else:
                    error = self._read(instance, tally, progress)
                if error is None and not self.stop.is_set():
                    # Files a 401 or 403 kept out, due to be tried again (bounded per cycle);
                    # not when the read just failed: the tool is down, or in trouble.
                    tally.touched |= self.file_retries.run(instance, stop=self.stop)
            if not self.stop.is_set():
                # Also after a read with no news: an implicit acceptance falls due with time.
                tally.touched |= self.closure.run(instance, stop=self.stop).targets
            if push and not self.stop.is_set():
                for target in sorted(tally.touched):
                    error = self._drain(target, tally) or error
        except Exception as exc:  # the cycle reports, the daemon goes on
            log.error("cycle of %s failed", instance, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
        summary = CycleSummary(
            instance=instance,
            started=started,
            finished=utcnow(),
            error=error,
            targets=frozenset() if push else frozenset(tally.touched),
            **tally.counters(),
        )
        try:
            with self.store.begin() as tx:
                tx.record_run(
                    instance,
                    started=summary.started,
                    finished=summary.finished,
                    counters=summary.counters(),
                    error=error,
                )
        except StoreError:
            log.error("could not record the run of %s", instance, exc_info=True)
        self.host.after_cycle(instance, summary.counters())
        return summary

    def _read(
        self,
        instance: str,
        tally: _Tally,
        progress: Callable[[CycleProgress], None] | None,
    ) -> str | None:
        """Read what changed and ingest it page by page; the error that ended the read, if any.

        A page ends at a checkpoint (whose cursor is stored once the page is) or after
        ``PAGE_SIZE`` records. What the connector yielded before it failed is still ingested.
        """
        connector = self.instances.connector(instance)
        with self.store.begin(readonly=True) as tx:
            cursor = tx.get_cursor(instance)
        page: list[RawRecord | MappedElsewhere] = []

        def ingest_page(end: PageEnd | None = None) -> bool:
            """Ingest the page (ending at ``end``); whether the read goes on (a stop ends it
            after the record in flight, and the records left out are read again: the cursor
            stays before them)."""
            if page:
                self.ingest.ingest_page(
                    instance,
                    page,
                    stop=self.stop,
                    each=lambda outcome: self._count(instance, outcome, tally, progress),
                    end=end,
                )
                page.clear()
            return not self.stop.is_set()

        failure: Exception | None = None
        items: Iterator[RawRecord | MappedElsewhere | Checkpoint] | None = None
        with ExitStack() as reading:
            try:
                items = self._items(instance, connector, cursor, reading)
                failure = self._read_items(instance, items, ingest_page, page)
            except StoreError:
                raise
            except Exception as exc:  # a mapping plugin's remote error that may pass, a bad file,
                failure = exc  # a worker's time limit
            if isinstance(items, ReadAhead) and (failure is not None or self.stop.is_set()):
                # A read that ends early never waits for the page read ahead: its request may
                # hang (a tool that does not answer), which the time limit must not wait for.
                items.close(wait=False)
                if items.busy and self.instances.retire(instance):
                    # Its thread still holds the connector: whatever runs next gets a new one.
                    log.info("the read of %s ended early: its connector is retired", instance)
        if self.stop.is_set():
            log.info("stop requested: cycle of %s ends after %d records", instance, tally.read)
        if failure is not None:
            log.warning("reading %s failed after %d records: %s", instance, tally.read, failure)
            return f"reading {instance} failed after {tally.read} records: {failure}"
        return None

    def _items(
        self, instance: str, connector: Connector, cursor: str | None, reading: ExitStack
    ) -> Iterator[RawRecord | MappedElsewhere | Checkpoint]:
        """The connector's read from ``cursor``: read and mapped in a child process
        (:mod:`.child_read`) where that may be, else a page ahead on a thread of its own
        (:mod:`.read_ahead`) unless the instance's ``read_ahead`` is off; ``reading`` closes
        either (the child is killed, the thread done with the connector, before the cycle
        lets go of it)."""
        settings = self.config.instances[instance]
        if reads_in_child(connector, enabled=settings.read_in_child):
            return reading.enter_context(
                ChildRead(connector, self.ingest, instance, cursor, stop=self.stop)
            )
        items = iter(connector.read_changes(cursor))
        if not settings.read_ahead:
            return items
        return reading.enter_context(ReadAhead(items, name=instance))

    def _read_items(
        self,
        instance: str,
        items: Iterator[RawRecord | MappedElsewhere | Checkpoint],
        ingest_page: Callable[[PageEnd | None], bool],
        page: list[RawRecord | MappedElsewhere],
    ) -> Exception | None:
        """Hand ``items`` to ``ingest_page`` page by page, storing each checkpoint's cursor
        after the page before it; the connector's failure that ended the read, if any."""
        failure: Exception | None = None
        while True:
            try:
                item = next(items, None)
            except StoreError:
                raise
            except Exception as exc:  # a connector failure ends the read only
                failure = exc
                item = None
            if item is None:
                ingest_page(None)  # what was yielded before the end (or the failure)
                return failure
            if isinstance(item, Checkpoint):
                # Everything before it is committed (page by page): the cursor may move. The
                # page's own unit of work saves it when it stored every record of the page.
                end = PageEnd(instance, item.cursor)
                if not ingest_page(end):
                    return None
                if not end.stored:
                    with self.store.begin() as tx:
                        tx.set_cursor(instance, item.cursor)
            else:
                # A full page is ingested once the next item shows it is not its checkpoint:
                # a connector's page of PAGE_SIZE records then ends at its checkpoint, saved
                # with it (see above), rather than in a unit of work of its own after it.
                if len(page) >= PAGE_SIZE and not ingest_page(None):
                    return None
                page.append(item)

    def _drain_target(self, target: str, tally: _Tally) -> PushCounts | Busy:
        """Drain ``target``'s outbox under its tool's locks; who holds its push lock when
        another process does (that process drains what is due, ours included; the target's
        own cycle drains what it leaves)."""
        with self._tool(target) as busy:
            if busy is not None:
                log.info("pushing to %s left to %s", target, busy.who)
                return busy
            self._check_mapping(target, tally)
            return self.pusher.drain(target, stop=self.stop, holder=self.store.locks.identity)

    def _drain(self, target: str, tally: _Tally) -> str | None:
        try:
            counts = self._drain_target(target, tally)
        except StoreError:
            raise
        except Exception as exc:  # e.g. a connector that cannot be built
            log.warning("pushing to %s failed: %s", target, exc)
            return f"pushing to {target} failed: {exc}"
        if isinstance(counts, PushCounts):
            tally.pushed += counts.pushed
            tally.dead_letters += counts.dead
        return None

    def _count(
        self,
        instance: str,
        outcome: RecordOutcome,
        tally: _Tally,
        progress: Callable[[CycleProgress], None] | None,
    ) -> None:
        """Tally one record's outcome; a dead letter is kept here (the stage only names it)."""
        tally.read += 1
        if outcome.outcome is Outcome.DEAD_LETTER:
            self._dead_letter(instance, outcome, tally)
        elif outcome.outcome is Outcome.UNCHANGED:
            tally.unchanged += 1
        else:
            tally.stored += 1
            if outcome.outcome is Outcome.ECHO:
                tally.echoes += 1
            else:
                tally.routed += 1
                tally.touched |= outcome.targets
        if progress is not None:
            progress(CycleProgress(instance, tally.read, tally.stored))

    def _dead_letter(self, instance: str, outcome: RecordOutcome, tally: _Tally) -> None:
        assert outcome.stage is not None and outcome.reason is not None
        record, stage, reason = outcome.record, outcome.stage, outcome.reason
        payload = record.model_dump(mode="json")
        with self.store.begin() as tx:
            # One open letter per record and stage: a re-read that fails again counts an
            # attempt on it, and only a new letter is counted, logged and told to plugins.
            added = tx.record_dead_letter(
                instance, stage, payload, reason, subject=record.remote_id
            )
        if not added.new:
            log.info("record %s failed again at %s (attempt %d): %s",
                     record_label(record, instance), stage.value,
                     added.letter.attempts, reason)  # fmt: skip
            return
        tally.dead_letters += 1
        log.warning("record %s dead-lettered at %s: %s",
                    record_label(record, instance), stage.value,
                    reason)  # fmt: skip
        self.host.dead_letter(instance, stage.value, reason, payload)

    # -- the census ---------------------------------------------------------------------------

    def census(self, instance: str) -> int:
        """Mark the stored records ``instance``'s tool no longer lists as vanished.

        Only a complete listing counts: a connector that cannot list (``remote_ids()`` is
        ``None``) or fails while listing marks nothing. Calls are never deleted; a record that
        shows up again is marked present by the store when it is next read.

        :returns: how many records were newly marked vanished.
        """
        connector = self.instances.connector(instance)
        # Only what the store knew before the listing can be missing from it: a record another
        # cycle creates once this one lets go of the connector is not listed, but has not
        # vanished.
        with self.store.begin(readonly=True) as tx:
            known = tx.list_identities(instance)
        try:
            with self.instances.lock(instance):
                listing = connector.remote_ids()
                if listing is None:
                    log.info(
                        "census of %s skipped: the connector cannot list its records", instance
                    )
                    return 0
                present = set(listing)
        except Exception as exc:  # an incomplete listing proves nothing
            log.warning("census of %s skipped: listing failed: %s", instance, exc)
            return 0
        marked = 0
        with self.store.begin() as tx:
            for identity in known:
                if identity.remote_id in present:
                    continue
                if tx.mark_vanished(identity.call_id, instance=instance, actor="census"):
                    marked += 1
        if marked:
            log.info("census of %s: %d record(s) vanished", instance, marked)
        return marked
