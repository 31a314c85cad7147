"""One delivery to ``POST /events/{kind}/{instance}``: what becomes of it, whatever the tool.

The checks run in this order, each refusal before any more of the request is read:

1. the instance is one of this kind configured with a ``webhook_secret`` -> else 404
   ``unknown_instance``;
2. ``Content-Length`` (when given) is within ``max_body`` -> else 413 ``too_large``;
3. the kind's signature header is present -> else 401 ``unsigned``;
4. the body, streamed, stays within ``max_body`` -> else 413 ``too_large`` (reading stops);
5. the signature matches the raw body -> else 403 ``bad_signature``;
6. the kind's delivery id was not accepted before -> else 200 ``replayed`` (a 2xx, so that a
   sender that retries stops retrying a delivery that did arrive; nothing is done);
7. 202 ``accepted``: the instance's cycle is woken (``wake``).

What differs between tools is the signature scheme and the delivery id's header
(:class:`~usm_bridge.events.kinds.EventKind`). The body is never parsed nor kept: an event is
a hint, and the cycle reads the truth from the tool. Refusals are logged with the instance,
the reason and the peer, never the body nor any header value.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from .counts import EventCounts
from .kinds import EventKind
from .seen import SeenDeliveries

__all__ = ["EventReceiver", "Outcome"]

log = logging.getLogger(__name__)


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


class EventReceiver:
    """The instances of one kind that take events, their secrets, and what an accepted
    delivery wakes.

    :param secrets: instance name -> its webhook secret (resolved from the config).
    :param wake: called with the instance's name for each accepted delivery.
    """

    def __init__(
        self,
        kind: EventKind,
        secrets: Mapping[str, str],
        wake: Callable[[str], object],
        counts: EventCounts,
        *,
        max_body: int,
        seen: SeenDeliveries | None = None,
    ) -> None:
        self.kind = kind
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
        tool = self.kind.tool
        if outcome == "accepted":
            self._wake(instance)
            extra = {"event": "webhook", "instance": instance, "outcome": outcome}
            log.debug("%s event for %s accepted", tool, instance, extra=extra)
        else:
            # The instance as sent may be anything: logged only when it is a configured one.
            shown = instance if instance in self._secrets else "?"
            # A replay is the sender retrying a delivery that did arrive: ordinary.
            level = logging.INFO if outcome == "replayed" else logging.WARNING
            log.log(level, "%s event for %s refused: %s (from %s)", tool, shown, outcome, peer,
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
        scheme = self.kind.scheme
        signature = headers.get(scheme.header.lower())
        if not signature:
            return "unsigned"
        raw = await _read_at_most(body, self.max_body)
        if raw is None:
            return "too_large"
        if not scheme.matches(secret, raw, signature):
            return "bad_signature"
        delivery = headers.get(self.kind.delivery_header.lower())
        # Both tools always send one; a signed delivery without it is taken, not de-duplicated.
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
