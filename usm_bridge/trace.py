"""``usm-bridge trace REF``: one call across the chain, from the store alone.

A reference is a tool's key (``IT-1``, ``RITM0010001``, ``HR-1``), a tool's record id (a mail's
Message-ID, with or without its angle brackets) or a canonical call id. The trace walks the
chain up to its first customer and down to every supplier, and for each call gathers its tool
records, what every configured route decides for it (through the router's own
:meth:`~usm_bridge.sync.router.Router.route_verdicts`, so the reason shown is the reason the
router acts on), its outbox items and its dead letters; the audit events of all of them are
merged in time order. It only reads: no tool is asked, and the store's schema is left as it is.

The JSON form (:meth:`Trace.as_json`) is documented in README.md, "Tracing a call".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from .config import BridgeConfig
from .errors import ConfigurationError, UsmBridgeError
from .model import Call
from .store import (
    AuditEvent,
    DeadLetter,
    Identity,
    OutboxItem,
    OutboxStatus,
    Store,
    Transaction,
)
from .store.upgrades import SchemaState
from .sync.route_decision import Blocker, RouteVerdict
from .sync.router import Router

__all__ = [
    "AmbiguousReferenceError",
    "Candidate",
    "Trace",
    "UnknownReferenceError",
    "collect_trace",
    "find_candidates",
    "trace_reference",
]

#: How an outbox item's state is told to people: a write is pending, was sent, or failed for
#: good (it then has a dead letter).
OUTBOX_STATES = {
    OutboxStatus.PENDING: "pending",
    OutboxStatus.DONE: "sent",
    OutboxStatus.DEAD: "failed",
}
#: What the JSON form keeps of an outbox item (its payload may hold a comment's text), of a
#: dead letter (its payload is in ``dead-letters list --json``) and of a tool record.
_OUTBOX_FIELDS = {"id", "target_instance", "operation", "attempts", "last_error", "created_at",
                  "updated_at"}  # fmt: skip
_LETTER_FIELDS = {"id", "instance", "stage", "status", "attempts", "reason", "resolution",
                  "created_at", "last_seen"}  # fmt: skip
_RECORD_FIELDS = {"instance", "remote_id", "remote_key", "url"}
_CALL_FIELDS = {"unit", "call_type", "process", "status", "waiting_on", "waiting_process", "title"}


#: A chain longer than this is a corrupt store, not a chain: the walk stops there.
_MAX_CHAIN = 1000


class UnknownReferenceError(UsmBridgeError):
    """No call has this reference (exit 1: the bridge cannot find what was asked for)."""


@dataclass(frozen=True)
class Candidate:
    """A call a reference may mean."""

    call_id: str
    unit: str
    instance: str | None
    reference: str

    def describe(self) -> str:
        where = f" at {self.instance}" if self.instance else ""
        return f"{self.reference}{where} (unit {self.unit}, call {self.call_id})"


class AmbiguousReferenceError(ConfigurationError):
    """The reference names calls in several instances (exit 2: say which with --instance)."""

    def __init__(self, reference: str, candidates: Sequence[Candidate]) -> None:
        self.candidates = list(candidates)
        listed = "; ".join(candidate.describe() for candidate in self.candidates)
        super().__init__(
            f"{reference!r} names {len(self.candidates)} calls: {listed}. "
            "Give --instance NAME to choose one"
        )


@dataclass(frozen=True)
class RouteLine:
    """One configured route, evaluated for one call of the chain."""

    route: str
    from_unit: str
    to_unit: str
    verdict: RouteVerdict
    #: The supplier call this route opened for the call, if it did.
    supplier_call_id: str | None

    @property
    def outcome(self) -> str:
        """``fired`` (it opened a supplier call), ``would fire`` (it would, on the call's next
        routing) or ``not fired``."""
        if self.supplier_call_id is not None:
            return "fired"
        return "would fire" if self.verdict.opens else "not fired"

    def as_json(self) -> dict[str, JsonValue]:
        verdict = self.verdict
        blocker = verdict.blocker.value if verdict.blocker else None
        conditions: list[JsonValue] = [asdict(check) for check in verdict.conditions]
        return {"route": self.route, "from": self.from_unit, "to": self.to_unit,
                "outcome": self.outcome, "blocker": blocker, "reason": verdict.reason,
                "supplier_call_id": self.supplier_call_id, "conditions": conditions}  # fmt: skip


@dataclass(frozen=True)
class TracedCall:
    """One call of the chain with everything the store knows about it."""

    call: Call
    #: How far down the chain it is (0: the first customer).
    depth: int
    #: The route that opened it (``None`` for the first customer).
    via_route: str | None
    #: The instance whose tool holds it (``None`` while its create is still to be pushed).
    instance: str | None
    records: tuple[Identity, ...]
    routes: tuple[RouteLine, ...]
    outbox: tuple[OutboxItem, ...]
    dead_letters: tuple[DeadLetter, ...]

    @property
    def own_record(self) -> Identity | None:
        return next((r for r in self.records if r.instance == self.instance), None)

    @property
    def reference(self) -> str:
        """The tool's key for the call (``IT-1``), else its record id, else its call id."""
        source = self.call.source
        if source is not None:
            return source.remote_key or source.remote_id
        record = self.own_record
        if record is not None:
            return record.remote_key or record.remote_id
        return self.call.id

    @property
    def url(self) -> str | None:
        record = self.own_record
        if record is not None and record.url:
            return record.url
        return self.call.source.url if self.call.source else None

    def as_json(self) -> dict[str, JsonValue]:
        call = self.call
        # The call's own fields as its JSON form has them; what the chain adds around them.
        own: dict[str, JsonValue] = call.model_dump(mode="json", include=_CALL_FIELDS)
        return {
            "call_id": call.id, "depth": self.depth, **own, "instance": self.instance,
            "reference": self.reference, "url": self.url, "via_route": self.via_route,
            "upstream_call_id": call.chain.upstream,
            "forks": [fork.model_dump(mode="json") for fork in call.chain.forks],
            "records": [r.model_dump(mode="json", include=_RECORD_FIELDS) for r in self.records],
            "routes": [line.as_json() for line in self.routes],
            "outbox": [_outbox_json(item) for item in self.outbox],
            "dead_letters": [_letter_json(letter) for letter in self.dead_letters],
        }  # fmt: skip


@dataclass(frozen=True)
class TraceEvent:
    """An audit event of one of the chain's calls, with that call's unit and reference."""

    event: AuditEvent
    unit: str
    reference: str

    def as_json(self) -> dict[str, JsonValue]:
        event = self.event
        return {
            "id": event.id,
            "at": _iso(event.at),
            "call_id": event.call_id,
            "unit": self.unit,
            "instance": event.instance,
            "reference": self.reference,
            "kind": event.kind,
            "actor": event.actor,
            "before": event.before,
            "after": event.after,
            "detail": event.detail,
        }


@dataclass(frozen=True)
class Trace:
    """What ``usm-bridge trace`` shows: the traced call's chain and the events of its calls."""

    reference: str
    call_id: str
    calls: tuple[TracedCall, ...]
    events: tuple[TraceEvent, ...]

    def as_json(self) -> dict[str, JsonValue]:
        return {
            "reference": self.reference,
            "call_id": self.call_id,
            "chain": [traced.as_json() for traced in self.calls],
            "audit": [event.as_json() for event in self.events],
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _outbox_json(item: OutboxItem) -> dict[str, JsonValue]:
    dumped: dict[str, JsonValue] = item.model_dump(mode="json", include=_OUTBOX_FIELDS)
    return {**dumped, "state": OUTBOX_STATES[item.status]}


def _letter_json(letter: DeadLetter) -> dict[str, JsonValue]:
    dumped: dict[str, JsonValue] = letter.model_dump(mode="json", include=_LETTER_FIELDS)
    return dumped


# -- finding the call ---------------------------------------------------------------------------


def _spellings(reference: str) -> list[str]:
    """A Message-ID is stored with its angle brackets; people often copy it without."""
    bare = reference.strip()
    if bare.startswith("<") and bare.endswith(">"):
        return [bare, bare[1:-1]]
    return [bare, f"<{bare}>"] if "@" in bare else [bare]


def find_candidates(
    tx: Transaction, reference: str, *, instance: str | None = None
) -> list[Candidate]:
    """The calls ``reference`` may mean (in ``instance`` only, when given), one per call."""
    stored = tx.get_call(reference.strip())
    if stored is not None:
        source = stored.call.source
        return [
            Candidate(
                stored.id,
                stored.call.unit,
                source.instance if source else None,
                (source.remote_key or source.remote_id) if source else stored.id,
            )
        ]
    found: dict[str, Candidate] = {}
    for spelling in _spellings(reference):
        for identity in tx.find_identities_by_reference(spelling):
            if instance is not None and identity.instance != instance:
                continue
            call = tx.get_call(identity.call_id)
            if call is None or identity.call_id in found:
                continue
            found[identity.call_id] = Candidate(
                identity.call_id,
                call.call.unit,
                identity.instance,
                identity.remote_key or identity.remote_id,
            )
    return list(found.values())


def _resolve(tx: Transaction, reference: str, instance: str | None) -> str:
    candidates = find_candidates(tx, reference, instance=instance)
    if not candidates:
        where = f" in instance {instance!r}" if instance else ""
        raise UnknownReferenceError(
            f"no call has the reference {reference!r}{where}: give a tool's key (IT-1), a "
            "record's id (a Message-ID) or a call id, as 'usm-bridge trace' documents"
        )
    if len(candidates) > 1:
        raise AmbiguousReferenceError(reference, candidates)
    return candidates[0].call_id


# -- walking the chain --------------------------------------------------------------------------


def _first_customer(tx: Transaction, call_id: str) -> str:
    seen = {call_id}
    link = tx.upstream_of(call_id)
    while link is not None and len(seen) < _MAX_CHAIN:
        call_id = link.upstream_call_id
        if call_id in seen:
            break  # a loop of links: the store is damaged; show what there is
        seen.add(call_id)
        link = tx.upstream_of(call_id)
    return call_id


def _chain(tx: Transaction, call_id: str) -> list[tuple[str, int, str | None]]:
    """Every call of the chain ``call_id`` is in, depth first from its first customer: each
    with its depth and the route that opened it."""
    order: list[tuple[str, int, str | None]] = []
    seen: set[str] = set()
    stack: list[tuple[str, int, str | None]] = [(_first_customer(tx, call_id), 0, None)]
    while stack and len(order) < _MAX_CHAIN:
        current, depth, route = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        order.append((current, depth, route))
        links = tx.suppliers_of(current)
        stack.extend((link.supplier_call_id, depth + 1, link.route) for link in reversed(links))
    return order


def _traced_call(
    tx: Transaction, router: Router, call_id: str, depth: int, via_route: str | None
) -> TracedCall:
    stored = tx.get_call(call_id)
    assert stored is not None, call_id  # a chain link always names a stored call
    call = stored.call
    records = tuple(tx.identities_of(call_id))
    opened = {link.route: link.supplier_call_id for link in tx.suppliers_of(call_id)}
    routes = tuple(
        RouteLine(
            route.name,
            route.from_unit,
            verdict.supplier_unit or route.to_unit,
            verdict,
            opened.get(route.name) if verdict.blocker is Blocker.SUPPLIER_EXISTS else None,
        )
        for route, verdict in router.route_verdicts(tx, call)
    )
    outbox = tuple(tx.list_outbox(call_id=call_id))
    letters = tx.dead_letters_about(
        call_ids=[call_id],
        records=[(record.instance, record.remote_id) for record in records],
        outbox_ids=[item.id for item in outbox],
    )
    return TracedCall(
        call=call,
        depth=depth,
        via_route=via_route,
        instance=router.home_instance(tx, call),
        records=records,
        routes=routes,
        outbox=outbox,
        dead_letters=tuple(letters),
    )


def collect_trace(
    config: BridgeConfig, tx: Transaction, reference: str, *, instance: str | None = None
) -> Trace:
    """The trace of the call ``reference`` names (see the module docstring).

    :raises UnknownReferenceError: no call has that reference.
    :raises AmbiguousReferenceError: several do (narrow with ``instance``).
    """
    if instance is not None and instance not in config.instances:
        known = ", ".join(sorted(config.instances)) or "none"
        raise ConfigurationError(f"--instance {instance!r} is not in the config (known: {known})")
    call_id = _resolve(tx, reference, instance)
    router = Router(config)
    calls = tuple(
        _traced_call(tx, router, member, depth, route)
        for member, depth, route in _chain(tx, call_id)
    )
    events: list[tuple[Any, TraceEvent]] = []
    for traced in calls:
        for event in tx.list_audit(call_id=traced.call.id):
            events.append(
                ((event.at, event.id), TraceEvent(event, traced.call.unit, traced.reference))
            )
    events.sort(key=lambda pair: pair[0])
    return Trace(reference, call_id, calls, tuple(event for _, event in events))


def trace_reference(config: BridgeConfig, reference: str, *, instance: str | None = None) -> Trace:
    """Open the configured store without changing its schema and trace ``reference``.

    :raises StoreSchemaError: the store's schema is older or newer than the code's (the same
        refusal as ``status``; nothing is migrated).
    """
    from .store import SchemaPolicy
    from .store.revision import read_store_revision

    # Read first without opening: a SQLite store no sync has made is not created by a trace.
    revision = read_store_revision(config.store.url)
    if revision.state is SchemaState.EMPTY:
        raise UnknownReferenceError(
            f"no call has the reference {reference!r}: the store at {revision.url} "
            "holds no calls yet (no sync has run)"
        )
    refusal = revision.status.refusal(revision.url)
    if refusal is not None:
        raise refusal
    with (
        Store.open(config.store.url, schema=SchemaPolicy.INSPECT) as store,
        store.begin(readonly=True) as tx,
    ):
        return collect_trace(config, tx, reference, instance=instance)
