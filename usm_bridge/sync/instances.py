"""The instance registry: an instance's name to its connector, mapping, mapping context and lock.

One registry per process (built by :func:`usm_bridge.runtime.open_runtime`, held by the
engine): the sync cycle, the outbox pusher, ``dead-letters retry`` and the census all take an
instance's parts from here, so that they never disagree on which mapping file version is in
use or build a second connector for the same tool.

- **Connectors** are built from the config through the plugin host on first use (tests inject
  their own) and closed by :meth:`InstanceRegistry.close` (injected ones belong to the caller).
- **Mappings** are loaded on first use and reloaded by :meth:`InstanceRegistry.reload_mapping`
  when the file's modification time or size changed: a file the admin fixed is used without a
  restart. A changed file that does not load leaves the last good one in use, and is reported
  once per change.
- **Locks**: the daemon runs cycles of different instances in threads, and a cycle pushes to
  other instances' connectors; most connectors (an IMAP session) are not thread-safe. So every
  use of an instance's connector holds that instance's lock, and the caches are built under one
  lock. A cycle never holds two instance locks at once: no deadlock. A mapping file is reloaded
  under its instance's lock too (then the cache lock, never the other way round), so that one
  read or one drain maps with one version of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..agreements import Agreements
from ..config import BridgeConfig, InstanceConfig
from ..connector import Connector, build_connector
from ..errors import ConfigurationError
from ..mapping import Mapping as MappingFile
from ..mapping import MappingContext, load_mapping
from ..plugins import PluginHost
from .outbox import describe_exception

__all__ = ["InstanceRegistry"]

log = logging.getLogger(__name__)

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


class InstanceRegistry:
    """The configured instances' parts, built on first use; see the module docstring."""

    def __init__(
        self,
        config: BridgeConfig,
        host: PluginHost,
        *,
        connectors: Mapping[str, Connector] | None = None,
    ) -> None:
        """:param connectors: connectors by instance name (tests inject them); the others are
        built from the config through the host, and closed by :meth:`close`."""
        self.config = config
        self.host = host
        self._connectors: dict[str, Connector] = dict(connectors or {})
        self._built: list[Connector] = []
        self._mappings: dict[str, _LoadedMapping] = {}
        self._contexts: dict[str, MappingContext] = {}
        self._lock = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def instance(self, name: str) -> InstanceConfig:
        """The instance's config.

        :raises ConfigurationError: there is no such instance.
        """
        inst = self.config.instances.get(name)
        if inst is None:
            known = ", ".join(sorted(self.config.instances)) or "none"
            raise ConfigurationError(f"no connector instance {name!r} (instances: {known})")
        return inst

    def lock(self, name: str) -> threading.RLock:
        """Held while the instance's connector is in use (reads, pushes, census)."""
        with self._lock:
            return self._locks.setdefault(name, threading.RLock())

    def connector(self, name: str) -> Connector:
        """The instance's connector, built from the config on first use."""
        with self._lock:
            if name not in self._connectors:
                inst = self.instance(name)
                cls = self.host.connector_type(inst.kind)
                built = build_connector(
                    cls, name, self.config.tool_settings(name), base_dir=self.config.base_dir
                )
                self._connectors[name] = built
                self._built.append(built)
            return self._connectors[name]

    def mapping(self, name: str) -> MappingFile:
        """The instance's mapping, loaded on first use; :meth:`reload_mapping` reloads it.

        :raises ConfigurationError: the file does not load (first use only).
        """
        with self._lock:
            loaded = self._mappings.get(name)
            if loaded is None:
                path = Path(self.instance(name).mapping)
                stamp = _stamp(path)
                loaded = self._mappings[name] = _LoadedMapping(load_mapping(path), stamp)
            return loaded.mapping

    def reload_mapping(self, name: str) -> None:
        """Reload the instance's mapping file if it changed since it was loaded.

        Called with the instance's lock held (a cycle: once, before its read or a drain to it;
        ``dead-letters retry``: before it maps). A file that no longer loads leaves the loaded
        one in use (a daemon never stops over an admin's half-saved edit) and is logged once
        per change. A mapping not loaded yet is left to its first use, which reports its errors.
        """
        with self._lock:
            loaded = self._mappings.get(name)
            if loaded is None:
                return
            path = Path(self.instance(name).mapping)
            stamp = _stamp(path)
            if stamp in (loaded.stamp, loaded.broken):
                return
            try:
                fresh = load_mapping(path)
            except Exception as exc:  # any failure to load: the last good mapping stays in use
                loaded.broken = stamp
                log.error("mapping file %s of %s changed but does not load; the one loaded "
                          "before stays in use until it is fixed: %s", path, name,
                          describe_exception(exc))  # fmt: skip
                return
            self._mappings[name] = _LoadedMapping(fresh, stamp)
        log.info("mapping file %s of %s changed: reloaded", path, name)

    def context(self, name: str) -> MappingContext:
        """The instance's mapping context (its unit, the unit's priority matrix, the
        transforms)."""
        with self._lock:
            if name not in self._contexts:
                inst = self.instance(name)
                # The unit's own classes (USM leaves them to each organisation), else the
                # config's [priority]: a record names no agreement to trust before it is stored.
                matrix, _ = Agreements.of(self.config).unit_matrix(inst.unit)
                self._contexts[name] = MappingContext.from_host(
                    self.host, unit=inst.unit, instance=name, priority_matrix=matrix
                )
            return self._contexts[name]

    def retire(self, name: str) -> bool:
        """Stop handing out the instance's connector: the next :meth:`connector` builds a fresh
        one. For a connector left in use on a thread of its own (a read ahead whose read
        ended early, :mod:`.read_ahead`): that thread keeps the old one alone, which
        :meth:`close` still closes. ``False`` for an injected connector (the caller's; it
        cannot be built again) or one never built."""
        with self._lock:
            current = self._connectors.get(name)
            if current is None or not any(current is built for built in self._built):
                return False
            del self._connectors[name]
            return True

    def close(self) -> None:
        """Close the connectors this registry built (injected ones belong to the caller)."""
        for connector in self._built:
            try:
                connector.close()
            except Exception:  # closing must not hide what the caller is doing
                log.warning("closing connector %s failed", connector.name, exc_info=True)
        self._built.clear()
