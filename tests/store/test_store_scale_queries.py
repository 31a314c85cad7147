"""Revision 0010 and the queries of ``usm_bridge.store.scale_queries``: the closure's candidates
come from the partial index ``ix_calls_closure_due``, and are the chained calls the closure pass
can act on, never those it always passed over (a delivered supplier whose confirmation is
recorded, a delivered call that supplies nobody); the tried pending items of a target come from
``ix_outbox_pending`` and are the ones the outbox listing gave."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from store.store_revisions import downgrade, index_names, upgraded_keeping

from usm_bridge.model import Call, ChainLinks, Confirmation, ConfirmationKind, Status
from usm_bridge.store import OutboxOperation, OutboxStatus, Store
from usm_bridge.store.scale_queries import closure_candidates, tried_outbox_items

MakeCall = Callable[..., Call]
INDEXES = {("calls", "ix_calls_closure_due"), ("outbox", "ix_outbox_pending")}


def _indexes(store: Store) -> set[tuple[str, str]]:
    return index_names(store, "calls", "outbox")


def test_revision_0010_adds_the_indexes_and_downgrades_without_them(
    store_url: str, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    with Store.open(store_url) as store:
        assert _indexes(store) >= INDEXES
        with store.begin() as tx:
            tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0009")
        assert not INDEXES & _indexes(store)
    with upgraded_keeping(store_url, call) as store:
        assert _indexes(store) >= INDEXES


def test_closure_candidates_are_the_chained_calls_the_closure_can_act_on(
    store: Store, make_call: MakeCall
) -> None:
    confirmation = Confirmation(kind=ConfirmationKind.EXPLICIT, how="the customer said so")
    top = make_call("HR-1", unit="hr", call_type="service_request", status=Status.FULFILLED)
    upstream = top.id
    # (remote id, status, confirmation, a supplier of top?, due for the closure?)
    cases = [
        ("FAC-1", Status.FULFILLED, None, True, True),
        ("FAC-2", Status.CLOSED, None, True, True),
        ("FAC-3", Status.CLOSED, confirmation, True, False),
        ("FAC-4", Status.FULFILLED, confirmation, True, False),
        ("FAC-5", Status.CONFIRMED, confirmation, True, True),
        ("FAC-6", Status.IN_PROGRESS, None, True, False),
        ("FAC-7", Status.FULFILLED, None, False, False),
        ("FAC-8", Status.CONFIRMED, None, False, False),
    ]
    calls: dict[str, Call] = {}
    for n, (remote_id, status, confirmed, supplies, _) in enumerate(cases):
        calls[remote_id] = make_call(
            remote_id,
            instance="fac-jira",
            unit="fac",
            call_type="service_request",
            status=status,
            confirmation=confirmed,
            created=top.created + timedelta(minutes=n),
            updated=top.created + timedelta(minutes=n + 1),
            chain=ChainLinks(upstream=upstream if supplies else None),
        )
    suppliers = [c.id for c in calls.values() if c.chain.upstream]
    # A confirmed top of its chain with one supplier: it is closed once its writes are made.
    boss = make_call("HR-2", unit="hr", call_type="service_request", status=Status.CONFIRMED)
    helper = make_call(
        "FAC-9", instance="fac-jira", unit="fac", call_type="incident", status=Status.IN_PROGRESS
    )
    boss = boss.model_copy(update={"chain": ChainLinks(suppliers=[helper.id])})
    helper = helper.model_copy(update={"chain": ChainLinks(upstream=boss.id)})
    top = top.model_copy(update={"chain": ChainLinks(suppliers=suppliers)})
    with store.begin() as tx:
        for call in (top, boss, helper, *calls.values()):
            # One unit of work each: the rows' created_at (the candidates' order) differ.
            tx.upsert_call(call, instance=call.source.instance if call.source else None)
    with store.begin() as tx:
        for supplier in suppliers:
            tx.link_chain(upstream, supplier, "hr-to-fac")
        tx.link_chain(boss.id, helper.id, "hr-to-fac")
        # The top's own instance: its candidates are asked for separately.
        tx.link_identity(top.id, "fac-jira", "FAC-0")
        tx.link_identity(boss.id, "fac-jira", "FAC-10")
    with store.begin(readonly=True) as tx:
        now = closure_candidates(tx, "fac-jira")
        elsewhere = closure_candidates(tx, "hr-jira")
    # Oldest call first (each was stored in a unit of work of its own), with its record in the
    # instance asked for. Passed over: recorded confirmations (FAC-3, FAC-4), a fulfilled top
    # supplying others (HR-1), what is not delivered (FAC-6, FAC-9), what is in no chain.
    due = [calls[remote_id] for remote_id, *_, is_due in cases if is_due]
    assert now == [(boss.id, "FAC-10")] + [(c.id, c.source.remote_id) for c in due if c.source]
    assert elsewhere == [(boss.id, "HR-2")]


def test_tried_outbox_items_are_the_pending_ones_the_listing_gave(
    store: Store, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    operations = [OutboxOperation.CREATE, OutboxOperation.UPDATE, OutboxOperation.COMMENT]
    with store.begin() as tx:
        tx.upsert_call(call, instance="hr-jira")
        for n in range(12):
            target = ("fac-jira", "it-snow")[n % 2]
            operation = operations[n % 3]
            tx.enqueue(target, call.id, operation, {"n": n}, f"key-{n}")
    with store.begin() as tx:
        # Tried: claimed once (attempts 1); some failed and wait, one is done, one is dead.
        claimed = tx.claim_outbox(limit=8)
        assert len(claimed) == 8
        tx.mark_outbox_done(claimed[0].id)
        tx.mark_outbox_dead(claimed[1].id, "refused")
        for item in claimed[2:5]:
            tx.mark_outbox_failed(item.id, "503", retry_at=item.next_attempt_at)
    with store.begin(readonly=True) as tx:
        for target in ("fac-jira", "it-snow", "nowhere"):
            listed = [
                item
                for item in tx.list_outbox(status=OutboxStatus.PENDING, instance=target)
                if item.attempts > 0
            ]
            assert tried_outbox_items(tx, target) == listed
            wanted = (OutboxOperation.CREATE, OutboxOperation.COMMENT)
            assert tried_outbox_items(tx, target, *wanted) == [
                item for item in listed if item.operation in wanted
            ]
        assert len(tried_outbox_items(tx, "fac-jira")) + len(tried_outbox_items(tx, "it-snow")) == 6
