"""Recorded conformance scores (revision 0007): a period recorded again replaces its rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from store.store_revisions import downgrade

from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store.conformance_scores import (
    RecordedScore,
    list_recorded_scores,
    replace_recorded_scores,
)

MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
FEBRUARY = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
AT = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)


def _row(
    span: tuple[datetime, datetime],
    unit: str,
    check: str,
    score: float | None,
    digest: str = "a" * 64,
    at: datetime = AT,
) -> RecordedScore:
    return RecordedScore(
        period_since=span[0],
        period_until=span[1],
        period_label=f"{span[0]:%Y-%m}",
        config_digest=digest,
        unit=unit,
        check_id=check,
        score=score,
        verdict="pass" if score == 100 else "fail",
        exceptions=0 if score == 100 else 3,
        recorded_at=at,
    )


def _record(store: Store, rows: list[RecordedScore]) -> None:
    with store.begin() as tx:
        replace_recorded_scores(
            tx,
            since=rows[0].period_since,
            until=rows[0].period_until,
            config_digest=rows[0].config_digest,
            scores=rows,
        )


def test_recording_a_period_again_replaces_its_rows(store: Store) -> None:
    _record(store, [_row(MARCH, "", "", 50.0), _row(MARCH, "hr", "", 40.0)])
    _record(store, [_row(FEBRUARY, "", "", 90.0)])
    later = AT + timedelta(hours=1)
    _record(store, [_row(MARCH, "", "", 75.0, at=later)])  # hr is gone from the config
    with store.begin(readonly=True) as tx:
        rows = list_recorded_scores(tx)
        up_to_february = list_recorded_scores(tx, until_at_most=FEBRUARY[1])
    assert [(r.period_label, r.unit, r.score, r.recorded_at) for r in rows] == [
        ("2026-02", "", 90.0, AT),
        ("2026-03", "", 75.0, later),
    ]
    assert [r.period_label for r in up_to_february] == ["2026-02"]


def test_another_config_keeps_its_own_rows_latest_first(store: Store) -> None:
    _record(store, [_row(MARCH, "", "", 50.0, digest="a" * 64)])
    _record(store, [_row(MARCH, "", "", 60.0, digest="b" * 64, at=AT + timedelta(days=1))])
    with store.begin(readonly=True) as tx:
        rows = list_recorded_scores(tx)
    assert [(r.config_digest[0], r.score) for r in rows] == [("b", 60.0), ("a", 50.0)]


def test_the_unique_key_refuses_a_duplicate_row(store: Store) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        for _ in range(2):
            conn.execute(
                sa.text(
                    "INSERT INTO conformance_scores (period_since, period_until, period_label,"
                    " config_digest, unit, check_id, score, verdict, exceptions, recorded_at)"
                    " VALUES (:s, :u, 'x', 'd', '', '', 1, 'pass', 0, :s)"
                ),
                {"s": MARCH[0].replace(tzinfo=None), "u": MARCH[1].replace(tzinfo=None)},
            )


def test_revision_0007_downgrades_to_0006_and_back(store_url: str) -> None:
    with Store.open(store_url) as store:
        _record(store, [_row(MARCH, "", "", 50.0)])
        downgrade(store, "0006")
        assert "conformance_scores" not in sa.inspect(store.engine).get_table_names()
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_revision() == store.head_revision()  # back at the head
        _record(store, [_row(MARCH, "", "", 60.0)])
        with store.begin(readonly=True) as tx:
            assert [r.score for r in list_recorded_scores(tx)] == [60.0]
