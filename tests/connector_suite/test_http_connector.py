"""The base of HTTP connectors: settings, seams handed to every client, closing, one lookup."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from connector_suite.reference_backend import BASE_URL, TOKEN
from connector_suite.reference_connector import (
    ReferenceConnector,
    ReferenceHarness,
    ReferenceSettings,
)
from usm_bridge.connector import ConnectorSettings, RemoteDraft, RemoteRef
from usm_bridge.http import RetryPolicy, Timeouts
from usm_bridge.http_connector import ABSENCE_TRUSTED_FOR, HttpConnectorSettings
from usm_bridge.testing import FakeClock, Fault


class Ledger(ReferenceConnector):
    """Records in a dict instead of the tool, counting the lookups its creates make."""

    def __init__(self, clock: FakeClock) -> None:
        settings = ReferenceSettings(base_url=BASE_URL, token=TOKEN)
        super().__init__("ledger", settings, clock=clock.monotonic)
        self.records: dict[str, str] = {}
        self.lookups = 0

    def _find(self, correlation: str) -> RemoteRef | None:
        self.lookups += 1
        remote_id = self.records.get(correlation)
        return RemoteRef(remote_id=remote_id) if remote_id else None

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        return self._note_lookup(correlation, self._find(correlation))

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        if not self._absent_just_now(correlation) and (found := self._find(correlation)):
            return found
        self.records[correlation] = str(len(self.records) + 1)
        return RemoteRef(remote_id=self.records[correlation])


DRAFT = RemoteDraft(fields={"title": "Printer jammed"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> Ledger:
    return Ledger(clock)


# -- settings ---------------------------------------------------------------------------------


def test_settings_give_the_client_its_timeouts_and_retry_policy() -> None:
    settings = HttpConnectorSettings(
        connect_timeout=3.0, read_timeout=9.0, max_attempts=2, retry_budget=20.0
    )
    assert settings.timeouts() == Timeouts(connect=3.0, read=9.0)
    assert settings.retry_policy() == RetryPolicy(
        max_attempts=2, budget=20.0, backoff_initial=1.0, backoff_max=30.0
    )
    assert HttpConnectorSettings().retry_policy() == RetryPolicy()
    assert HttpConnectorSettings().timeouts() == Timeouts()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"retry_budget": -1},
        {"backoff_initial": -0.5},
        {"backoff_max": -1},
    ],
)
def test_settings_no_client_could_use_are_refused_when_loaded(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        HttpConnectorSettings.model_validate(bad)


def test_a_connector_refuses_settings_of_another_model() -> None:
    with pytest.raises(TypeError, match="ReferenceConnector takes ReferenceSettings"):
        ReferenceConnector("reference", ConnectorSettings())


# -- the clients --------------------------------------------------------------------------------


@pytest.fixture
def harness() -> Iterator[ReferenceHarness]:
    harness = ReferenceHarness()
    yield harness
    harness.close()


def test_every_client_gets_the_settings_and_the_seams(harness: ReferenceHarness) -> None:
    connector = harness.make_connector()
    assert isinstance(connector, ReferenceConnector)
    harness.inject_fault(Fault.RATE_LIMITED)
    other = connector.http_client(BASE_URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert other.timeouts == Timeouts(connect=5.0, read=30.0)
    assert other.retry == connector.config.retry_policy()
    assert other.get("api/myself").json()["name"]
    # Through the injected session and fake clock: the tool's Retry-After, waited on paper.
    assert harness.clock.sleeps == [3.0]
    # The retry's read timeout is cut to what is left of the retry budget after the wait.
    left = min(30.0, other.retry.budget - 3.0)
    assert [timeout for _, _, timeout in harness.tool.requests] == [(5.0, 30.0), (5.0, left)]
    connector.close()


def test_close_closes_the_sessions_the_clients_made_and_leaves_an_injected_one() -> None:
    settings = ReferenceSettings(base_url=BASE_URL, token=TOKEN)
    connector = ReferenceConnector("reference", settings)
    extra = connector.http_client(BASE_URL)
    owned = [connector.http._session, extra._session]
    closed: list[requests.Session] = []
    for session in owned:
        session.close = lambda session=session: closed.append(session)  # type: ignore[method-assign]
    connector.close()
    assert closed == owned
    connector.close()  # twice is harmless
    assert closed == owned

    injected = requests.Session()
    injected.close = lambda: pytest.fail("an injected session belongs to its giver")  # type: ignore[method-assign]
    ReferenceConnector("reference", settings, session=injected).close()


# -- one correlation lookup per create ----------------------------------------------------------


def test_a_create_right_after_an_empty_lookup_does_not_look_again(ledger: Ledger) -> None:
    assert ledger.find_by_correlation("c-1") is None
    ledger.create(DRAFT, "c-1")
    assert ledger.lookups == 1
    assert list(ledger.records) == ["c-1"]


def test_a_repeated_create_looks_for_itself_and_finds_the_first(ledger: Ledger) -> None:
    assert ledger.find_by_correlation("c-1") is None
    first = ledger.create(DRAFT, "c-1")
    second = ledger.create(DRAFT, "c-1")  # the note was used up by the first create
    assert second == first
    assert ledger.records == {"c-1": "1"}
    assert ledger.lookups == 2


def test_without_a_lookup_just_before_create_looks_for_itself(ledger: Ledger) -> None:
    ledger.create(DRAFT, "c-1")
    assert ledger.lookups == 1


def test_an_empty_lookup_of_another_correlation_is_not_trusted(ledger: Ledger) -> None:
    assert ledger.find_by_correlation("c-2") is None
    ledger.create(DRAFT, "c-1")
    assert ledger.lookups == 2


def test_a_lookup_that_found_the_record_leaves_nothing_to_trust(ledger: Ledger) -> None:
    ledger.records["c-1"] = "7"
    assert ledger.find_by_correlation("c-1") is not None
    assert ledger.create(DRAFT, "c-1").remote_id == "7"
    assert ledger.lookups == 2


def test_an_empty_lookup_is_trusted_only_for_a_moment(ledger: Ledger, clock: FakeClock) -> None:
    assert ledger.find_by_correlation("c-1") is None
    clock.advance(ABSENCE_TRUSTED_FOR + 0.1)
    ledger.records["c-1"] = "7"  # made meanwhile, by another process
    assert ledger.create(DRAFT, "c-1").remote_id == "7"
    assert ledger.lookups == 2


def test_an_empty_lookup_in_another_thread_is_not_trusted(ledger: Ledger) -> None:
    elsewhere = threading.Thread(target=ledger.find_by_correlation, args=("c-1",))
    elsewhere.start()
    elsewhere.join()
    ledger.records["c-1"] = "7"
    assert ledger.create(DRAFT, "c-1").remote_id == "7"
    assert ledger.lookups == 2
