"""Whether a customer's call has accepted its supplier's work (USM.md, "the chain").

Each chain link is a customer-provider pair: the upstream call is the customer's, the supplier
call the provider's. Once the supplier call is *delivered* (``fulfilled``, or ``closed`` by a
tool whose workflow ends there at once, such as ServiceNow's requested item), the customer
accepts it:

- **explicitly** when the customer unit moves its own call on to ``fulfilled``, ``confirmed``
  or ``closed``: it delivered to its own customer using the supplier's work;
- **implicitly** when its call resumed (no longer waits on this supplier) and did not come
  back to it within the agreement's ``implicit_confirmation`` term. Without an agreement, or
  one that agrees no such term, silence accepts nothing: only an explicit acceptance counts.

A customer that *rejects* the work is not taken to accept it: a move of its call back to
waiting on its supplier made in its tool after the delivery (the router may resume the call
again at once, but the move is in the audit log), or a cancelled customer call. A supplier
call reopened in its tool is no longer delivered, so nothing is accepted until it is
delivered again, and the term then starts anew.

The history is read from the store's audit log (``call_updated`` events: the fields that
changed, before and after); "now" is the caller's clock, so a test moves time instead of
sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..durations import spell_span
from ..model import Call, Confirmation, ConfirmationKind, Person, Status, WaitingOn
from ..store import AuditEvent, Transaction
from .calls import DONE

__all__ = [
    "BRIDGE_ACTORS",
    "DELIVERED",
    "Acceptance",
    "acceptance_of",
    "delivered_at",
    "past",
    "rejected_since",
]

#: A supplier call whose work is done and awaits its customer's acceptance.
DELIVERED = frozenset({Status.FULFILLED, Status.CLOSED})
#: A customer call in one of these has delivered using its suppliers' work.
_MOVED_ON = frozenset({Status.FULFILLED, Status.CONFIRMED, Status.CLOSED})
#: Audit actors that are the bridge itself: its moves are no word of the customer's.
BRIDGE_ACTORS = frozenset({"router", "closure"})


@dataclass(frozen=True)
class Acceptance:
    """A customer's acceptance of a delivered supplier call, and its evidence."""

    kind: ConfirmationKind
    #: The customer unit's agent, when known (never for an implicit acceptance).
    by: Person | None
    #: In words, for the report and the audit log.
    how: str

    def confirmation(self, at: datetime) -> Confirmation:
        return Confirmation(kind=self.kind, by=self.by, at=at, how=self.how[:300])


#: The lifecycle's end, in order: a call confirmed or closed has passed fulfilled.
_ENDING = (Status.FULFILLED, Status.CONFIRMED, Status.CLOSED)


def past(status: Status, other: Status) -> bool:
    """Whether a call in ``status`` is past ``other`` on the lifecycle's end. The router asks
    it for a customer owning its supplier's status: the customer's fulfilment accepted the
    supplier's work, which the closure then confirmed and closed; that same fulfilment must not
    take the supplier back to fulfilled."""
    return status in _ENDING and other in _ENDING and _ENDING.index(status) > _ENDING.index(other)


def _status_moves(tx: Transaction, call_id: str) -> list[AuditEvent]:
    """The call's audit events that changed its status or what it waits on, oldest first."""
    moves = []
    for event in tx.list_audit(call_id=call_id):
        if event.kind not in ("call_created", "call_updated"):
            continue
        after = event.after if isinstance(event.after, dict) else {}
        if "status" in after or "waiting_on" in after:
            moves.append(event)
    return moves


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def delivered_at(tx: Transaction, supplier: Call) -> datetime:
    """When the supplier call was last delivered: its last move into ``fulfilled`` or
    ``closed`` from a state before them (a close after fulfilment keeps the fulfilment's time).
    The call's own ``fulfilled`` time, else its ``updated``, when the log holds no such move."""
    found: datetime | None = None
    for event in _status_moves(tx, supplier.id):
        after, before = _field(event.after, "status"), _field(event.before, "status")
        delivered = {s.value for s in DELIVERED}
        if after in delivered and before not in delivered | {Status.CONFIRMED.value}:
            found = event.at
    return found or supplier.fulfilled or supplier.updated


def rejected_since(moves: list[AuditEvent], since: datetime) -> bool:
    """Whether the customer's call (``moves``: its :func:`_status_moves`) was moved back to
    waiting on a supplier, in its own tool (not by the bridge), at or after ``since``."""
    return any(
        event.at >= since
        and event.actor not in BRIDGE_ACTORS
        and _field(event.after, "waiting_on") == WaitingOn.SUPPLIER.value
        for event in moves
    )


def _resumed_at(moves: list[AuditEvent]) -> datetime | None:
    """When the customer's call (``moves``: its :func:`_status_moves`) last stopped waiting on
    a supplier."""
    found = None
    for event in moves:
        if (
            _field(event.before, "waiting_on") == WaitingOn.SUPPLIER.value
            and _field(event.after, "waiting_on") != WaitingOn.SUPPLIER.value
        ):
            found = event.at
    return found


def _waits_on(tx: Transaction, upstream: Call, supplier: Call) -> bool:
    """Whether the customer's call still waits on this supplier: it waits on a supplier and no
    other of its suppliers is open (then it waits on that one, not on this)."""
    if upstream.status is not Status.WAITING or upstream.waiting_on is not WaitingOn.SUPPLIER:
        return False
    for link in tx.suppliers_of(upstream.id):
        if link.supplier_call_id == supplier.id:
            continue
        other = tx.get_call(link.supplier_call_id)
        if other is not None and other.call.status not in DONE:
            return False
    return True


def acceptance_of(
    tx: Transaction,
    supplier: Call,
    upstream: Call,
    *,
    term: timedelta | None,
    now: datetime,
    customer_label: str,
) -> Acceptance | None:
    """How ``upstream`` (the customer's call) accepted the delivered ``supplier`` call, or
    ``None`` while it has not (see the module docstring).

    :param term: the agreement's implicit confirmation term (``None``: none agreed).
    :param customer_label: how to name the customer's call in the evidence (its tool's key).
    """
    if supplier.status not in DELIVERED or supplier.confirmation is not None:
        return None
    if upstream.status is Status.CANCELLED:
        return None
    since = delivered_at(tx, supplier)
    if upstream.status in _MOVED_ON:
        return Acceptance(
            kind=ConfirmationKind.EXPLICIT,
            by=upstream.assignee,
            how=f"the customer call {customer_label} ({upstream.unit}) moved on to "
            f"{upstream.status.value} using this work",
        )
    if term is None or _waits_on(tx, upstream, supplier):
        return None
    # Read once: both questions below are about the customer's status moves.
    moves = _status_moves(tx, upstream.id)
    if rejected_since(moves, since):
        return None
    start = max(since, _resumed_at(moves) or since)
    if now - start < term:
        return None
    return Acceptance(
        kind=ConfirmationKind.IMPLICIT,
        by=None,
        how=f"the customer call {customer_label} ({upstream.unit}) resumed at "
        f"{start:%Y-%m-%d %H:%M} UTC and did not come back to this work within the agreed "
        f"{spell_span(term)}",
    )
