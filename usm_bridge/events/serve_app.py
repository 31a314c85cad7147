"""The app of ``usm-bridge serve``: the webhook receivers, ``/healthz`` and ``/metrics``, for a
deployment on Celery workers. An accepted event enqueues the instance's cycle on the broker
(:class:`~.broker_wake.BrokerWake`); no cycle ever runs in this process.

``/healthz`` is 200 while the broker answers and 503 when it does not (the receivers then
answer accepted deliveries with 503 too); ``/metrics`` serves the deliveries by outcome
(``usm_bridge_events_total``) and what the accepted ones enqueued.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from ..sync.metrics import Health, exposition_of
from .app import build_app
from .broker_wake import BrokerWake
from .counts import EventCounts
from .daemon_app import event_receivers, receiving

if TYPE_CHECKING:
    from celery import Celery

    from ..config import BridgeConfig

__all__ = ["ServeApp", "serve_app"]


class _Registry:
    """What /metrics serves: one registry of this process's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        return exposition_of(self.registry, accept)


class ServeApp:
    """The Starlette app (:attr:`app`) and what it is made of, for the command and tests."""

    def __init__(self, config: BridgeConfig, celery: Celery, instances: list[str]) -> None:
        self.config = config
        self.instances = receiving(config, instances)
        self.metrics = _Registry()
        self.counts = EventCounts(self.metrics.registry, self.instances, enqueues=True)
        self.wake = BrokerWake(celery, config, self.metrics.registry, self.instances)
        receivers = event_receivers(config, instances, self.wake, self.counts)
        self.app: Starlette = build_app(self.metrics, self.health, receivers)

    def health(self) -> Health:
        from ..workers.app import safe_broker_url

        ok, why = self.wake.check()
        detail: dict[str, object] = {
            "status": "ok" if ok else "broker_down",
            "broker": safe_broker_url(self.config),
            "receiving": self.instances,
        }
        if not ok:
            detail["error"] = why
        return Health(ok, detail)


def serve_app(config: BridgeConfig, instances: list[str]) -> ServeApp:
    """The app of ``usm-bridge serve`` for ``instances`` (those that take events receive)."""
    from .broker_wake import serve_celery_app

    return ServeApp(config, serve_celery_app(config), instances)
