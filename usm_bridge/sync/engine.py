"""One sync cycle of one connector instance (ARCHITECTURE.md, "the flow of one sync cycle").

``run_cycle`` reads what changed since the stored cursor, maps each record through the plugin
host, stores it, recognises the echo of the bridge's own write, routes the rest along the chain
(the outbox items go into the same unit of work as the call), pushes the outbox of every target
the cycle touched, and records the run. The cursor of a checkpoint is stored only after every
record before it is: a crash re-reads, never skips.

Echo recognition compares drafts, not calls: the hash of the outbound draft of what was read is
compared with the identity's ``pushed_hash``, the hash of what the tool is known to hold (set
when the bridge writes the record, and when it reads a change made in the tool, so that a later
revert is never mistaken for a no-op), or a read draft equal to the record's base. The base
(``remote_states``, :mod:`.merge`) is what the tool was known to hold: a field the read holds
as in the base keeps its stored value, so a decision not pushed yet survives a stale read; a
field the tool changed is taken. Comments are not part of a draft: a read that brings
only a new public comment is routed as such; reading back the bridge's own comment copies is
recognised through ``comment_links``. A record the outbox linked as found by its correlation
marker, whose update is still to come (:func:`~.outbox.awaits_found_update`), holds what a
create that failed half-way left in it: its read becomes the base, but changes no field the
bridge writes and is not routed, so the update writes what the record lacks instead of the
read undoing the call.

Mapping files are loaded on first use and checked again once per cycle of their instance (and
before a drain pushes to them), by modification time and size: a file the admin fixed is used
from the next cycle on, without a restart, so ``dead-letters retry`` of what it failed works.
A changed file that does not load leaves the last good one in use, and is reported once.

Cycles of different instances run at once (the daemon's workers). The unit of work that
stores and routes a record first locks every call of the record's chain (PostgreSQL; SQLite
runs writers one at a time), so that two cycles never rewrite a linked call from what they read
before the other's commit; one the database still rolls back for a conflict with another cycle
(:class:`~usm_bridge.store.StoreConflictError`) is run again from the start.

A record that cannot be mapped becomes a ``map`` dead letter, one that cannot be stored (a
conflict only after ``STORE_ATTEMPTS`` tries) a ``store`` dead letter; the cycle goes on. A
mapping plugin (a ``usm_bridge_map_inbound`` / ``usm_bridge_map_outbound`` hookimpl) that
raises something other than a ``MappingError`` (a ``ValueError``, a ``KeyError``: its bug) makes
a ``map`` dead letter too, naming the exception (credentials masked, length bounded): ending
the read would stop the instance on the same record every cycle. Only a remote error such a
plugin raises that may pass (not a ``PermanentRemoteError``) ends the read like a connector's
failure, to be read again next cycle. A connector that fails mid-read ends the cycle with
``summary.error`` set and what was stored kept. Nothing here raises for remote or mapping
problems; a broken store ends the cycle the same way (the run is then recorded if it can be).
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
from ..connector import Checkpoint, Connector, RawRecord, RemoteDraft, build_connector
from ..errors import (
    ConfigurationError,
    MappingError,
    PermanentRemoteError,
    RemoteError,
    StoreError,
    UsmBridgeError,
)
from ..ingest import store_mapped_call
from ..mapping import Mapping as MappingFile
from ..mapping import MappingContext, load_mapping
from ..model import Call, utcnow
from ..plugins import PluginHost
from ..store import (
    DeadLetterStage,
    Store,
    StoreConflictError,
    get_remote_state,
    set_remote_state,
)
from .calls import draft_hash, keep_unmapped, writable_fields
from .merge import merge_read
from .outbox import OutboxPusher, awaits_found_update, describe_exception, raised_at
from .router import Router

__all__ = ["CycleProgress", "CycleSummary", "SyncEngine"]

log = logging.getLogger(__name__)

#: Times a record is stored before a conflict with concurrent cycles makes it a dead letter.
STORE_ATTEMPTS = 5


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


class _Unmappable(Exception):
    """The record cannot be mapped: the reason of its ``map`` dead letter."""


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
        connector = self.connector(instance)
        with self.store.begin(readonly=True) as tx:
            cursor = tx.get_cursor(instance)
        try:
            for item in connector.read_changes(cursor):
                if isinstance(item, Checkpoint):
                    # Everything before it is committed record by record: the cursor may move.
                    with self.store.begin() as tx:
                        tx.set_cursor(instance, item.cursor)
                else:
                    self._ingest(instance, item, tally)
                    if progress is not None:
                        progress(CycleProgress(instance, tally.read, tally.stored))
                if self.stop.is_set():
                    log.info("stop requested: cycle of %s ends after %d records", instance,
                             tally.read)  # fmt: skip
                    break
        except StoreError:
            raise
        except Exception as exc:  # a connector failure ends the read only
            log.warning("reading %s failed after %d records: %s", instance, tally.read, exc)
            return f"reading {instance} failed after {tally.read} records: {exc}"
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

    def _ingest(self, instance: str, record: RawRecord, tally: _Tally) -> None:
        tally.read += 1
        try:
            call, read_draft = self._map_read(instance, record)
        except _Unmappable as exc:
            self._dead_letter(instance, DeadLetterStage.MAP, record, str(exc), tally)
            return
        read_hash = draft_hash(read_draft) if read_draft is not None else None
        attempt = 1
        while True:
            try:
                kind, targets = self._store_read(instance, record, call, read_draft, read_hash)
                break
            except StoreConflictError as exc:
                if attempt < STORE_ATTEMPTS:
                    # A cycle of another instance stored calls of the same chain at the same
                    # time and the database rolled this unit of work back: nothing of it was
                    # kept, and storing the record again sees that cycle's changes.
                    log.info("storing record %s of %s met another cycle (%s); again",
                             record.remote_id, instance, exc)  # fmt: skip
                    attempt += 1
                    continue
                self._dead_letter(instance, DeadLetterStage.STORE, record, str(exc), tally)
                return
            except StoreError as exc:
                self._dead_letter(instance, DeadLetterStage.STORE, record, str(exc), tally)
                return
        if kind == "unchanged":
            tally.unchanged += 1
            return
        tally.stored += 1
        if kind == "echo":
            tally.echoes += 1
            return
        tally.routed += 1
        tally.touched |= targets

    def _map_read(self, instance: str, record: RawRecord) -> tuple[Call, RemoteDraft | None]:
        """The record's call, and its outbound draft (``None``: the tool holds something the
        bridge could not write back, so it is never an echo).

        :raises _Unmappable: the record goes to the dead letters with this reason.
        """
        mapping, context = self.mapping(instance), self.context(instance)
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
        re-raises what is no fault of the record (see the module docstring)."""
        if isinstance(exc, StoreError) or (
            isinstance(exc, RemoteError) and not isinstance(exc, PermanentRemoteError)
        ):
            raise exc
        reason = describe_exception(exc)
        # The place, for the plugin's author; the traceback would repeat the unmasked message.
        log.warning("mapping record %s of %s %s raised %s at %s", record.remote_id, instance,
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
                            call.id, instance, reason, raised_at(exc))  # fmt: skip
                raise MappingError(f"a mapping plugin failed: {reason}") from exc

        return outbound

    def _store_read(
        self,
        instance: str,
        record: RawRecord,
        call: Call,
        read_draft: RemoteDraft | None,
        read_hash: str | None,
    ) -> tuple[str, set[str]]:
        """Store and route one mapped record in one unit of work: ``("unchanged" | "echo" |
        "routed", the instances the router asked writes of)``. Raises what the store raises,
        with nothing kept."""
        mapping, context = self.mapping(instance), self.context(instance)
        with self.store.begin() as tx:
            # First, so that what follows reads the chain's calls as they are and no other
            # cycle rewrites them before this one commits (PostgreSQL; SQLite is serial).
            tx.lock_chain(instance, record.remote_id)
            existing = tx.find_call(instance, record.remote_id)
            previous = existing.call if existing is not None else None
            base = get_remote_state(tx, instance, record.remote_id)
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
            if previous is not None:
                call = keep_unmapped(call, previous, mapping)
                merge_base = read_draft if found else base
                if merge_base is not None and read_draft is not None:
                    # A field the tool still holds as last known keeps the stored value.
                    call = merge_read(
                        call, previous, read_draft, merge_base,
                        self._merge_outbound(instance, mapping, context),
                    )  # fmt: skip
            if read_draft is not None and read_draft != base:
                set_remote_state(tx, instance, record.remote_id, read_draft)
            result = store_mapped_call(tx, call, instance=instance)
            if not result.changed:
                return "unchanged", set()
            identity = tx.get_identity(result.call_id, instance)
            # A read equal to what the tool was known to hold is nothing new.
            same = found or (
                read_draft is not None
                and (
                    read_draft == base
                    or (identity is not None and identity.pushed_hash == read_hash)
                )
            )
            if read_hash is not None and (identity is None or identity.pushed_hash != read_hash):
                # What the tool now holds: a later write of exactly this is a no-op.
                tx.record_pushed_hash(result.call_id, instance, read_hash)
            stored = tx.get_call(result.call_id)
            assert stored is not None
            if same and not self.router.new_public_comments(tx, stored.call):
                return "echo", set()
            outcome = self.router.route(tx, result.call_id, previous=previous, echo=same)
            return "routed", set(outcome.targets)

    def _dead_letter(
        self,
        instance: str,
        stage: DeadLetterStage,
        record: RawRecord,
        reason: str,
        tally: _Tally,
    ) -> None:
        payload = record.model_dump(mode="json")
        with self.store.begin() as tx:
            # One open letter per record and stage: a re-read that fails again counts an
            # attempt on it, and only a new letter is counted, logged and told to plugins.
            added = tx.record_dead_letter(
                instance, stage, payload, reason, subject=record.remote_id
            )
        if not added.new:
            log.info("record %s of %s failed again at %s (attempt %d): %s", record.remote_id,
                     instance, stage.value, added.letter.attempts, reason)  # fmt: skip
            return
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
