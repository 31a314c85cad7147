"""One Jira webhook delivery to ``POST /events/jira/{instance}``: what becomes of it.

The checks run in this order, each refusal before any more of the request is read:

1. the instance is configured with a ``webhook_secret`` -> else 404 ``unknown_instance``;
2. ``Content-Length`` (when given) is within ``max_body`` -> else 413 ``too_large``;
3. ``X-Hub-Signature`` is present -> else 401 ``unsigned``;
4. the body, streamed, stays within ``max_body`` -> else 413 ``too_large`` (reading stops);
5. the signature matches the raw body -> else 403 ``bad_signature``;
6. ``X-Atlassian-Webhook-Identifier`` was not accepted before -> else 200 ``replayed``
   (a 2xx, so that Jira stops retrying a delivery that did arrive; nothing is done);
7. 202 ``accepted``: the instance's cycle is woken (:attr:`JiraEvents.wake`).

The body is never parsed nor kept: an event is a hint, and the cycle reads the truth from
Jira. Refusals are logged with the instance, the reason and the peer, never the body nor
any header value.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from .counts import EventCounts
from .seen import SeenDeliveries
from .signature import SIGNATURE_HEADER, signature_matches

__all__ = ["IDENTIFIER_HEADER", "JiraEvents", "Outcome"]

log = logging.getLogger(__name__)

IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"


@dataclass(frozen=True)
class Outcome:
    status: int
    name: str


_STATUS = {
    "accepted": 202,
    "replayed": 200,
    "unsigned": 401,
    "bad_signature": 403,
    "unknown_instance": 404,
    "too_large": 413,
}


class JiraEvents:
    """The Jira instances that take events, their secrets, and what an accepted one wakes.

    :param secrets: instance name -> the webhook secret (resolved from the config).
    :param wake: called with the instance's name for each accepted delivery.
    """

    def __init__(
        self,
        secrets: Mapping[str, str],
        wake: Callable[[str], object],
        counts: EventCounts,
        *,
        max_body: int,
        seen: SeenDeliveries | None = None,
    ) -> None:
        self._secrets = dict(secrets)
        self._wake = wake
        self.counts = counts
        self.max_body = max_body
        self.seen = seen if seen is not None else SeenDeliveries()

    @property
    def instances(self) -> list[str]:
        return sorted(self._secrets)

    async def receive(
        self,
        instance: str,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes],
        peer: str,
    ) -> Outcome:
        """What becomes of one delivery; ``headers`` are looked up case-insensitively."""
        outcome = await self._check(instance, headers, body)
        self.counts.count(instance, outcome)
        if outcome == "accepted":
            self._wake(instance)
            extra = {"event": "webhook", "instance": instance, "outcome": outcome}
            log.debug("event for %s accepted", instance, extra=extra)
        else:
            # The instance as sent may be anything: logged only when it is a configured one.
            shown = instance if instance in self._secrets else "?"
            # A replay is Jira retrying a delivery that did arrive: ordinary, not a warning.
            level = logging.INFO if outcome == "replayed" else logging.WARNING
            log.log(level, "webhook delivery for %s refused: %s (from %s)", shown, outcome, peer,
                    extra={"event": "webhook", "instance": shown, "outcome": outcome,
                           "peer": peer})  # fmt: skip
        return Outcome(_STATUS[outcome], outcome)

    async def _check(
        self, instance: str, headers: Mapping[str, str], body: AsyncIterator[bytes]
    ) -> str:
        secret = self._secrets.get(instance)
        if secret is None:
            return "unknown_instance"
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return "too_large"
        signature = headers.get(SIGNATURE_HEADER.lower())
        if not signature:
            return "unsigned"
        raw = await _read_at_most(body, self.max_body)
        if raw is None:
            return "too_large"
        if not signature_matches(secret, raw, signature):
            return "bad_signature"
        delivery = headers.get(IDENTIFIER_HEADER.lower())
        # Jira always sends one; a signed delivery without it is taken, not de-duplicated.
        if delivery and not self.seen.first_time(f"{instance}\0{delivery}"):
            return "replayed"
        return "accepted"


async def _read_at_most(body: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
