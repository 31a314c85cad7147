"""Revision 0011: a call's row says whether the call holds a fork not resolved to a call yet
(``calls.open_forks``), written with its document on every path that stores a call; the
migration flags the calls stored before it, and only those."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from store.store_revisions import downgrade

from usm_bridge.model import Call, ChainLinks, ForkRole, ProcessLink, UsmProcess
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store import schema as tables

MakeCall = Callable[..., Call]


def _forks(*calls: str | None) -> ChainLinks:
    return ChainLinks(
        forks=[
            ProcessLink(
                role=ForkRole.SECONDARY,
                process=UsmProcess.CHANGE,
                ref=f"CHG-{n}",
                instance="it-changes" if call else None,
                call=call,
                via="rfc",
            )
            for n, call in enumerate(calls)
        ]
    )


def _flags(store: Store) -> dict[str, bool]:
    with store.begin(readonly=True) as tx:
        rows = tx.connection.execute(sa.select(tables.calls.c.id, tables.calls.c.open_forks))
        return {str(call_id): bool(flag) for call_id, flag in rows}


def _cases(make_call: MakeCall) -> dict[str, tuple[Call, bool]]:
    """Calls and whether each holds an open fork."""
    quoting = '{"role": "secondary", "call": null}'
    return {
        "open": (make_call("IT-1", chain=_forks(None)), True),
        "mixed": (make_call("IT-2", chain=_forks("call-x", None)), True),
        "resolved": (make_call("IT-3", chain=_forks("call-x")), False),
        "none": (make_call("IT-4"), False),
        # The text the old query matched, in a description: no fork at all.
        "quoting": (make_call("IT-5", description=f"pasted: {quoting}"), False),
    }


def test_every_stored_call_says_whether_it_holds_an_open_fork(
    store: Store, make_call: MakeCall
) -> None:
    cases = _cases(make_call)
    with store.begin() as tx:
        for call, _ in cases.values():
            tx.upsert_call(call, instance="it-snow")
    assert _flags(store) == {call.id: open_ for call, open_ in cases.values()}
    # Resolving the fork clears the flag; a new unresolved one sets it on an update.
    opened, _ = cases["open"]
    closed, _ = cases["resolved"]
    with store.begin() as tx:
        tx.upsert_call(opened.model_copy(update={"chain": _forks("call-y")}))
        tx.upsert_call(closed.model_copy(update={"chain": _forks(None)}))
    flags = _flags(store)
    assert (flags[opened.id], flags[closed.id]) == (False, True)


def test_revision_0011_flags_the_calls_stored_before_it_and_only_those(
    store_url: str, make_call: MakeCall
) -> None:
    cases = _cases(make_call)
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for call, _ in cases.values():
                tx.upsert_call(call, instance="it-snow")
        downgrade(store, "0010")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("calls")}
        assert "open_forks" not in columns
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_revision() == store.head_revision()
        indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("calls")}
        assert {"ix_calls_open_forks", "ix_calls_closure_due"} <= indexes
        assert _flags(store) == {call.id: open_ for call, open_ in cases.values()}
        with store.begin(readonly=True) as tx:
            for call, _ in cases.values():
                stored = tx.get_call(call.id)
                assert stored is not None and stored.call == call
