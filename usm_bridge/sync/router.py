"""The chain between units: open supplier calls, carry status and comments along links.

The router works on canonical calls in the store, inside the unit of work that stored the
change, and asks for remote writes only through the outbox (in that same transaction), so a
crash never leaves a decided write unrecorded. Pushing happens later (:mod:`.outbox`), from the
*current* canonical call: several decisions about one call coalesce into one write.

Rules (USM.md, "the chain"):

- a new or changed call at a route's ``from`` unit that meets ``when`` (a value must equal the
  call's, a list must contain it) and has no supplier for that route yet gets a supplier call
  at ``to`` (``to = "by-service"``: at the provider of the call's service,
  :mod:`usm_bridge.service_routes`), made under the pair's agreement, with the priority its
  matrix gives; the upstream call then waits on its supplier;
- the upstream waits while any supplier is open; when none is (all fulfilled, confirmed,
  closed or cancelled) it resumes; a cancelled supplier also leaves an internal note on it;
- a cancelled upstream cancels its open suppliers;
- fields a link shares follow their owner (:data:`usm_bridge.config.DEFAULT_OWNERS`, per route
  ``owners``): request fields owned by the customer are copied to the supplier call, those a
  route gives to the supplier are copied up (a registered service or agreement only where it
  is both units', :meth:`~usm_bridge.agreements.Agreements.holds_at`); work fields
  (assignee, fulfilled, closed) stay the supplier's own unless a route gives them to the
  customer. The status follows the suppliers
  (waiting, resuming) unless a route gives it to the customer: then the customer's status is
  its own and is copied to the supplier call (except while the customer waits), and the
  supplier's own status changes are reverted. Nothing is copied or reverted
  into a tool whose mapping cannot write the field. A write by the side that does not
  own a field is reverted to the owner's value and audited as a ``conflict``, but only when the
  owner has a value to restore: an empty owner's value (``None`` or ``""``) is never written, so
  the other side's value (a default its tool fills in, e.g. ServiceNow's impact "3 - Low") is
  kept on that side's own call and not copied over the owner's emptiness. A tool that keeps
  holding another value after a revert (one that normalises what it is given, e.g. trims it) is
  not reverted again: the field is audited once as ``unresolvable`` and left alone until either
  side's value changes, so a revert can never loop;
- public comments travel one link both ways, and on over the next link only where that link's
  route has ``relay_comments``; the bridge's own copies (``comment_links``, known by the tool's
  id of what the bridge wrote, never by their words) are never copied again, which is what
  stops comment echo loops. Each copy starts with a line naming the original author and unit
  (:mod:`.attribution`);
- files (attachments) travel the whole chain both ways: a call's travelling files are put on
  every linked call that lacks one of that identity (SHA-256 and name), naming the copy they
  can be read from, and written into each call's tool with it (:mod:`.attachment_push`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import JsonValue

from ..agreements import Agreements
from ..config import BridgeConfig, RouteConfig
from ..model import Attachment, Call, ChainLinks, Comment, Status, WaitingOn, utcnow
from ..ownership import REQUEST_FIELDS
from ..service_routes import SupplierChoice, choose_supplier
from ..store import OutboxOperation, OutboxStatus, Transaction
from ..store.page_transaction import open_call
from .acceptance import past
from .attribution import attributed
from .call_files import all_attachments
from .call_labels import call_label
from .calls import DONE, with_changes
from .route_decision import RouteVerdict, check_conditions, decide_route

__all__ = [
    "AUDITS_READ",
    "REQUEST_FIELDS",
    "WORK_FIELDS",
    "RouteOutcome",
    "Router",
    "matches",
]

log = logging.getLogger(__name__)

#: The kinds of audit events the router reads back (a page's unit of work reads them up front).
AUDITS_READ = ("conflict", "unresolvable")
#: The supplier's own work: never copied up (an HR call gets no Facilities assignee).
WORK_FIELDS = ("assignee", "fulfilled", "closed")
_WAITABLE = (Status.REGISTERED, Status.CLASSIFIED, Status.IN_PROGRESS)
Side = Literal["customer", "supplier"]
#: Canonical fields a target instance's mapping can write (``None``: assume all).
Writable = Callable[[str], frozenset[str] | None]


@dataclass
class RouteOutcome:
    """What routing one call asked for."""

    enqueued: int = 0
    comments: int = 0
    conflicts: int = 0
    targets: set[str] = field(default_factory=set)


def matches(when: dict[str, JsonValue], call: Call) -> bool:
    """All conditions hold (see :func:`.route_decision.check_conditions`, which says why)."""
    return all(check.holds for check in check_conditions(when, call))


def _dump(value: Any) -> JsonValue:
    if hasattr(value, "model_dump"):
        dumped: JsonValue = value.model_dump(mode="json")
        return dumped
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if hasattr(value, "value"):
        return str(value.value)
    return value  # type: ignore[no-any-return]


def _audit_field(
    tx: Transaction, event: str, call: Call, name: str, *, before: Any, after: Any,
    **detail: JsonValue,
) -> None:  # fmt: skip
    """An audit event of the router about one field of ``call`` (a conflict, an unresolvable
    value): the field's value before and after, and what the rule says in ``detail``."""
    tx.append_audit(
        event,
        call_id=call.id,
        instance=call.source.instance if call.source else None,
        actor="router",
        before={name: _dump(before)},
        after={name: _dump(after)},
        detail={"field": name, "process": _dump(call.process), **detail},
    )


def _imposed_status(customer: Call) -> tuple[Status, WaitingOn | None] | None:
    """The status a supplier call takes from a customer that owns the status on their route;
    ``None`` while the customer waits (on its supplier, its own customer or another process):
    a pause in the customer's handling, not a state of the supplier's work to copy down (and
    one many tools could not even be written, ServiceNow's requested items among them)."""
    if customer.status is Status.WAITING:
        return None
    return customer.status, None


def _can_write(writable: frozenset[str] | None, name: str) -> bool:
    """Whether a tool whose mapping writes ``writable`` (``None``: unknown, assume all) can be
    given ``name``: a copy or a revert its mapping cannot write would never reach it."""
    return writable is None or name in writable


def _empty(value: Any) -> bool:
    """No value to restore or to write (empty values are never written into a tool)."""
    return value is None or value == ""


class Router:
    """Routes a stored call along the configured routes (see the module docstring)."""

    def __init__(self, config: BridgeConfig, *, writable: Writable | None = None) -> None:
        self.config = config
        self._routes = {route.name: route for route in config.routes}
        self._writable = writable
        #: The registered services and agreements: which unit a by-service route chooses,
        #: which matrix gives a supplier call its priority.
        self.agreements = Agreements.of(config)

    # -- entry point --------------------------------------------------------------------------

    def route(
        self, tx: Transaction, call_id: str, *, previous: Call | None, echo: bool = False
    ) -> RouteOutcome:
        """Route the stored call ``call_id`` after a change read from its tool.

        :param previous: the call as stored before this read (``None`` when new), to tell a
            write made in this read from an older difference.
        :param echo: the read was the bridge's own write coming back: only comments (which
            the echo check does not see) are routed.
        """
        out = RouteOutcome()
        if not echo:
            link = tx.upstream_of(call_id)
            if link is not None:
                # First, so that a write its customer owns never travels on down the chain.
                self._revert_as_supplier(
                    tx, call_id, previous, link.upstream_call_id, link.route, out
                )
            call = self._get(tx, call_id)
            if call.status is Status.CANCELLED:
                self._cancel_suppliers(tx, call, out)
            else:
                self._open_suppliers(tx, call, out)
            self._as_upstream(tx, call_id, previous, out)
            if link is not None:
                self._as_supplier(tx, call_id, previous, link.upstream_call_id, link.route, out)
        self._comments(tx, self._get(tx, call_id), out)
        self._files(tx, self._get(tx, call_id), out)
        return out

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _get(tx: Transaction, call_id: str) -> Call:
        stored = tx.get_call(call_id)
        assert stored is not None, call_id
        return stored.call

    def _route(self, name: str) -> RouteConfig | None:
        return self._routes.get(name)

    @staticmethod
    def _owner(route: RouteConfig | None, name: str) -> Side:
        if route is None:
            from ..config import DEFAULT_OWNERS

            return DEFAULT_OWNERS[name]
        return route.owner_of(name)

    def target_of(self, route: RouteConfig) -> str:
        """The instance that receives the route's supplier calls (the config checked it)."""
        if route.target is not None:
            return route.target
        return self.config.instances_of(route.to_unit)[0].name

    def home_instance(self, tx: Transaction, call: Call) -> str | None:
        """The instance whose tool holds the call (or will, once its create is pushed)."""
        if call.source is not None:
            return call.source.instance
        for identity in tx.identities_of(call.id):
            inst = self.config.instances.get(identity.instance)
            if inst is not None and inst.unit == call.unit:
                return identity.instance
        for item in tx.list_outbox(call_id=call.id):
            if item.operation is OutboxOperation.CREATE:
                return item.target_instance
        return None

    def _writable_at(self, tx: Transaction, call: Call) -> frozenset[str] | None:
        if self._writable is None:
            return None
        home = self.home_instance(tx, call)
        return None if home is None else self._writable(home)

    def save(
        self, tx: Transaction, call: Call, out: RouteOutcome, *, actor: str = "router"
    ) -> None:
        """Store the router's change and ask for it to be written into the call's tool."""
        result = tx.upsert_call(call, actor=actor)
        if not result.changed:
            return
        home = self.home_instance(tx, call)
        if home is None:
            log.warning("call %s has no tool to write to; kept in the store only",
                        call_label(tx, call.id))  # fmt: skip
            return
        # The key names the version: a later change is a new write, a repeat is none.
        key = f"{call.id}:{home}:update:v{result.new_version}"
        if tx.enqueue(
            home, call.id, OutboxOperation.UPDATE, {"version": result.new_version}, key
        ).created:
            out.enqueued += 1
        out.targets.add(home)

    def _conflict(
        self,
        tx: Transaction,
        call: Call,
        name: str,
        *,
        owner: Side,
        route: RouteConfig | None,
        written: Any,
        owners_value: Any,
        other: Call,
        out: RouteOutcome,
    ) -> None:
        rule = f"{name} is owned by the {owner}" + (
            f" on route {route.name!r}" if route is not None else ""
        )
        _audit_field(
            tx, "conflict", call, name, before=written, after=owners_value,
            rule=rule, owner=owner, owner_call_id=other.id, reverted=_dump(written),
            kept=_dump(owners_value), resolution="reverted",
        )  # fmt: skip
        out.conflicts += 1

    @staticmethod
    def _unresolvable(tx: Transaction, call: Call, name: str, *, held: Any, kept: Any) -> bool:
        """``call``'s tool was found not to take ``kept`` for ``name`` and holds ``held``.

        Recorded by :meth:`_gives_up`; it holds until either value changes.
        """
        events = [
            event
            for event in tx.list_audit(call_id=call.id, kind="unresolvable")
            if isinstance(event.detail, dict) and event.detail.get("field") == name
        ]
        if not events:
            return False
        detail = events[-1].detail
        assert isinstance(detail, dict)
        return detail.get("kept") == _dump(kept) and detail.get("held") == _dump(held)

    def _gives_up(
        self,
        tx: Transaction,
        call: Call,
        name: str,
        held: Any,
        kept: Any,
        previous: Call | None,
        *,
        owner: Side,
    ) -> bool:
        """Whether not to revert ``name`` of ``call`` (held by the non-owner) to ``kept``.

        True when it is known to be unresolvable, or becomes so now: the bridge's last decision
        for the field was ``kept`` (a revert to it was audited as a conflict, and the call's
        last write was pushed) and the tool still holds the very value that revert replaced.
        Then reverting again would only write on every cycle; the field is audited once as
        ``unresolvable`` instead.
        """
        if self._unresolvable(tx, call, name, held=held, kept=kept):
            return True
        if previous is None or getattr(previous, name) != kept:
            return False
        conflicts = [
            event
            for event in tx.list_audit(call_id=call.id, kind="conflict")
            if isinstance(event.detail, dict) and event.detail.get("field") == name
        ]
        if not conflicts:
            return False
        last = conflicts[-1].detail
        assert isinstance(last, dict)
        if last.get("kept") != _dump(kept) or last.get("reverted") != _dump(held):
            return False
        writes = [
            item
            for item in tx.list_outbox(call_id=call.id)
            if item.operation in (OutboxOperation.CREATE, OutboxOperation.UPDATE)
        ]
        if not writes or writes[-1].status is not OutboxStatus.DONE:
            return False  # the revert has not reached the tool (yet): nothing to judge by
        _audit_field(
            tx, "unresolvable", call, name, before=kept, after=held,
            owner=owner, kept=_dump(kept), held=_dump(held),
            reason=f"the tool keeps {name} as {_dump(held)!r} after a revert to "
            f"{_dump(kept)!r}; not reverted again",
        )  # fmt: skip
        log.warning(
            "call %s: the tool does not take %s = %r (holds %r); left as it is",
            call_label(tx, call.id), name, kept, held,
        )  # fmt: skip
        return True

    # -- opening supplier calls ---------------------------------------------------------------

    def route_verdicts(self, tx: Transaction, call: Call) -> list[tuple[RouteConfig, RouteVerdict]]:
        """Each configured route with what it decides for ``call`` now: the decision
        :meth:`_open_suppliers` acts on, and the explanation ``usm-bridge trace`` shows."""
        have = {link.route for link in tx.suppliers_of(call.id)}
        chain_units = self._units_up(tx, call)
        return [
            (
                route,
                decide_route(
                    route, call, routes_with_supplier=have, chain_units=chain_units,
                    supplier=self._choose(route, call) if route.by_service else None,
                ),
            )
            for route in self.config.routes
        ]  # fmt: skip

    def _choose(self, route: RouteConfig, call: Call) -> SupplierChoice:
        return choose_supplier(
            route,
            call,
            self.agreements,
            lambda unit: [inst.name for inst in self.config.instances_of(unit)],
        )

    def _open_suppliers(self, tx: Transaction, call: Call, out: RouteOutcome) -> None:
        for route, verdict in self.route_verdicts(tx, call):
            if verdict.opens:
                self._open_one(tx, self._get(tx, call.id), route, verdict, out)

    def _units_up(self, tx: Transaction, call: Call) -> set[str]:
        units = {call.unit}
        link = tx.upstream_of(call.id)
        while link is not None and len(units) < 100:
            upstream = self._get(tx, link.upstream_call_id)
            units.add(upstream.unit)
            link = tx.upstream_of(upstream.id)
        return units

    def _open_one(
        self,
        tx: Transaction,
        upstream: Call,
        route: RouteConfig,
        verdict: RouteVerdict,
        out: RouteOutcome,
    ) -> None:
        now = utcnow()
        unit = verdict.supplier_unit or route.to_unit
        copied = {
            name: getattr(upstream, name)
            for name in (*REQUEST_FIELDS, *WORK_FIELDS)
            if self._owner(route, name) == "customer"
            and getattr(upstream, name) is not None
            and self.agreements.holds_at(name, getattr(upstream, name), unit)
        }
        copied.setdefault("title", upstream.title)
        copied.update(self._pair_terms(unit, upstream.unit, copied))
        # A customer owning the status gives it to the supplier call from the start.
        status_down = self._owner(route, "status") == "customer"
        imposed = _imposed_status(upstream) if status_down else None
        status, waiting_on = imposed or (Status.REGISTERED, None)
        supplier = Call.model_validate(
            {
                **copied,
                "unit": unit,
                # The party to the agreement is the customer *unit*; the person who called
                # stays the requester (copied above when the customer owns it).
                "customer_unit": upstream.unit,
                "call_type": route.supplier_call_type or upstream.call_type,
                "status": status,
                "waiting_on": waiting_on,
                "created": now,
                "updated": now,
                "chain": ChainLinks(upstream=upstream.id),
            }
        )
        supplier = with_changes(supplier, priority=self._supplier_priority(supplier))
        # Its id is fresh: a page's unit of work inserts it with the page's writes, unread.
        open_call(tx, supplier, actor="router")
        tx.link_chain(upstream.id, supplier.id, route.name)
        target = verdict.target or self.target_of(route)
        # The key is the correlation's basis too: a second decision to create is no new write.
        key = f"{supplier.id}:{target}:create"
        if tx.enqueue(
            target, supplier.id, OutboxOperation.CREATE, {"route": route.name}, key
        ).created:
            out.enqueued += 1
        out.targets.add(target)
        # The supplier call is new at its unit too: it may go on along the chain at once
        # (HR -> Facilities -> an outside supplier); its read-back will be an echo.
        self._open_suppliers(tx, supplier, out)
        changes: dict[str, Any] = {
            "chain": ChainLinks(
                upstream=upstream.chain.upstream,
                suppliers=[*upstream.chain.suppliers, supplier.id],
            )
        }
        if upstream.status in _WAITABLE and not status_down:
            changes.update(status=Status.WAITING, waiting_on=WaitingOn.SUPPLIER)
        self.save(tx, with_changes(upstream, **changes), out)
        log.info("route %s opened supplier call %s for %s", route.name,
                 call_label(tx, supplier.id), call_label(tx, upstream.id))  # fmt: skip

    def _supplier_priority(self, supplier: Call) -> str | None:
        """The supplier call's priority through the matrix of the supplier's agreement with
        its customer unit (else the supplier unit's, else the default): USM leaves the classes
        to each pair, and outside suppliers' contracts differ."""
        return self.agreements.matrix_for(supplier).derive(supplier.impact, supplier.urgency)

    def _pair_terms(self, unit: str, customer: str, copied: dict[str, Any]) -> dict[str, Any]:
        """The agreement (and service) a new supplier call at ``unit`` is made under, where
        the call brought none of the supplier's: USM's link raises the call under the
        customer-supplier pair's agreement; one covering a single service names it too."""
        service = copied.get("service")
        agreement = self.agreements.agreement_for(provider=unit, customer=customer, service=service)
        if agreement is None and service is None:
            # No service to tell them apart: the pair's only agreement, if it has one.
            pair = self.agreements.between(provider=unit, customer=customer)
            agreement = pair[0] if len(pair) == 1 else None
        if agreement is None:
            return {}
        terms: dict[str, Any] = {"agreement": copied.get("agreement") or agreement.id}
        if copied.get("service") is None and len(agreement.services) == 1:
            terms["service"] = agreement.services[0]
        return terms

    def _shared(self, name: str, upstream: Call, supplier: Call) -> bool:
        """Whether ``name`` travels along the link at all: a service or agreement only where
        it is one of both units' (see :meth:`~usm_bridge.agreements.Agreements.holds_at`)."""
        return all(
            self.agreements.holds_at(name, value, call.unit)
            for value in (getattr(upstream, name), getattr(supplier, name))
            if value is not None
            for call in (upstream, supplier)
        )

    def _cancel_suppliers(self, tx: Transaction, call: Call, out: RouteOutcome) -> None:
        for link in tx.suppliers_of(call.id):
            supplier = self._get(tx, link.supplier_call_id)
            if supplier.status in DONE:
                continue
            cancelled = with_changes(
                supplier, status=Status.CANCELLED, waiting_on=None, waiting_process=None
            )
            self.save(tx, cancelled, out)
            # Its read-back is an echo and is not routed: cancel down the chain now.
            self._cancel_suppliers(tx, cancelled, out)

    # -- the upstream side --------------------------------------------------------------------

    def _as_upstream(
        self, tx: Transaction, call_id: str, previous: Call | None, out: RouteOutcome
    ) -> None:
        links = tx.suppliers_of(call_id)
        if not links:
            return
        upstream = self._get(tx, call_id)
        writable_up = self._writable_at(tx, upstream)
        suppliers: list[Call] = []
        for link in links:
            route = self._route(link.route)
            supplier = self._get(tx, link.supplier_call_id)
            writable = self._writable_at(tx, supplier)
            down: dict[str, Any] = {}
            up: dict[str, Any] = {}
            for name in (*REQUEST_FIELDS, *WORK_FIELDS):
                mine, theirs = getattr(upstream, name), getattr(supplier, name)
                if mine == theirs or not self._shared(name, upstream, supplier):
                    continue
                if self._owner(route, name) == "customer":
                    if _empty(mine):
                        # Never written: the supplier's own value (a tool's default) stays.
                        continue
                    if self._unresolvable(tx, supplier, name, held=theirs, kept=mine):
                        continue
                    if writable is None or name in writable:
                        down[name] = mine
                elif name in REQUEST_FIELDS:
                    if _empty(theirs) or not _can_write(writable_up, name):
                        continue  # no value to restore, or no way to write it
                    if self._gives_up(tx, upstream, name, mine, theirs, previous, owner="supplier"):
                        continue
                    # The supplier owns it: the customer side's write is reverted.
                    up[name] = theirs
                    if previous is not None and getattr(previous, name) != mine:
                        self._conflict(
                            tx, upstream, name, owner="supplier", route=route, written=mine,
                            owners_value=theirs, other=supplier, out=out,
                        )  # fmt: skip
            down.update(self._status_down(tx, route, upstream, supplier, writable))
            if down and (supplier.status not in DONE or "status" in down):
                supplier = with_changes(supplier, **down)
                self.save(tx, supplier, out)
                # The supplier's read-back is an echo and is not routed: carry the request
                # on down the chain now.
                self._as_upstream(tx, supplier.id, None, out)
            if up:
                upstream = with_changes(upstream, **up)
            suppliers.append(supplier)
        upstream = self._status_from_suppliers(tx, upstream, suppliers, previous, out)
        self.save(tx, upstream, out)

    def _status_from_suppliers(
        self,
        tx: Transaction,
        upstream: Call,
        suppliers: list[Call],
        previous: Call | None,
        out: RouteOutcome,
    ) -> Call:
        links = {link.supplier_call_id: link.route for link in tx.suppliers_of(upstream.id)}
        # Only suppliers owning the status move the upstream's: where the customer owns it,
        # the upstream's status is its own (and is copied down instead).
        suppliers = [
            s
            for s in suppliers
            if s.id not in links or self._owner(self._route(links[s.id]), "status") == "supplier"
        ]
        if not suppliers:
            return upstream
        routes = [self._route(links[s.id]) for s in suppliers if s.id in links]
        open_ = any(s.status not in DONE for s in suppliers)
        waiting = upstream.status is Status.WAITING and upstream.waiting_on is WaitingOn.SUPPLIER
        if open_:
            was_waiting = (
                previous is not None
                and previous.status is Status.WAITING
                and previous.waiting_on is WaitingOn.SUPPLIER
            )
            moved = not waiting and upstream.status is not Status.CANCELLED
            if was_waiting and moved:
                # The customer side moved a call its supplier still works on: the supplier
                # owns the status, so the call goes back to waiting.
                self._conflict(
                    tx, upstream, "status", owner="supplier", route=routes[0] if routes else None,
                    written=upstream.status, owners_value=Status.WAITING,
                    other=next(s for s in suppliers if s.status not in DONE), out=out,
                )  # fmt: skip
                return with_changes(upstream, status=Status.WAITING, waiting_on=WaitingOn.SUPPLIER,
                                    waiting_process=None)  # fmt: skip
            if upstream.status in _WAITABLE:
                return with_changes(upstream, status=Status.WAITING, waiting_on=WaitingOn.SUPPLIER)
            return upstream
        if waiting:
            # "A fulfilled supplier call resumes the upstream one."
            return with_changes(upstream, status=Status.IN_PROGRESS, waiting_on=None)
        return upstream

    def _status_down(
        self,
        tx: Transaction,
        route: RouteConfig | None,
        upstream: Call,
        supplier: Call,
        writable: frozenset[str] | None,
    ) -> dict[str, Any]:
        """``status`` and ``waiting_on`` for ``supplier`` when its customer owns the status on
        ``route`` and they differ; empty otherwise (or when its tool cannot write the status,
        or was found not to take this one)."""
        if self._owner(route, "status") != "customer" or not _can_write(writable, "status"):
            return {}
        imposed = _imposed_status(upstream)
        if imposed is None or (supplier.status, supplier.waiting_on) == imposed:
            return {}
        if past(supplier.status, imposed[0]):
            return {}  # accepted and closed (closure.py): not taken back to fulfilled
        if self._unresolvable(tx, supplier, "status", held=supplier.status, kept=imposed[0]):
            return {}
        # An imposed status never waits, so no process is waited on either.
        return {"status": imposed[0], "waiting_on": imposed[1], "waiting_process": None}

    # -- the supplier side --------------------------------------------------------------------

    def _revert_as_supplier(
        self,
        tx: Transaction,
        call_id: str,
        previous: Call | None,
        upstream_id: str,
        route_name: str,
        out: RouteOutcome,
    ) -> None:
        """The call's writes of fields its customer owns go back to the customer's values."""
        route = self._route(route_name)
        supplier = self._get(tx, call_id)
        upstream = self._get(tx, upstream_id)
        writable = self._writable_at(tx, supplier)
        revert: dict[str, Any] = {}
        for name in (*REQUEST_FIELDS, *WORK_FIELDS):
            mine, theirs = getattr(supplier, name), getattr(upstream, name)
            if mine == theirs or self._owner(route, name) != "customer":
                continue
            if not self._shared(name, upstream, supplier):
                continue
            if writable is not None and name not in writable:
                continue
            if _empty(theirs):
                # Nothing to restore: the supplier's tool's value (a default) stays its own.
                continue
            if self._gives_up(tx, supplier, name, mine, theirs, previous, owner="customer"):
                continue
            revert[name] = theirs
            if previous is not None and getattr(previous, name) != mine:
                self._conflict(
                    tx, supplier, name, owner="customer", route=route, written=mine,
                    owners_value=theirs, other=upstream, out=out,
                )  # fmt: skip
        status = self._status_down(tx, route, upstream, supplier, writable)
        if status and not self._gives_up(
            tx, supplier, "status", supplier.status, status["status"], previous, owner="customer"
        ):
            revert.update(status)
            if previous is not None and previous.status != supplier.status:
                self._conflict(
                    tx, supplier, "status", owner="customer", route=route,
                    written=supplier.status, owners_value=status["status"], other=upstream,
                    out=out,
                )  # fmt: skip
        if revert:
            self.save(tx, with_changes(supplier, **revert), out)

    def _as_supplier(
        self,
        tx: Transaction,
        call_id: str,
        previous: Call | None,
        upstream_id: str,
        route_name: str,
        out: RouteOutcome,
    ) -> None:
        """Fields the supplier owns go up; the upstream's status follows its suppliers.

        Runs after :meth:`_revert_as_supplier` and :meth:`_as_upstream`, so what goes up is
        the call as corrected by both.
        """
        route = self._route(route_name)
        supplier = self._get(tx, call_id)
        upstream = self._get(tx, upstream_id)
        writable_up = self._writable_at(tx, upstream)
        up: dict[str, Any] = {}
        for name in REQUEST_FIELDS:
            mine, theirs = getattr(supplier, name), getattr(upstream, name)
            if mine == theirs or self._owner(route, name) == "customer":
                continue
            if not self._shared(name, upstream, supplier):
                continue
            if not _can_write(writable_up, name):
                continue  # the upstream's tool cannot hold it: the supplier's value stays its own
            if _empty(mine):
                continue  # an empty value is never written: it would only be "reverted"
            if self._unresolvable(tx, upstream, name, held=theirs, kept=mine):
                continue
            up[name] = mine
        newly_cancelled = supplier.status is Status.CANCELLED and (
            previous is None or previous.status is not Status.CANCELLED
        )
        if up and upstream.status not in DONE:
            self.save(tx, with_changes(upstream, **up), out)
        upstream = self._get(tx, upstream_id)
        if upstream.status is Status.CANCELLED:
            return
        suppliers = [self._get(tx, link.supplier_call_id) for link in tx.suppliers_of(upstream_id)]
        resumed = self._status_from_suppliers(tx, upstream, suppliers, None, out)
        self.save(tx, resumed, out)
        if newly_cancelled:
            self.note(
                tx,
                upstream,
                f"The supplier call at {supplier.unit} ({supplier.title!r}) was cancelled; "
                "this call no longer waits for it.",
                key=f"cancelled:{supplier.id}",
                out=out,
            )

    def note(self, tx: Transaction, call: Call, body: str, *, key: str, out: RouteOutcome) -> None:
        """An internal comment on the call's record (it never travels: it is not public)."""
        home = self.home_instance(tx, call)
        if home is None:
            return
        comment_id = "note_" + hashlib.sha256(f"{call.id}\0{key}".encode()).hexdigest()[:32]
        payload: JsonValue = {"comment_id": comment_id, "body": body, "public": False}
        item_key = f"{call.id}:{home}:comment:{comment_id}"
        if tx.enqueue(home, call.id, OutboxOperation.COMMENT, payload, item_key).created:
            out.enqueued += 1
        out.targets.add(home)

    # -- comments -----------------------------------------------------------------------------

    def new_public_comments(self, tx: Transaction, call: Call) -> list[Comment]:
        """Public comments read from the call's own tool that are not the bridge's copies.

        A copy is the bridge's only by proof: the tool's id of it is in ``comment_links``,
        recorded when the tool took it (or found by its marker or author after a lost answer,
        :meth:`OutboxPusher.recover_creates`). Never by text: a person's comment with the same
        words as an earlier one, or as a copy, is a new comment and travels.
        """
        if call.source is None:
            return []
        instance = call.source.instance
        return [
            comment
            for comment in call.comments
            if comment.public
            and comment.origin == instance
            and not (
                comment.remote_id is not None and tx.find_comment_link(instance, comment.remote_id)
            )
        ]

    def _comments(self, tx: Transaction, call: Call, out: RouteOutcome) -> None:
        for comment in self.new_public_comments(tx, call):
            self._spread(tx, call.id, comment, out)

    # -- files ---------------------------------------------------------------------------------

    def _files(self, tx: Transaction, call: Call, out: RouteOutcome) -> None:
        """Put the call's travelling files on every call of its chain that lacks them (by
        identity), each still naming the copy it can be read from; saving asks for the write
        (:mod:`.attachment_push` writes them with the call). Files travel the whole chain both
        ways, like the request they document; identity stops them going round."""
        travelling = list(
            {a.identity: a for a in all_attachments(call) if a.refused is None}.values()
        )
        if not travelling:
            return
        seen, todo = {call.id}, [call.id]
        while todo:
            for neighbour_id, _ in self._links_of(tx, todo.pop()):
                if neighbour_id not in seen:
                    seen.add(neighbour_id)
                    todo.append(neighbour_id)
                    self._give_files(tx, neighbour_id, travelling, out)

    def _give_files(
        self, tx: Transaction, call_id: str, files: list[Attachment], out: RouteOutcome
    ) -> None:
        """Add to the call the ``files`` it holds none of (by identity), and save it."""
        neighbour = self._get(tx, call_id)
        held = {a.identity for a in all_attachments(neighbour)}
        missing = [a.model_copy(update={"inline": False}) for a in files if a.identity not in held]
        if missing:
            attachments = [*neighbour.attachments, *missing]
            self.save(tx, with_changes(neighbour, attachments=attachments), out)

    @staticmethod
    def _links_of(tx: Transaction, call_id: str) -> list[tuple[str, str]]:
        """The calls linked to ``call_id``, each with the route of the link."""
        links = [(link.supplier_call_id, link.route) for link in tx.suppliers_of(call_id)]
        upstream = tx.upstream_of(call_id)
        if upstream is not None:
            links.append((upstream.upstream_call_id, upstream.route))
        return links

    def _spread(self, tx: Transaction, origin_id: str, comment: Comment, out: RouteOutcome) -> None:
        """Copy ``comment`` over every link of its call, and on over links that relay.

        USM specifies each link from the outside only: by default a comment reaches the calls
        next to its own, and a unit decides itself what to tell its other partners. A route
        with ``relay_comments`` also carries what reached one end of it from that end's other
        links (IT's comment on Facilities' call goes on to HR). The walk never goes back the
        way it came (``seen``), so a relay cannot loop.
        """
        seen = {origin_id}
        frontier = [origin_id]
        while frontier:
            reached: list[str] = []
            for at in frontier:
                for neighbour_id, route_name in self._links_of(tx, at):
                    if neighbour_id in seen:
                        continue
                    if at != origin_id:
                        route = self._route(route_name)
                        if route is None or not route.relay_comments:
                            continue
                    seen.add(neighbour_id)
                    if self._copy_comment(tx, neighbour_id, comment, out):
                        reached.append(neighbour_id)
            frontier = reached

    def _copy_comment(
        self, tx: Transaction, neighbour_id: str, comment: Comment, out: RouteOutcome
    ) -> bool:
        """Ask for a copy of ``comment`` on ``neighbour_id``'s record (once); ``False`` when
        that call has no tool to hold it yet."""
        neighbour = self._get(tx, neighbour_id)
        home = self.home_instance(tx, neighbour)
        if home is None:
            return False
        if tx.find_comment_copy(neighbour_id, comment.id) is not None:
            return True
        digest = hashlib.sha256(f"{comment.id}\0{neighbour_id}".encode()).hexdigest()
        copy_id = f"cpy_{digest[:32]}"
        tx.link_comment(neighbour_id, home, copy_id, source_comment_id=comment.id)
        author = comment.author
        payload: dict[str, JsonValue] = {
            "comment_id": copy_id,
            "source_comment_id": comment.id,
            # Posted by the integration account: the first line names who wrote it, where.
            "body": attributed(comment, self.config),
            "public": True,
            "author": (author.name or author.email or author.ref) if author else None,
        }
        files: list[JsonValue] = [
            [a.sha256, a.name] for a in comment.attachments if a.refused is None
        ]
        if files:
            # Written with the comment, in its tool's way (.attachment_push): the comment
            # names them, and the update of the call holds them back meanwhile.
            payload["files"] = files
        key = f"{neighbour_id}:{home}:comment:{copy_id}"
        if tx.enqueue(home, neighbour_id, OutboxOperation.COMMENT, payload, key).created:
            out.enqueued += 1
            out.comments += 1
        out.targets.add(home)
        return True
