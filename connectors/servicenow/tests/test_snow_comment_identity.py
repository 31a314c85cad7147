"""The bridge's journal entries are known by who wrote them, never by their words.

Against the simulator through the connector, and with people using ServiceNow's own Python
client (pysnc, which insists on https: the simulator serves TLS with a local CA from trustme).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pysnc import ServiceNowClient
from usm_bridge.connector import CommentDraft, RawRecord

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.simulator import ServiceNowSimulator

PERSON, PERSON_PASSWORD = "beth.anglin", "beth-secret-1"


@pytest.fixture
def sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(ssl_context=tls_context) as simulator:
        simulator.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
        yield simulator


@pytest.fixture
def connector(sim: ServiceNowSimulator) -> ServiceNowConnector:
    settings = ServiceNowSettings(
        instance_url=sim.base_url, username=sim.username, password=sim.password
    )
    return ServiceNowConnector("it-snow", settings)


@pytest.fixture
def person(sim: ServiceNowSimulator) -> ServiceNowClient:
    """Beth, an agent at IT, in ServiceNow's own client."""
    return ServiceNowClient(sim.base_url, (PERSON, PERSON_PASSWORD))


def _incident(sim: ServiceNowSimulator) -> str:
    return sim.insert("incident", {"short_description": "Laptop for the new hire"})


def _comment_as(client: ServiceNowClient, sys_id: str, words: str) -> None:
    record = client.GlideRecord("incident")
    assert record.get(sys_id)
    record.comments = words
    record.update()


def _entries(sim: ServiceNowSimulator, sys_id: str) -> list[tuple[str, str, str]]:
    return [(e["sys_id"], e["sys_created_by"], e["value"]) for e in sim.journal(sys_id)]


def test_the_same_words_added_twice_by_the_bridge_are_two_entries(
    sim: ServiceNowSimulator, connector: ServiceNowConnector
) -> None:
    sys_id = _incident(sim)
    first = connector.add_comment(sys_id, CommentDraft(body="Thanks!", correlation="cpy_1"))
    second = connector.add_comment(sys_id, CommentDraft(body="Thanks!", correlation="cpy_2"))
    assert first != second
    assert sorted(_entries(sim, sys_id)) == sorted(
        [(first, sim.username, "Thanks!"), (second, sim.username, "Thanks!")]
    )


def test_a_persons_entry_in_the_same_words_is_never_taken_for_the_bridges(
    sim: ServiceNowSimulator, connector: ServiceNowConnector, person: ServiceNowClient
) -> None:
    sys_id = _incident(sim)
    since = datetime.now(UTC) - timedelta(minutes=5)
    copy = connector.add_comment(sys_id, CommentDraft(body="Desk is ready", correlation="c1"))
    _comment_as(person, sys_id, "Desk is ready")  # pysnc, as Beth
    (persons,) = [e for e in sim.journal(sys_id) if e["sys_created_by"] == PERSON]
    assert persons["value"] == "Desk is ready"
    # A lost add is looked for among the bridge's own entries only: none is unknown.
    assert connector.find_comment(sys_id, "c2", since=since, known=[copy]) is None
    # A next add of the same words is a new entry, not the person's nor the earlier copy.
    again = connector.add_comment(sys_id, CommentDraft(body="Desk is ready", correlation="c3"))
    assert again not in {copy, persons["sys_id"]}
    assert len(sim.journal(sys_id)) == 3


def test_a_write_whose_answer_was_lost_is_found_by_its_author(
    sim: ServiceNowSimulator, connector: ServiceNowConnector, person: ServiceNowClient
) -> None:
    sys_id = _incident(sim)
    since = datetime.now(UTC) - timedelta(minutes=5)
    _comment_as(person, sys_id, "Near the window")
    # The bridge's write landed; its answer never came back.
    sim.update("incident", sys_id, {"comments": "Near the window"})
    (landed,) = [e["sys_id"] for e in sim.journal(sys_id) if e["sys_created_by"] == sim.username]
    assert connector.find_comment(sys_id, "c1", since=since) == landed
    assert connector.find_comment(sys_id, "c1", since=since, known=[landed]) is None
    # A work note of the bridge is no copy of a public comment.
    sim.update("incident", sys_id, {"work_notes": "internal"})
    assert connector.find_comment(sys_id, "c1", since=since, known=[landed]) is None


def test_the_connector_reads_each_persons_repeat_as_its_own_comment(
    sim: ServiceNowSimulator, connector: ServiceNowConnector, person: ServiceNowClient
) -> None:
    sys_id = _incident(sim)
    _comment_as(person, sys_id, "Thanks!")
    _comment_as(person, sys_id, "Thanks!")
    records = [
        r
        for r in connector.read_changes(None)
        if isinstance(r, RawRecord) and r.remote_id == sys_id
    ]
    (record,) = records
    journal = record.data["journal"]
    assert isinstance(journal, list) and len(journal) == 2
    ids = {entry["sys_id"] for entry in journal if isinstance(entry, dict)}
    assert len(ids) == 2
    assert all(isinstance(e, dict) and e["sys_created_by"] == PERSON for e in journal)
