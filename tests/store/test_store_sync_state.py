"""Instance states (``record_run``) and comment links, added by revision 0002."""

from __future__ import annotations

from datetime import timedelta

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import Store


def test_runs_are_recorded_per_instance_with_failures_counted(store: Store) -> None:
    t = utcnow()
    with store.begin() as tx:
        tx.record_run("hr", started=t, finished=t, counters={"read": 2}, error="HTTP 503")
        tx.record_run("hr", started=t, finished=t, counters={"read": 0}, error="HTTP 503")
        tx.record_run("it", started=t, finished=t + timedelta(seconds=1), counters={"read": 5})
    with store.begin(readonly=True) as tx:
        hr, it = tx.list_instance_states()
    assert (hr.instance, hr.consecutive_failures, hr.runs, hr.last_success) == ("hr", 2, 2, None)
    assert hr.last_error == "HTTP 503" and not hr.ok
    assert it.ok and it.last_counters == {"read": 5} and it.last_success is not None
    with store.begin() as tx:
        state = tx.record_run("hr", started=t, finished=t, counters={"read": 1})
    assert state.ok and state.runs == 3 and state.last_error == "HTTP 503"


def test_comment_links_find_the_bridge_copies(store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    call = make_call()
    with store.begin() as tx:
        tx.upsert_call(call)
        tx.link_comment(call.id, "hr-jira", "cpy_1", source_comment_id="cmt_a")
        assert tx.link_comment(call.id, "hr-jira", "cpy_1", source_comment_id="cmt_a").id
        link = tx.set_comment_remote_id("hr-jira", "cpy_1", "10001")
        assert link.remote_comment_id == "10001"
        found = tx.find_comment_link("hr-jira", "10001")
        assert found is not None and found.source_comment_id == "cmt_a"
        assert tx.find_comment_copy(call.id, "cmt_a") == found
        assert tx.find_comment_link("hr-jira", "other") is None
        with pytest.raises(StoreError):
            tx.link_comment(call.id, "hr-jira", "cpy_2", source_comment_id="cmt_a")
