"""One delivery to ``POST /events/{kind}/{instance}``: what becomes of it, whatever the tool.

The checks run in this order, each refusal before any more of the request is read:

1. the instance is one of this kind configured with a ``webhook_secret`` -> else 404
   ``unknown_instance``;
2. ``Content-Length`` (when given) is within ``max_body`` -> else 413 ``too_large``;
3. the kind's signature header is present -> else 401 ``unsigned``; for an instance
   configured with ``webhook_auth = "url_secret"`` (a Jira Data Center, which does not sign),
   a ``secret`` query parameter instead: it must equal the secret (constant time) -> else 403
   ``bad_signature``, before the body is read;
4. the body, streamed, stays within ``max_body`` -> else 413 ``too_large`` (reading stops);
5. the signature matches the raw body -> else 403 ``bad_signature``;
6. the kind's delivery id was not accepted before -> else 200 ``replayed`` (a 2xx, so that a
   sender that retries stops retrying a delivery that did arrive; nothing is done);
7. 202 ``accepted``: the instance's cycle is woken (``wake``, on a thread of the server's
   pool: it may block). When the wake cannot be done (:class:`WakeFailed`: ``usm-bridge
   serve`` with its broker down), 503 ``unavailable`` instead, and the delivery id is
   forgotten, so that the sender's retry of it is taken and not refused as a replay.

A secret in the URL is weaker than a signature: it travels with every delivery, lands in the
access logs of every proxy on the way, and binds no body (whoever saw one URL can send
anything until the secret changes). It is accepted only where the instance asks for it.

What differs between tools is the signature scheme and the delivery id's header
(:class:`~usm_bridge.events.kinds.EventKind`). The body is never parsed nor kept: an event is
a hint, and the cycle reads the truth from the tool. Refusals are logged with the instance,
the reason and the peer, never the body nor any header value.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from .counts import EventCounts
from .kinds import EventKind
from .seen import SeenDeliveries

__all__ = ["URL_SECRET_PARAMETER", "EventReceiver", "Outcome", "WakeFailed"]

log = logging.getLogger(__name__)

#: The query parameter of a secret in the URL (``webhook_auth = "url_secret"``).
URL_SECRET_PARAMETER = "secret"  # noqa: S105 - a parameter's name, not a secret


class WakeFailed(Exception):
    """Raised by a wake that could not be done (the broker does not answer): the delivery is
    answered 503, which the tools retry."""


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
    "unavailable": 503,
}


class EventReceiver:
    """The instances of one kind that take events, their secrets, and what an accepted
    delivery wakes.

    :param secrets: instance name -> its webhook secret (resolved from the config).
    :param wake: called with the instance's name for each accepted delivery, on a thread of
        the server's pool (it may block); raises :class:`WakeFailed` when it cannot wake it.
    :param url_secrets: the instances that also take their secret as the ``secret`` query
        parameter instead of a signature (``webhook_auth = "url_secret"``).
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
        url_secrets: Collection[str] = (),
    ) -> None:
        self.kind = kind
        self._secrets = dict(secrets)
        self._url_secrets = frozenset(url_secrets)
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
        query: Mapping[str, str] | None = None,
    ) -> Outcome:
        """What becomes of one delivery; ``headers`` are looked up case-insensitively,
        ``query`` is the URL's query parameters."""
        outcome, delivery = await self._check(instance, headers, body, query or {})
        if outcome == "accepted":
            try:
                await run_in_threadpool(self._wake, instance)
            except WakeFailed:
                outcome = "unavailable"
                if delivery is not None:  # the sender retries it with the same id: take it then
                    self.seen.forget(delivery)
        self.counts.count(instance, outcome)
        tool = self.kind.tool
        if outcome == "accepted":
            extra = {"event": "webhook", "instance": instance, "outcome": outcome}
            log.debug("%s event for %s accepted", tool, instance, extra=extra)
        elif outcome != "unavailable":  # that one is logged by the wake, once per outage
            # The instance as sent may be anything: logged only when it is a configured one.
            shown = instance if instance in self._secrets else "?"
            # A replay is the sender retrying a delivery that did arrive: ordinary.
            level = logging.INFO if outcome == "replayed" else logging.WARNING
            log.log(level, "%s event for %s refused: %s (from %s)", tool, shown, outcome, peer,
                    extra={"event": "webhook", "instance": shown, "outcome": outcome,
                           "peer": peer})  # fmt: skip
        return Outcome(_STATUS[outcome], outcome)

    async def _check(
        self,
        instance: str,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes],
        query: Mapping[str, str],
    ) -> tuple[str, str | None]:
        """The outcome, and the delivery's key in :attr:`seen` once it was recorded there."""
        secret = self._secrets.get(instance)
        if secret is None:
            return "unknown_instance", None
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return "too_large", None
        scheme = self.kind.scheme
        signature = headers.get(scheme.header.lower())
        in_url = query.get(URL_SECRET_PARAMETER) if instance in self._url_secrets else None
        if not signature and in_url is None:
            return "unsigned", None
        if not signature and in_url is not None and not _same_secret(secret, in_url):
            return "bad_signature", None  # refused before the body is read
        raw = await _read_at_most(body, self.max_body)
        if raw is None:
            return "too_large", None
        if signature and not scheme.matches(secret, raw, signature):
            return "bad_signature", None
        delivery = headers.get(self.kind.delivery_header.lower())
        # Both tools always send one; a signed delivery without it is taken, not de-duplicated.
        if not delivery:
            return "accepted", None
        key = f"{instance}\0{delivery}"
        if not self.seen.first_time(key):
            return "replayed", None
        return "accepted", key


def _same_secret(secret: str, given: str) -> bool:
    """Whether ``given`` is ``secret``, in constant time in ``given``'s content (bytes:
    ``compare_digest`` refuses non-ASCII str, and a URL may hold anything)."""
    return hmac.compare_digest(secret.encode(), given.encode("utf-8", "replace"))


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
