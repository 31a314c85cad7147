"""One sync cycle of one connector instance (ARCHITECTURE.md, "the flow of one sync cycle").

``run_cycle`` reads what changed since the stored cursor and hands it page by page to the
ingest stage (:mod:`.ingest`: map, merge, store, recognise the echo, route; read that module to
follow one record), keeps the records it could not take as dead letters, pushes the outbox of
every target the cycle touched, and records the run. The cursor of a checkpoint is stored only
after every record before it is: a crash re-reads, never skips.

Mapping files are loaded on first use and checked again once per cycle of their instance (and
before a drain pushes to them), by modification time and size: a file the admin fixed is used
from the next cycle on, without a restart, so ``dead-letters retry`` of what it failed works.
A changed file that does not load leaves the last good one in use, and is reported once.

Cycles of different instances run at once (the daemon's workers); the ingest stage locks the
chain of the record it stores, and every use of an instance's connector holds that instance's
lock.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import BridgeConfig
from ..connector import Checkpoint, Connector, RawRecord, build_connector
from ..errors import (
    ConfigurationError,
    StoreError,
    UsmBridgeError,
)
from ..mapping import Mapping as MappingFile
from ..mapping import MappingContext, load_mapping
from ..model import utcnow
from ..plugins import PluginHost
from ..store import (
    Store,
)
from .calls import writable_fields
from .ingest import IngestStage, Outcome, RecordOutcome
from .outbox import OutboxPusher, describe_exception
from .router import Router

__all__ = ["CycleProgress", "CycleSummary", "SyncEngine"]

log = logging.getLogger(__name__)

#: Records ingested at once at most when the connector yields no checkpoint for longer.
PAGE_SIZE = 100


@dataclass(frozen=True)
class CycleProgress:
    """Passed to the progress callback after each record."""

    instance: str
    read: int
    stored: int


@dataclass(frozen=True)
class CycleSummary:
    """What one cycle did."""

    instance: str
    started: datetime
    finished: datetime
    #: Records the connector yielded.
    read: int
    #: Records that changed the store (echoes included).
    stored: int
    #: Records read again without any change.
    unchanged: int
    #: Stored records that were the bridge's own writes coming back (not routed).
    echoes: int
    #: Stored records handed to the router.
    routed: int
    #: Remote writes made (creates, updates, comments).
    pushed: int
    #: Dead letters this cycle added (map, store and push).
    dead_letters: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def counters(self) -> dict[str, int]:
        """The counters by name, for the ``after_cycle`` hook, the store and metrics."""
        return {
            "read": self.read,
            "stored": self.stored,
            "unchanged": self.unchanged,
            "echoes": self.echoes,
            "routed": self.routed,
            "pushed": self.pushed,
            "dead_letters": self.dead_letters,
        }


@dataclass
class _Tally:
    read: int = 0
    stored: int = 0
    unchanged: int = 0
    echoes: int = 0
    routed: int = 0
    pushed: int = 0
    dead_letters: int = 0
    touched: set[str] = field(default_factory=set)
    #: Instances whose mapping file this cycle checked for a change already.
    mappings_checked: set[str] = field(default_factory=set)


#: The stamp of a mapping file that cannot be looked at (gone, unreadable).
_NO_FILE = (-1, -1)


def _stamp(path: Path) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a mapping file: one ``stat``, cheap enough for every cycle."""
    try:
        found = path.stat()
    except OSError:
        return _NO_FILE
    return found.st_mtime_ns, found.st_size


@dataclass
class _LoadedMapping:
    mapping: MappingFile
    #: The file's stamp taken *before* it was read: a change made while it was read shows as a
    #: change at the next check, never as the version loaded.
    stamp: tuple[int, int]
    #: The stamp of a change that did not load: reported once, tried again when it changes.
    broken: tuple[int, int] | None = None


class SyncEngine:
    """Runs sync cycles and the census; one engine per process, reused between cycles."""

    def __init__(
        self,
        config: BridgeConfig,
        store: Store,
        host: PluginHost,
        *,
        connectors: Mapping[str, Connector] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """
        :param connectors: connectors by instance name (tests inject them); the others are
            built from the config through the host, and closed by :meth:`close`.
        :param stop: when set, a cycle finishes the record in flight, commits and returns.
        :param clock: "now" for outbox due times (tests move it forward instead of sleeping).
        """
        self.config = config
        self.store = store
        self.host = host
        self.stop = stop or threading.Event()
        self._clock = clock or utcnow
        self._connectors: dict[str, Connector] = dict(connectors or {})
        self._built: list[Connector] = []
        self._mappings: dict[str, _LoadedMapping] = {}
        self._contexts: dict[str, MappingContext] = {}
        # The daemon runs cycles of different instances in threads, and a cycle pushes to other
        # instances' connectors; most connectors (an IMAP session) are not thread-safe. So every
        # use of an instance's connector holds that instance's lock, and the caches are built
        # under one lock. A cycle never holds two instance locks at once: no deadlock. A mapping
        # file is reloaded under its instance's lock too (then the cache lock, never the other
        # way round), so that one read or one drain maps with one version of it.
        self._lock = threading.Lock()
        self._instance_locks: dict[str, threading.RLock] = {}
        self.router = Router(config, writable=self._writable)
        self.ingest = IngestStage(
            store, host, self.router, mapping=self.mapping, context=self.context
        )
        self.pusher = OutboxPusher(
            store,
            host,
            connector=self.connector,
            mapping=self.mapping,
            context=self.context,
            clock=self._clock,
        )

    # -- what an instance needs ---------------------------------------------------------------

    def _instance(self, name: str) -> Any:
        inst = self.config.instances.get(name)
        if inst is None:
            known = ", ".join(sorted(self.config.instances)) or "none"
            raise ConfigurationError(f"no connector instance {name!r} (instances: {known})")
        return inst

    def instance_lock(self, instance: str) -> threading.RLock:
        """Held while the instance's connector is in use (reads, pushes, census)."""
        with self._lock:
            return self._instance_locks.setdefault(instance, threading.RLock())

    def connector(self, instance: str) -> Connector:
        """The instance's connector, built from the config on first use."""
        with self._lock:
            if instance not in self._connectors:
                inst = self._instance(instance)
                cls = self.host.connector_type(inst.kind)
                built = build_connector(
                    cls, instance, dict(inst.settings), base_dir=self.config.base_dir
                )
                self._connectors[instance] = built
                self._built.append(built)
            return self._connectors[instance]

    def mapping(self, instance: str) -> MappingFile:
        """The instance's mapping, loaded on first use; :meth:`_check_mapping` reloads it.

        :raises ConfigurationError: the file does not load (first use only).
        """
        with self._lock:
            loaded = self._mappings.get(instance)
            if loaded is None:
                path = Path(self._instance(instance).mapping)
                stamp = _stamp(path)
                loaded = self._mappings[instance] = _LoadedMapping(load_mapping(path), stamp)
            return loaded.mapping

    def _check_mapping(self, instance: str, tally: _Tally) -> None:
        """Reload the instance's mapping file if it changed since it was loaded; once a cycle.

        Called with the instance's lock held, before its read or a drain to it. Per cycle, not
        per record: a ``stat`` for every record of a backfill would cost more than it is worth,
        and a mapping that changed in the middle of a read would map its records in two ways. A
        file that no longer loads leaves the loaded one in use (a daemon never stops over an
        admin's half-saved edit) and is logged once per change. A mapping not loaded yet is
        left to its first use, which reports its errors.
        """
        if instance in tally.mappings_checked:
            return
        tally.mappings_checked.add(instance)
        with self._lock:
            loaded = self._mappings.get(instance)
            if loaded is None:
                return
            path = Path(self._instance(instance).mapping)
            stamp = _stamp(path)
            if stamp in (loaded.stamp, loaded.broken):
                return
            try:
                fresh = load_mapping(path)
            except Exception as exc:  # any failure to load: the last good mapping stays in use
                loaded.broken = stamp
                log.error("mapping file %s of %s changed but does not load; the one loaded "
                          "before stays in use until it is fixed: %s", path, instance,
                          describe_exception(exc))  # fmt: skip
                return
            self._mappings[instance] = _LoadedMapping(fresh, stamp)
        log.info("mapping file %s of %s changed: reloaded", path, instance)

    def reload_mapping(self, instance: str) -> None:
        """Use the instance's mapping file as it is now if it changed (``dead-letters retry``
        after a fix); a file that does not load leaves the last good one in use."""
        with self.instance_lock(instance):
            self._check_mapping(instance, _Tally())

    def context(self, instance: str) -> MappingContext:
        with self._lock:
            if instance not in self._contexts:
                inst = self._instance(instance)
                self._contexts[instance] = MappingContext.from_host(
                    self.host,
                    unit=inst.unit,
                    instance=instance,
                    priority_matrix=self.config.priority,
                )
            return self._contexts[instance]

    def _writable(self, instance: str) -> frozenset[str] | None:
        try:
            return writable_fields(self.mapping(instance))
        except UsmBridgeError:
            return None

    def close(self) -> None:
        """Close the connectors this engine built (injected ones belong to the caller)."""
        for connector in self._built:
            try:
                connector.close()
            except Exception:  # closing must not hide what the caller is doing
                log.warning("closing connector %s failed", connector.name, exc_info=True)
        self._built.clear()

    # -- the cycle ----------------------------------------------------------------------------

    def run_cycle(
        self, instance: str, *, progress: Callable[[CycleProgress], None] | None = None
    ) -> CycleSummary:
        """Sync ``instance`` once; see the module docstring.

        :raises ConfigurationError: ``instance`` is not in the config.
        """
        self._instance(instance)
        started = utcnow()
        tally = _Tally(touched={instance})
        error: str | None = None
        try:
            self.host.before_cycle(instance)
            with self.instance_lock(instance):
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
            if not self.stop.is_set():
                for target in sorted(tally.touched):
                    error = self._drain(target, tally) or error
        except Exception as exc:  # the cycle reports, the daemon goes on
            log.error("cycle of %s failed", instance, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
        summary = CycleSummary(
            instance=instance,
            started=started,
            finished=utcnow(),
            read=tally.read,
            stored=tally.stored,
            unchanged=tally.unchanged,
            echoes=tally.echoes,
            routed=tally.routed,
            pushed=tally.pushed,
            dead_letters=tally.dead_letters,
            error=error,
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
        connector = self.connector(instance)
        with self.store.begin(readonly=True) as tx:
            cursor = tx.get_cursor(instance)
        page: list[RawRecord] = []

        def ingest_page() -> bool:
            """Ingest the page; whether the read goes on (a stop ends it after the record in
            flight, and the records left out are read again: the cursor stays before them)."""
            if page:
                self.ingest.ingest_page(
                    instance,
                    page,
                    stop=self.stop,
                    each=lambda outcome: self._count(instance, outcome, tally, progress),
                )
                page.clear()
            return not self.stop.is_set()

        failure: Exception | None = None
        try:
            items = iter(connector.read_changes(cursor))
            while True:
                try:
                    item = next(items, None)
                except StoreError:
                    raise
                except Exception as exc:  # a connector failure ends the read only
                    failure = exc
                    item = None
                if item is None:
                    ingest_page()  # what was yielded before the end (or the failure)
                    break
                if isinstance(item, Checkpoint):
                    # Everything before it is committed record by record: the cursor may move.
                    if not ingest_page():
                        break
                    with self.store.begin() as tx:
                        tx.set_cursor(instance, item.cursor)
                else:
                    page.append(item)
                    if len(page) >= PAGE_SIZE and not ingest_page():
                        break
        except StoreError:
            raise
        except Exception as exc:  # a mapping plugin's remote error that may pass, a bad file
            failure = exc
        if self.stop.is_set():
            log.info("stop requested: cycle of %s ends after %d records", instance, tally.read)
        if failure is not None:
            log.warning("reading %s failed after %d records: %s", instance, tally.read, failure)
            return f"reading {instance} failed after {tally.read} records: {failure}"
        return None

    def _drain(self, target: str, tally: _Tally) -> str | None:
        try:
            with self.instance_lock(target):
                self._check_mapping(target, tally)
                counts = self.pusher.drain(target, stop=self.stop)
        except StoreError:
            raise
        except Exception as exc:  # e.g. a connector that cannot be built
            log.warning("pushing to %s failed: %s", target, exc)
            return f"pushing to {target} failed: {exc}"
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
            tx.add_dead_letter(instance, stage, payload, reason)
        tally.dead_letters += 1
        log.warning("record %s of %s dead-lettered at %s: %s", record.remote_id, instance,
                    stage.value, reason)  # fmt: skip
        self.host.dead_letter(instance, stage.value, reason, payload)

    # -- the census ---------------------------------------------------------------------------

    def census(self, instance: str) -> int:
        """Mark the stored records ``instance``'s tool no longer lists as vanished.

        Only a complete listing counts: a connector that cannot list (``remote_ids()`` is
        ``None``) or fails while listing marks nothing. Calls are never deleted; a record that
        shows up again is marked present by the store when it is next read.

        :returns: how many records were newly marked vanished.
        """
        connector = self.connector(instance)
        # Only what the store knew before the listing can be missing from it: a record another
        # cycle creates once this one lets go of the connector is not listed, but has not
        # vanished.
        with self.store.begin(readonly=True) as tx:
            known = tx.list_identities(instance)
        try:
            with self.instance_lock(instance):
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
