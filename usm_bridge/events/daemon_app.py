"""The app the daemon serves on ``--listen``: its /healthz and /metrics, and one event
receiver per kind that takes events (:data:`~usm_bridge.events.kinds.EVENT_KINDS`: Jira,
ServiceNow) for its instances configured with a ``webhook_secret``, whose accepted deliveries
wake that instance's cycle (:meth:`~usm_bridge.sync.daemon.Daemon.hint`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette

from .app import build_app
from .counts import EventCounts
from .kinds import EVENT_KINDS
from .receiver import EventReceiver

if TYPE_CHECKING:
    from ..config import BridgeConfig
    from ..sync.daemon import Daemon

__all__ = ["event_secrets", "events_app"]


def event_secrets(config: BridgeConfig, instances: list[str]) -> dict[str, dict[str, str]]:
    """Kind -> {instance: its webhook secret} for each of ``instances`` that has one (the
    config allows one on the kinds that take events only)."""
    secrets: dict[str, dict[str, str]] = {}
    for name in instances:
        inst = config.instances[name]
        if inst.kind in EVENT_KINDS and inst.webhook_secret is not None:
            secrets.setdefault(inst.kind, {})[name] = inst.webhook_secret.get_secret_value()
    return secrets


def events_app(config: BridgeConfig, daemon: Daemon) -> Starlette:
    secrets = event_secrets(config, daemon.instances)
    counts = EventCounts(
        daemon.metrics.registry, sorted(name for found in secrets.values() for name in found)
    )
    receivers = [
        EventReceiver(
            kind,
            secrets.get(kind.kind, {}),
            daemon.hint,
            counts,
            max_body=config.daemon.event_max_body,
        )
        for kind in EVENT_KINDS.values()
    ]
    return build_app(daemon.metrics, daemon.health, receivers)
