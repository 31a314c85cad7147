"""The reference connector on its own: usm_bridge.http at work through a real requests.Session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector_suite.reference_backend import TOKEN
from connector_suite.reference_connector import ReferenceConnector, ReferenceHarness
from usm_bridge.connector import Connector, RemoteDraft
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.testing import Fault


@pytest.fixture
def harness() -> Iterator[ReferenceHarness]:
    harness = ReferenceHarness()
    yield harness
    harness.close()


@pytest.fixture
def connector(harness: ReferenceHarness) -> Iterator[Connector]:
    connector = harness.make_connector()
    yield connector
    connector.close()


def test_every_request_reaches_the_tool_with_both_timeouts(
    harness: ReferenceHarness, connector: Connector
) -> None:
    harness.seed(4)
    list(connector.read_changes(None))
    connector.check()
    assert harness.tool.requests
    assert {timeout for _, _, timeout in harness.tool.requests} == {(5.0, 30.0)}


def test_retry_after_from_the_tool_is_what_the_connector_waits(
    harness: ReferenceHarness, connector: Connector
) -> None:
    harness.seed(1)
    harness.inject_fault(Fault.RATE_LIMITED, times=2)
    list(connector.read_changes(None))
    assert harness.clock.sleeps == [3.0, 3.0]


def test_a_draft_the_tool_refuses_names_the_field(connector: Connector) -> None:
    with pytest.raises(PermanentRemoteError) as raised:
        connector.create(RemoteDraft(fields={"title": "x"}, status="done"), "corr-1")
    assert raised.value.status == 400
    assert raised.value.remote_message == "status: 'done' is not a valid status."


def test_check_with_a_wrong_token_says_why_without_the_token(harness: ReferenceHarness) -> None:
    settings = ReferenceConnector.settings_model.model_validate(
        {**harness.settings(), "token": "wrong-token-123"}
    )
    connector = ReferenceConnector("reference", settings, session=harness.session)
    result = connector.check()
    assert not result.ok
    assert "You are not authenticated." in result.detail
    assert "wrong-token-123" not in result.detail
    assert TOKEN not in result.detail


def test_a_missing_record_is_a_permanent_error(connector: Connector) -> None:
    with pytest.raises(PermanentRemoteError, match="Issue does not exist"):
        connector.update("999", RemoteDraft(fields={"title": "x"}))
