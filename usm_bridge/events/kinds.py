"""The instance kinds that take events, and how each tool signs and names a delivery.

One row per tool: its deliveries arrive at ``POST /events/{kind}/{instance}``, signed with
the instance's ``webhook_secret`` by :attr:`EventKind.scheme`, and carry their delivery id
(for replays) in :attr:`EventKind.delivery_header`. Any other kind (``email``) takes no
events: a ``webhook_secret`` on it is a config error (:func:`usm_bridge.config.load_config`).
This module imports nothing heavy, so that the config can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .signature import ATLASSIAN, SERVICENOW, SignatureScheme

__all__ = ["EVENT_KINDS", "JIRA", "SERVICENOW_EVENTS", "EventKind"]


@dataclass(frozen=True)
class EventKind:
    #: The instance kind, and the path segment of its receiver.
    kind: str
    #: The tool's name in log lines.
    tool: str
    scheme: SignatureScheme
    delivery_header: str


#: Jira's admin webhooks (Cloud, and Data Center with a secret).
JIRA = EventKind("jira", "Jira", ATLASSIAN, "X-Atlassian-Webhook-Identifier")
#: The business rule of docs/servicenow-events-update-set.xml; its delivery id is
#: ``<sys_id>:<sys_mod_count>``, the same for a resend of one change.
SERVICENOW_EVENTS = EventKind("servicenow", "ServiceNow", SERVICENOW, "X-USM-Bridge-Delivery")

#: Instance kind -> how its events are checked.
EVENT_KINDS: dict[str, EventKind] = {k.kind: k for k in (JIRA, SERVICENOW_EVENTS)}
