"""Jira's admin webhooks over REST (``/rest/webhooks/1.0/webhook``): the vendor calls behind
``usm-bridge webhooks register`` (:class:`usm_bridge.events.registration.WebhookAdmin`).

The same API on Cloud and Data Center, outside ``/rest/api``: ``GET`` lists every webhook of
the site, ``POST`` creates one from ``name``, ``url``, ``events``, ``filters``
(``{"issue-related-events-section": JQL}``), ``excludeBody`` and, on Cloud, ``secret`` (the key
of the ``X-Hub-Signature`` HMAC); ``DELETE .../{id}`` removes one. Each webhook's id is the
last segment of its ``self`` link. Only an account with the Jira administrators global
permission may use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from usm_bridge.events.registration import RegisteredWebhook, WebhookSpec

if TYPE_CHECKING:
    from usm_bridge.http import HttpClient

__all__ = ["WEBHOOKS_PATH", "create_webhook", "list_webhooks"]

WEBHOOKS_PATH = "rest/webhooks/1.0/webhook"


def _registered(item: Any) -> RegisteredWebhook:
    link = str(item.get("self") or "")
    ident = str(item.get("id") or link.rstrip("/").rsplit("/", 1)[-1] or "?")
    return RegisteredWebhook(id=ident, name=str(item.get("name") or ""),
                             url=str(item.get("url") or ""))  # fmt: skip


def list_webhooks(http: HttpClient) -> list[RegisteredWebhook]:
    """Every admin webhook of the site."""
    found = http.get(WEBHOOKS_PATH).json()
    return [_registered(item) for item in found if isinstance(item, dict)]


def create_webhook(http: HttpClient, spec: WebhookSpec) -> RegisteredWebhook:
    """Create ``spec``'s webhook; Jira's answer (its id from its ``self`` link)."""
    body: dict[str, Any] = {
        "name": spec.name,
        "url": spec.url,
        "events": list(spec.events),
        "filters": {"issue-related-events-section": spec.jql},
        "excludeBody": False,
    }
    if spec.secret is not None:
        body["secret"] = spec.secret
    made = http.post(WEBHOOKS_PATH, json=body, idempotent=False)
    return _registered(made.json())
