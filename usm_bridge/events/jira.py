"""Jira's admin webhooks to ``POST /events/jira/{instance}``: signed as Atlassian documents
(``X-Hub-Signature: sha256=<hex>`` of the raw body), de-duplicated by
``X-Atlassian-Webhook-Identifier`` (:data:`~usm_bridge.events.kinds.JIRA`). The checks and
outcomes are :class:`~usm_bridge.events.receiver.EventReceiver`'s."""

from __future__ import annotations

from .kinds import JIRA

__all__ = ["IDENTIFIER_HEADER", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = JIRA.scheme.header
IDENTIFIER_HEADER = JIRA.delivery_header
