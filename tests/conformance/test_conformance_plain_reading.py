"""The report's pass reads its rows through the driver (``driver_rows``) and builds the store's
records without validating plain values again (``plain_records``): each must give what the
SQLAlchemy rows and pydantic's validation give, value for value, on both back ends, and a row
with anything unexpected in it must be the model's to accept or refuse, as before."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from usm_bridge.conformance.call_stream import _KeyedQueries
from usm_bridge.conformance.driver_rows import DriverQuery
from usm_bridge.conformance.plain_records import record_builder
from usm_bridge.conformance.stored_rows import stored_facts_query
from usm_bridge.model import Call
from usm_bridge.store import ChainLink, Identity, Store, StoredCall
from usm_bridge.store import schema as tables

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_driver_rows_are_the_rows_sqlalchemy_gives_on_each_back_end(store_url: str) -> None:
    fill_store(store_url, 300, seed=17, now=NOW)
    calls = tables.calls
    with Store.open(store_url) as store, store.engine.connect() as conn:
        for units in (None, ("hr", "it")):
            query = stored_facts_query().order_by(calls.c.created_at, calls.c.id)
            if units is not None:
                query = query.where(calls.c.unit.in_(units))
            expected = [dict(row) for row in conn.execute(query).mappings()]
            driver = DriverQuery.of(query, conn.dialect)
            pages = list(driver.pages(conn, 70))
            assert [len(page) for page in pages][:-1] == [70] * (len(pages) - 1)
            got = [row for page in pages for row in page]
            assert got == expected and len(got) > 100
            # The timestamps are UTCDateTime's: aware, UTC.
            assert all(row["created_at"].tzinfo is UTC for row in got)

            keyed = _KeyedQueries.of(units, conn.dialect.name)
            window = expected[40:140]  # a page's range, its bounds given as parameters
            parameters = keyed.parameters(window)
            assert parameters is not None
            for query_of_page in (keyed.audit, keyed.changes, keyed.identities, keyed.links):
                rows = [dict(row) for row in conn.execute(query_of_page, parameters).mappings()]
                # Bound values (the page's range: UTCDateTime's bind processor) as well.
                assert DriverQuery.of(query_of_page, conn.dialect).all(conn, parameters) == rows
                if query_of_page is not keyed.changes:
                    assert rows, query_of_page  # the store holds some of each
            identities = DriverQuery.of(keyed.identities, conn.dialect).all(conn, parameters)
            assert {row["call_id"] for row in identities} == {row["id"] for row in window}


class _Plain(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}

    id: int
    name: str
    at: datetime
    until: datetime | None
    call: Call | None


_CALL = Call(unit="hr", title="t", created=NOW, updated=NOW)


class _CallLike(Call):
    """A subclass of the model: pydantic takes it as it is too, but it is no plain value."""


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.sampled_from(["1", "2026-03-01T09:30:00", "2026-03-01T09:30:00Z", b"x", 2**70]),
    st.just(NOW),
    st.just(NOW.replace(tzinfo=None)),
    st.just(NOW.astimezone(timezone(timedelta(hours=2)))),
    st.just(date(2026, 3, 1)),
    st.just(_CALL),
    st.just(_CallLike(unit="hr", title="t", created=NOW, updated=NOW)),
    st.just({"unit": "hr", "title": "t", "created": NOW, "updated": NOW}),
)


def _outcome(build: Any, row: dict[str, Any]) -> tuple[str, Any]:
    try:
        record = build(row)
    except ValidationError as exc:
        return "refused", exc.errors(include_url=False)
    return "built", (record, record.__dict__, record.__pydantic_fields_set__)


@settings(max_examples=400, deadline=None)
@given(
    row=st.fixed_dictionaries(
        {},
        optional={name: _VALUES for name in ("id", "name", "at", "until", "call", "extra")},
    )
)
def test_a_record_built_from_plain_values_is_the_one_validation_builds(row: dict[str, Any]) -> None:
    built, validated = _outcome(record_builder(_Plain), row), _outcome(_Plain.model_validate, row)
    assert built[0] == validated[0]
    if built[0] == "built":
        record, values, given_fields = built[1]
        assert (values, given_fields) == validated[1][1:]
        assert record == validated[1][0]
        assert list(values) == list(_Plain.model_fields)
        assert all(
            type(a) is type(b)
            for a, b in zip(values.values(), validated[1][1].values(), strict=True)
        )


@pytest.mark.parametrize("model", [StoredCall, Identity, ChainLink])
def test_the_pass_builds_its_records_without_validation_and_refuses_what_the_model_refuses(
    model: type[BaseModel],
) -> None:
    plain: dict[type[BaseModel], dict[str, Any]] = {
        StoredCall: {
            "call": _CALL,
            "version": 2,
            "content_hash": "h",
            "created_at": NOW,
            "updated_at": NOW,
            "vanished_at": None,
        },
        Identity: {
            "id": 1,
            "call_id": "c",
            "instance": "hr-mail",
            "remote_id": "r",
            "remote_key": None,
            "url": None,
            "correlation": None,
            "pushed_hash": None,
            "pushed_at": None,
            "created_at": NOW,
            "updated_at": NOW,
        },
        ChainLink: {
            "upstream_call_id": "a",
            "supplier_call_id": "b",
            "route": "r",
            "created_at": NOW,
        },
    }
    build, row = record_builder(model), plain[model]
    assert build(row) == model.model_validate(row)
    # A value typeless SQLite may hand back as text: the model reads or refuses it.
    for name, value in row.items():
        odd = {**row, name: "2" if isinstance(value, int) else 7}
        assert _outcome(build, odd)[0] == _outcome(model.model_validate, odd)[0], name
    with pytest.raises(ValidationError):
        build({**row, "colour": "red"})


def test_a_timestamp_column_holding_no_timestamp_fails_as_it_did(tmp_path: Path) -> None:
    """A hand-edited SQLite row whose ``created_at`` is not a timestamp: the driver's rows
    raise SQLAlchemy's own error, as ``Connection.execute`` did (never a wrong value)."""
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    fill_store(url, 20, seed=17, now=NOW)
    calls = tables.calls
    with Store.open(url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET created_at = 'yesterday' WHERE rowid = 3"))
        query = stored_facts_query().order_by(calls.c.id)
        with pytest.raises(ValueError) as before:
            list(conn.execute(query).mappings())
        with pytest.raises(ValueError) as now:
            list(DriverQuery.of(query, conn.dialect).pages(conn, 10))
        assert str(now.value) == str(before.value)
