"""The app the daemon serves on ``--listen``: its /healthz and /metrics, and one event
receiver per kind that takes events (:data:`~usm_bridge.events.kinds.EVENT_KINDS`: Jira,
ServiceNow) for its instances configured with a ``webhook_secret``, whose accepted deliveries
wake that instance's cycle (:meth:`~usm_bridge.sync.daemon.Daemon.hint`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from .app import build_app
from .counts import EventCounts
from .kinds import EVENT_KINDS
from .receiver import EventReceiver

if TYPE_CHECKING:
    from ..config import BridgeConfig
    from ..sync.daemon import Daemon

__all__ = ["event_receivers", "event_secrets", "events_app", "receiving"]


def event_secrets(config: BridgeConfig, instances: list[str]) -> dict[str, dict[str, str]]:
    """Kind -> {instance: its webhook secret} for each of ``instances`` that has one (the
    config allows one on the kinds that take events only)."""
    secrets: dict[str, dict[str, str]] = {}
    for name in instances:
        inst = config.instances[name]
        if inst.kind in EVENT_KINDS and inst.webhook_secret is not None:
            secrets.setdefault(inst.kind, {})[name] = inst.webhook_secret.get_secret_value()
    return secrets


def receiving(config: BridgeConfig, instances: list[str]) -> list[str]:
    """The instances among ``instances`` that take events, of any kind."""
    return sorted(name for found in event_secrets(config, instances).values() for name in found)


def event_receivers(
    config: BridgeConfig, instances: list[str], wake: Callable[[str], object], counts: EventCounts
) -> list[EventReceiver]:
    """One receiver per kind that takes events, for ``instances``, waking each one's cycle
    with ``wake`` (the daemon's hint, or ``serve``'s enqueue)."""
    secrets = event_secrets(config, instances)
    in_url = [n for n in instances if config.instances[n].webhook_auth == "url_secret"]
    return [
        EventReceiver(
            kind,
            secrets.get(kind.kind, {}),
            wake,
            counts,
            max_body=config.daemon.event_max_body,
            url_secrets=in_url,
        )
        for kind in EVENT_KINDS.values()
    ]


def events_app(config: BridgeConfig, daemon: Daemon) -> Starlette:
    counts = EventCounts(daemon.metrics.registry, receiving(config, daemon.instances))
    receivers = event_receivers(config, daemon.instances, daemon.hint, counts)
    return build_app(daemon.metrics, daemon.health, receivers)
