"""A page of records the database refuses: the store's error, naming what failed, and nothing
of the page kept; a conflict with another unit of work is told apart (it is run again)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from usm_bridge.errors import StoreError
from usm_bridge.model import Call, utcnow
from usm_bridge.store import Store, StoreConflictError
from usm_bridge.store import schema as t
from usm_bridge.store.call_rows import encode_call, new_call_row
from usm_bridge.store.page_transaction import PageTransaction

#: Builds a call (tests/store/conftest.py's ``make_call`` fixture).
MakeCall = Callable[..., Call]


class _DriverError(Exception):
    """A driver's exception as psycopg raises it: the SQLSTATE on the exception."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver failed with {sqlstate}")
        self.sqlstate = sqlstate


def test_held_writes_the_database_refuses_are_the_stores_error_and_leave_nothing(
    store: Store, make_call: MakeCall
) -> None:
    call = make_call("10001")
    with pytest.raises(StoreError) as raised, store.begin() as tx:
        page = PageTransaction.begin(tx, "hr-jira", ["10001"])
        page._store_mapped_call(call, instance="hr-jira")
        # Another writer took the call's id behind the page's back: the held insert clashes.
        tx.connection.execute(t.calls.insert(), new_call_row(call, encode_call(call), utcnow()))
        page.flush()
    assert "writing the page failed" in str(raised.value)
    assert store.display_url in str(raised.value)
    assert not isinstance(raised.value, StoreConflictError)
    with store.begin(readonly=True) as tx:
        assert tx.connection.execute(sa.select(sa.func.count()).select_from(t.calls)).scalar() == 0
        assert tx.find_identity("hr-jira", "10001") is None


def test_a_page_state_that_cannot_be_read_is_the_stores_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise sa.exc.OperationalError("SELECT", {}, _DriverError("57014"))

    monkeypatch.setattr("usm_bridge.store.page_transaction.load_page_state", refuse)
    with pytest.raises(StoreError) as raised, store.begin() as tx:
        PageTransaction.begin(tx, "hr-jira", ["10001"])
    assert "reading the page's state failed" in str(raised.value)
    assert "57014" in str(raised.value)
    assert not isinstance(raised.value, StoreConflictError)


@pytest.mark.parametrize(
    ("sqlstate", "conflict"), [("40001", True), ("40P01", True), ("23505", False)]
)
def test_a_units_error_says_whether_another_unit_of_work_caused_it(
    store: Store, sqlstate: str, conflict: bool
) -> None:
    with store.begin(readonly=True) as tx:
        error = tx.store_error(
            "storing", sa.exc.OperationalError("UPDATE", {}, _DriverError(sqlstate))
        )
    assert isinstance(error, StoreConflictError) is conflict
    assert str(error).startswith(f"storing (store {store.display_url}): ")
    assert sqlstate in str(error)
