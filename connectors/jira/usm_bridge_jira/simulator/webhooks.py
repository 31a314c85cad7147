"""Webhooks registered on the simulated site, delivered as Jira Cloud delivers admin webhooks.

An admin registers a URL, the events it wants and, optionally, a secret. Each event then
reaches every webhook that asked for it as ``POST`` of a JSON body with
``X-Atlassian-Webhook-Identifier`` (one per delivery), ``X-Atlassian-Webhook-Flow: Primary``
and, with a secret, ``X-Hub-Signature: sha256=<hex>``: the HMAC-SHA256 of the raw body keyed
with the secret. Deliveries leave from one background thread, in order, after the change that
fired them (never inside the request that made it, as in Jira: an
:class:`~usm_bridge.delivery_outbox.Outbox`); Jira's retries are not modelled.
:attr:`Webhooks.dropping` loses every delivery, as a network that drops them would.

A webhook with a JQL filter gets only the events of the issues that match it. Webhooks are
registered in code (:meth:`Webhooks.register`) or through the site's REST API
(``/rest/webhooks/1.0/webhook``, :mod:`.state`), which lists, creates and deletes them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from usm_bridge.delivery_outbox import Outbox, post

__all__ = ["ISSUE_EVENTS", "Delivery", "Webhook", "Webhooks"]

#: The events this simulator fires (Jira's names).
ISSUE_EVENTS = ("jira:issue_created", "jira:issue_updated", "comment_created")

#: Seconds a delivery may take before it counts as failed.
_TIMEOUT = 5.0


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    events: frozenset[str]
    secret: str | None = None
    name: str = ""
    #: Only the events of issues matching it (``None``: every issue).
    jql: str | None = None
    #: When it was made, epoch milliseconds.
    created: int = 0


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt: ``status`` ``None`` when it was dropped or could not connect."""

    webhook: int
    event: str
    identifier: str
    status: int | None
    error: str | None = None


class Webhooks:
    def __init__(self) -> None:
        self.registered: list[Webhook] = []
        #: Every delivery made (or dropped), in order.
        self.deliveries: list[Delivery] = []
        #: When set, deliveries are recorded as dropped and never sent.
        self.dropping = False
        self._ids = itertools.count(1)
        self._outbox = Outbox("jira-sim-webhooks")
        self._lock = threading.Lock()

    def register(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = ISSUE_EVENTS,
        name: str = "",
        jql: str | None = None,
    ) -> Webhook:
        """Register a webhook, as an admin does under System > WebHooks."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL is http:// or https://, not {url!r}")
        with self._lock:
            created = int(time.time() * 1000)
            hook = Webhook(next(self._ids), url, frozenset(events), secret, name, jql, created)
            self.registered.append(hook)
        self._outbox.start()
        return hook

    def delete(self, ident: int) -> bool:
        """Remove webhook ``ident``; whether it existed."""
        with self._lock:
            kept = [hook for hook in self.registered if hook.id != ident]
            found = len(kept) != len(self.registered)
            self.registered = kept
            return found

    def fire(
        self,
        event: str,
        payload: dict[str, Any],
        matches: Callable[[Webhook], bool] = lambda _hook: True,
    ) -> None:
        """Queue ``event`` (its body without ``timestamp`` and ``webhookEvent``) for every
        webhook registered for it whose filter ``matches`` the issue."""
        hooks = [hook for hook in self.registered if event in hook.events and matches(hook)]
        if not hooks:
            return
        body = {"timestamp": int(time.time() * 1000), "webhookEvent": event, **payload}
        raw = json.dumps(body, separators=(",", ":")).encode()
        for hook in hooks:
            self._outbox.put(functools.partial(self._deliver, hook, event, str(uuid.uuid4()), raw))

    def wait_sent(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery was made; whether they all were in time."""
        return self._outbox.wait_sent(timeout)

    def close(self) -> None:
        self._outbox.close(_TIMEOUT * 2)

    def _deliver(self, hook: Webhook, event: str, identifier: str, raw: bytes) -> None:
        if self.dropping:
            self.deliveries.append(Delivery(hook.id, event, identifier, None, "dropped"))
            return
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Atlassian-Webhook-Identifier": identifier,
            "X-Atlassian-Webhook-Flow": "Primary",
            "User-Agent": "Atlassian Webhook HTTP Client",
        }
        if hook.secret is not None:
            digest = hmac.new(hook.secret.encode(), raw, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        status, error = post(hook.url, raw, headers, _TIMEOUT)
        self.deliveries.append(Delivery(hook.id, event, identifier, status, error))
