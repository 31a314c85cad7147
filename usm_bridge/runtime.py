"""The composition root: the one place that opens the store, loads the plugins and builds the
instance registry and the sync engine.

``sync``, ``daemon``, ``demo``, ``dead-letters retry`` and the test helpers all start here, so
they run the same engine on the same parts::

    with open_runtime(config) as runtime:
        runtime.engine.run_cycle("hr-jira")

Everything is closed when the block ends: the connectors the registry built, then the store
(unless the caller passed its own, which stays the caller's to close).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from .config import BridgeConfig
from .connector import Connector
from .plugins import PluginHost
from .store import SchemaPolicy, Store
from .sync.engine import SyncEngine
from .sync.instances import InstanceRegistry

__all__ = ["Runtime", "build_runtime", "open_runtime"]


@dataclass(frozen=True)
class Runtime:
    """What a command needs to sync: the parts :func:`open_runtime` built, in use together."""

    config: BridgeConfig
    store: Store
    host: PluginHost
    instances: InstanceRegistry
    engine: SyncEngine


def build_runtime(
    config: BridgeConfig,
    store: Store,
    *,
    host: PluginHost | None = None,
    connectors: Mapping[str, Connector] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Runtime:
    """The parts on an opened ``store``; the caller closes ``runtime.engine`` (its connectors)
    and the store. :func:`open_runtime` is the usual way; this one is for test fixtures that
    hold the store already.

    :param connectors: connectors by instance name to use instead of building them (tests).
    :param stop: when set, a cycle finishes the record in flight, commits and returns.
    :param clock: "now" for outbox due times (tests move it forward instead of sleeping).
    """
    host = host or PluginHost()
    instances = InstanceRegistry(config, host, connectors=connectors)
    engine = SyncEngine(config, store, host, instances=instances, stop=stop, clock=clock)
    return Runtime(config, store, host, instances, engine)


@contextmanager
def open_runtime(
    config: BridgeConfig,
    *,
    store: Store | None = None,
    host: PluginHost | None = None,
    connectors: Mapping[str, Connector] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] | None = None,
    migrate: bool = False,
    readonly: bool = False,
) -> Iterator[Runtime]:
    """Open the store of ``config`` (or use ``store``, which stays the caller's to close), load
    the plugins (or use ``host``), build the instance registry and the engine; close the
    connectors and the store when the block ends. Parameters as :func:`build_runtime`.

    :param migrate: upgrade a store whose schema is older than the code (``--migrate``);
        without it such a store is refused. A new empty store is created either way.
    :raises StoreSchemaError: the store's schema is newer than the code, or older and not
        ``migrate``.
    :raises StoreError: the store cannot be opened.
    """
    with _opened(config, store, migrate=migrate, readonly=readonly) as opened:
        runtime = build_runtime(
            config, opened, host=host, connectors=connectors, stop=stop, clock=clock
        )
        try:
            yield runtime
        finally:
            runtime.engine.close()


@contextmanager
def _opened(
    config: BridgeConfig, store: Store | None, *, migrate: bool, readonly: bool
) -> Iterator[Store]:
    if store is not None:
        yield store  # the caller's, closed by the caller
        return
    schema = (
        SchemaPolicy.UPGRADE if migrate else SchemaPolicy.READ if readonly else SchemaPolicy.CREATE
    )
    with Store.open(config.store.url, schema=schema) as opened:
        yield opened
