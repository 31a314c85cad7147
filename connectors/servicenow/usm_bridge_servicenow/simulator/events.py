"""The usm-bridge business rule, run as an instance runs it: after a record of a synced
table is inserted or updated (a comment or work note is an update of its record), an
outbound REST message posts a signed hint to each registered target.

This is what ``docs/servicenow-events-update-set.xml`` installs on a real instance, written
again here from its description (not from the bridge's receiver), so that the tests over
loopback check one against the other:

* body: ``{"table", "sys_id", "sys_mod_count", "sys_updated_on"}`` as ``JSON.stringify``
  writes it (no spaces); which record changed and when, never its data;
* ``X-USM-Bridge-Signature: sha256=<base64>``: ``GlideCertificateEncryption.generateMac``
  of the body with ``HmacSHA256``, keyed with the shared secret;
* ``X-USM-Bridge-Delivery: <sys_id>:<sys_mod_count>``.

Deliveries leave from one background thread, in order, after the change that fired them
(:class:`~usm_bridge.delivery_outbox.Outbox`), so a slow or dead receiver never holds up the
Table API; a delivery that fails is logged and recorded, never retried (the rule does not
retry either: the bridge's poll is the net). :attr:`BusinessRuleEvents.dropping` loses every
delivery, as a network that drops them would.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from usm_bridge.delivery_outbox import Outbox, post

__all__ = [
    "BODY_FIELDS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "SYNCED_TABLES",
    "BusinessRuleEvents",
    "EventDelivery",
    "EventTarget",
]

logger = logging.getLogger(__name__)

BODY_FIELDS = ("table", "sys_id", "sys_mod_count", "sys_updated_on")
SIGNATURE_HEADER = "X-USM-Bridge-Signature"
DELIVERY_HEADER = "X-USM-Bridge-Delivery"
#: The tables the rule watches unless a target names others (``usm_bridge.events.tables``).
SYNCED_TABLES = ("incident", "sc_request", "sc_req_item", "change_request", "problem")

#: Seconds a delivery may take before it counts as failed (the rule's ``setHttpTimeout``).
_TIMEOUT = 5.0


@dataclass(frozen=True)
class EventTarget:
    """One endpoint the rule posts to, with its shared secret and the tables it watches."""

    id: int
    url: str
    secret: str
    tables: frozenset[str]
    name: str = ""


@dataclass(frozen=True)
class EventDelivery:
    """One delivery attempt: ``status`` ``None`` when dropped or when it could not connect
    (``error`` says why)."""

    target: int
    table: str
    delivery: str
    status: int | None
    error: str | None = None


class BusinessRuleEvents:
    def __init__(self) -> None:
        self.targets: list[EventTarget] = []
        #: Every delivery made, failed or dropped, in order.
        self.deliveries: list[EventDelivery] = []
        #: When set, deliveries are recorded as dropped and never sent.
        self.dropping = False
        self._ids = itertools.count(1)
        self._outbox = Outbox("snow-sim-events")
        self._lock = threading.Lock()

    def register(
        self, url: str, *, secret: str, tables: Iterable[str] = SYNCED_TABLES, name: str = ""
    ) -> EventTarget:
        """Post the events of ``tables`` to ``url`` from now on, signed with ``secret`` (what
        an admin does by setting the rule's system properties)."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an event endpoint is http:// or https://, not {url!r}")
        if not secret:
            raise ValueError("the rule signs every event: a secret is needed")
        with self._lock:
            target = EventTarget(next(self._ids), url, secret, frozenset(tables), name)
            self.targets.append(target)
        self._outbox.start()
        return target

    def unregister(self, target: EventTarget) -> None:
        with self._lock:
            self.targets = [t for t in self.targets if t.id != target.id]

    def fire(self, table: str, record: Mapping[str, str]) -> None:
        """The rule, after ``record`` of ``table`` was inserted or updated: queue its event
        for every target watching ``table``. Cheap when nobody listens."""
        targets = [t for t in self.targets if table in t.tables]
        if not targets or not self._outbox.running:  # nobody listens, or the instance stopped
            return
        values = {
            "table": table,
            "sys_id": record["sys_id"],
            "sys_mod_count": record.get("sys_mod_count", "0"),
            "sys_updated_on": record.get("sys_updated_on", ""),
        }
        raw = json.dumps({k: values[k] for k in BODY_FIELDS}, separators=(",", ":")).encode()
        delivery = f"{values['sys_id']}:{values['sys_mod_count']}"
        for target in targets:
            self._outbox.put(functools.partial(self._deliver, target, table, delivery, raw))

    def wait_sent(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery was made; whether they all were in time."""
        return self._outbox.wait_sent(timeout)

    def close(self) -> None:
        """Stop the delivery thread once the queued deliveries are made (or failed)."""
        self._outbox.close(_TIMEOUT * 2)

    def _deliver(self, target: EventTarget, table: str, delivery: str, raw: bytes) -> None:
        if self.dropping:
            self.deliveries.append(EventDelivery(target.id, table, delivery, None, "dropped"))
            return
        mac = hmac.new(target.secret.encode(), raw, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            SIGNATURE_HEADER: "sha256=" + base64.b64encode(mac).decode(),
            DELIVERY_HEADER: delivery,
        }
        status, error = post(target.url, raw, headers, _TIMEOUT)
        self.deliveries.append(EventDelivery(target.id, table, delivery, status, error))
        if status is None or not 200 <= status < 300:
            # As the rule's gs.warn: the instance's log, never the secret nor the body.
            logger.warning("event %s to %s failed: %s", delivery, target.url,
                           error or f"answered {status}")  # fmt: skip
