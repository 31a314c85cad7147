"""The app the daemon serves on ``--listen``: its /healthz and /metrics, and a Jira webhook
receiver for each of its Jira instances configured with a ``webhook_secret``, whose accepted
deliveries wake that instance's cycle (:meth:`~usm_bridge.sync.daemon.Daemon.hint`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette

from .app import build_app
from .counts import EventCounts
from .jira import JiraEvents

if TYPE_CHECKING:
    from ..config import BridgeConfig
    from ..sync.daemon import Daemon

__all__ = ["events_app", "jira_secrets"]


def jira_secrets(config: BridgeConfig, instances: list[str]) -> dict[str, str]:
    """The webhook secret of each of ``instances`` that is a Jira one and has one."""
    secrets: dict[str, str] = {}
    for name in instances:
        inst = config.instances[name]
        if inst.kind == "jira" and inst.webhook_secret is not None:
            secrets[name] = inst.webhook_secret.get_secret_value()
    return secrets


def events_app(config: BridgeConfig, daemon: Daemon) -> Starlette:
    secrets = jira_secrets(config, daemon.instances)
    jira = JiraEvents(
        secrets,
        daemon.hint,
        EventCounts(daemon.metrics.registry, sorted(secrets)),
        max_body=config.daemon.event_max_body,
    )
    return build_app(daemon.metrics, daemon.health, jira)
