"""Counting the backlog and dead letters in the database, and the census schedule (0004)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from store.store_revisions import downgrade

from usm_bridge.config import BridgeConfig
from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import OutboxStatus, SchemaPolicy, Store, Transaction
from usm_bridge.store.schema import VERSION_TABLE
from usm_bridge.sync.status import collect_status, read_states, store_counts


def _fill(store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    """it-snow: 3 pending, 1 done, 1 dead; hr-jira: 1 pending. Letters: 2 + 1 open, 1 resolved."""
    with store.begin() as tx:
        call_id = tx.upsert_call(make_call()).call_id
        for n in range(5):
            tx.enqueue("it-snow", call_id, "update", {"n": n}, f"snow-{n}")
        tx.enqueue("hr-jira", call_id, "comment", {"n": 0}, "jira-0")
    with store.begin() as tx:
        snow = [item.id for item in tx.list_outbox(instance="it-snow")]
        tx.mark_outbox_done(snow[0])
        tx.mark_outbox_dead(snow[1], "HTTP 400")  # adds an open push letter for it-snow
        tx.add_dead_letter("it-snow", "map", {"raw": 1}, "no status")
        tx.add_dead_letter("mail", "store", {"raw": 2}, "broken")
        resolved = tx.add_dead_letter("mail", "map", {"raw": 3}, "fixed since")
        tx.resolve_dead_letter(resolved.id, resolution="mapping fixed")


def test_outbox_items_are_counted_per_target_by_status(store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    _fill(store, make_call)
    with store.begin(readonly=True) as tx:
        assert tx.count_outbox() == {"it-snow": 3, "hr-jira": 1}  # pending by default
        assert tx.count_outbox(status=OutboxStatus.DONE) == {"it-snow": 1}
        assert tx.count_outbox(status="dead") == {"it-snow": 1}
        assert tx.count_outbox(status=None) == {"it-snow": 5, "hr-jira": 1}


def test_dead_letters_are_counted_per_instance_by_status(store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    _fill(store, make_call)
    with store.begin(readonly=True) as tx:
        assert tx.count_dead_letters() == {"it-snow": 2, "mail": 1}  # open by default
        assert tx.count_dead_letters(status="resolved") == {"mail": 1}
        assert tx.count_dead_letters(status=None) == {"it-snow": 2, "mail": 2}


def test_an_empty_store_counts_nothing(store: Store) -> None:
    with store.begin(readonly=True) as tx:
        assert tx.count_outbox() == {} and tx.count_dead_letters() == {}
        assert store_counts(tx).backlog == {} and store_counts(tx).dead_letters == {}


def test_status_counts_without_loading_items_or_letters(
    store: Store,
    make_call,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(store, make_call)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("status loaded every row to count them")

    monkeypatch.setattr(Transaction, "list_outbox", refuse)
    monkeypatch.setattr(Transaction, "list_dead_letters", refuse)
    config = BridgeConfig.model_validate(
        {
            "units": {"it": {"name": "it"}, "hr": {"name": "hr"}},
            "instances": {
                "it-snow": {"unit": "it", "kind": "servicenow", "mapping": "m.yaml"},
                "hr-jira": {"unit": "hr", "kind": "jira", "mapping": "m.yaml"},
                "mail": {"unit": "hr", "kind": "email", "mapping": "m.yaml"},
            },
        }
    )
    report = collect_status(config, store, now=utcnow())
    rows = {row.instance: (row.backlog, row.dead_letters) for row in report.instances}
    assert rows == {"it-snow": (3, 2), "hr-jira": (1, 0), "mail": (0, 1)}


# --- the census schedule ------------------------------------------------------------------------


def test_a_census_is_recorded_on_the_instance_state_and_kept_by_later_runs(store: Store) -> None:
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with store.begin() as tx:
        tx.record_run("hr", started=t, finished=t, counters={"read": 1})
        assert tx.get_instance_state("hr").last_census is None  # type: ignore[union-attr]
        state = tx.record_census("hr", at=t + timedelta(seconds=5))
    assert state is not None and state.last_census == t + timedelta(seconds=5)
    with store.begin() as tx:
        # A cycle (failed or not) never touches when the last census ran.
        tx.record_run("hr", started=t, finished=t, counters={}, error="HTTP 503")
        tx.record_run("hr", started=t, finished=t, counters={})
    with store.begin(readonly=True) as tx:
        (again,) = tx.list_instance_states()
        stored = read_states(tx)
    assert again.last_census == t + timedelta(seconds=5) and again.last_census.tzinfo is UTC
    assert stored is not None and stored["hr"].last_census == again.last_census


def test_a_census_of_an_instance_without_a_recorded_cycle_writes_nothing(store: Store) -> None:
    with store.begin() as tx:
        assert tx.record_census("never-ran", at=utcnow()) is None
    with store.begin(readonly=True) as tx:
        assert tx.list_instance_states() == []


def test_a_census_time_must_be_time_zone_aware(store: Store) -> None:
    with pytest.raises(StoreError, match="time-zone aware"), store.begin() as tx:
        tx.record_census("hr", at=datetime(2026, 3, 1, 12, 0))  # naive, on purpose


def test_revision_0004_adds_the_census_column_to_existing_states(store_url: str) -> None:
    """A store of revision 0003 with cycle history upgrades in place; 0004 also goes back."""
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with Store.open(store_url) as store:
        with store.begin() as tx:
            tx.record_run("hr", started=t, finished=t, counters={"read": 3})
            tx.record_census("hr", at=t)
        downgrade(store, "0003")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("instance_states")}
        assert "last_census" not in columns
        with store.engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == (
                "0003"
            )
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:  # back to the head
        assert store.schema_revision() == store.head_revision() is not None
        with store.begin(readonly=True) as tx:
            (state,) = tx.list_instance_states()
        assert state.last_counters == {"read": 3} and state.last_census is None
