"""``data.supplier-acceptance``: fulfilled supplier calls waiting for their customer beyond the
agreement's implicit confirmation term (or the stated default) are found, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from usm_bridge.agreements import Agreements
from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.supplier_acceptance import DEFAULT_WAIT, SupplierAcceptanceCheck
from usm_bridge.lifecycle import PriorityMatrix
from usm_bridge.model import Agreement, Call, CallType, SourceRef, Status, Unit
from usm_bridge.store import AuditEvent, ChainLink, StoredCall

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
THREE_DAYS = 3 * 86400


def _stored(call: Call) -> StoredCall:
    return StoredCall(
        call=call, version=1, content_hash="x", created_at=call.created, updated_at=call.updated
    )


def _call(key: str, unit: str, status: Status, *, fulfilled_ago: timedelta | None = None) -> Call:
    created = NOW - timedelta(days=60)
    fulfilled = NOW - fulfilled_ago if fulfilled_ago is not None else None
    return Call(
        id=f"call_{key}",
        unit=unit,
        title=key,
        # Classified: a supplier call is one of the four support requests (USM), worked on.
        call_type=CallType.SERVICE_REQUEST,
        status=status,
        source=SourceRef(instance=f"{unit}-tool", remote_id=key, remote_key=key),
        created=created,
        updated=fulfilled or created,
        fulfilled=fulfilled,
    )


def _context(
    calls: list[Call],
    links: list[tuple[str, str]],
    *,
    agreements: Sequence[Agreement] = (),
    audit: Sequence[AuditEvent] = (),
) -> ReportContext:
    units = {u: Unit(name=u) for u in ("hr", "fac", "it")}
    return ReportContext(
        period=Period(),
        now=NOW,
        units=units,
        instances={},
        routes=[],
        priority=PriorityMatrix(),
        calls=[_stored(c) for c in calls],
        audit=list(audit),
        dead_letters=[],
        chain_links=[
            ChainLink(upstream_call_id=u, supplier_call_id=s, route="r", created_at=NOW)
            for u, s in links
        ],
        identities=[],
        agreements=Agreements(
            services={},
            agreements={a.id: a for a in agreements},
            units=units,
            default_matrix=PriorityMatrix(),
        ),
    )


def _found(context: ReportContext) -> dict[str, list[str]]:
    outcomes = SupplierAcceptanceCheck().run(context)
    return {
        o.unit or "": [f"{e.remote_key}: {e.detail}" for e in o.evidence]
        for o in outcomes
        if o.evidence
    }


def test_fulfilled_suppliers_beyond_their_agreements_term_are_found_and_none_else() -> None:
    hr = _call("HR-1", "hr", Status.IN_PROGRESS)
    late = _call("FAC-1", "fac", Status.FULFILLED, fulfilled_ago=timedelta(days=4))
    recent = _call("FAC-2", "fac", Status.FULFILLED, fulfilled_ago=timedelta(days=2))
    closed = _call("FAC-3", "fac", Status.CLOSED, fulfilled_ago=timedelta(days=40))
    lone = _call("FAC-4", "fac", Status.FULFILLED, fulfilled_ago=timedelta(days=40))  # no link
    agreement = Agreement(
        id="hr-fac", customer="hr", provider="fac", implicit_confirmation=THREE_DAYS
    )
    context = _context(
        [hr, late, recent, closed, lone],
        [(hr.id, late.id), (hr.id, recent.id), (hr.id, closed.id)],
        agreements=[agreement],
    )
    assert _found(context) == {
        "fac": [
            "FAC-1: fulfilled since 2026-12-02 09:00 UTC, 4 days without its customer's "
            "acceptance; agreement hr-fac's implicit confirmation term is 3 days"
        ]
    }
    (outcome,) = [o for o in SupplierAcceptanceCheck().run(context) if o.unit == "fac"]
    assert outcome.population is not None and outcome.population.size == 2  # FAC-1 and FAC-2


def test_without_an_agreement_the_default_applies_and_the_finding_says_so() -> None:
    it = _call("IT-1", "it", Status.IN_PROGRESS)
    waits = _call("FAC-1", "fac", Status.FULFILLED, fulfilled_ago=DEFAULT_WAIT + timedelta(hours=1))
    fresh = _call("FAC-2", "fac", Status.FULFILLED, fulfilled_ago=DEFAULT_WAIT - timedelta(hours=1))
    context = _context([it, waits, fresh], [(it.id, waits.id), (it.id, fresh.id)])
    (finding,) = _found(context)["fac"]
    assert finding.startswith("FAC-1: fulfilled since")
    assert finding.endswith(
        "the default (no agreement with an implicit confirmation term) is 7 days"
    )


def test_the_last_observed_move_to_fulfilled_counts_not_an_older_fulfilment() -> None:
    """A supplier reopened and fulfilled again two days ago is not late on a three-day term."""
    hr = _call("HR-1", "hr", Status.IN_PROGRESS)
    again = _call("FAC-1", "fac", Status.FULFILLED, fulfilled_ago=timedelta(days=10))
    moved = AuditEvent(
        id=7, at=NOW - timedelta(days=2), call_id=again.id, instance="fac-tool",
        kind="call_updated", actor="bridge", before={"status": "in_progress"},
        after={"status": "fulfilled"}, detail={},
    )  # fmt: skip
    agreement = Agreement(
        id="hr-fac", customer="hr", provider="fac", implicit_confirmation=THREE_DAYS
    )
    context = _context([hr, again], [(hr.id, again.id)], agreements=[agreement], audit=[moved])
    assert _found(context) == {}


def test_the_check_is_built_in() -> None:
    assert "data.supplier-acceptance" in {check.id for check in BUILTIN_CHECKS()}
