"""The standard suite's harness for the Jira connector, and helpers shared by the Jira tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple

from jira_openapi import spec_validator
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.simulator import JiraSimulator, Reply, SimClock, SimFault
from usm_bridge_jira.simulator.state import Flavour

from usm_bridge.connector import Connector, RemoteDraft
from usm_bridge.testing import ConnectorHarness, FakeClock, Fault

START = datetime(2024, 3, 30, 23, 50, tzinfo=UTC)  # 00:50 in Berlin, the night before DST
FAULTS = {
    Fault.RATE_LIMITED: SimFault.RATE_LIMITED,
    Fault.RATE_LIMITED_NO_RETRY_AFTER: SimFault.RATE_LIMITED_NO_RETRY_AFTER,
    Fault.UNAVAILABLE: SimFault.UNAVAILABLE,
    Fault.SERVER_ERROR: SimFault.SERVER_ERROR,
}


class V3Recorder:
    """Collects every v3 response the simulator serves, to validate against the spec."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, Any]] = []

    def __call__(self, method: str, path: str, status: int, body: Any) -> None:
        if path.startswith("/rest/api/3/"):
            self.seen.append((method, path, status, body))

    def validate(self) -> int:
        validator = spec_validator()
        for method, path, status, body in self.seen:
            validator.check(method, path, status, body)
        return len(self.seen)


def start_simulator(
    flavour: Flavour, *, start: datetime = START, time_zone: str = "Europe/Berlin"
) -> tuple[JiraSimulator, V3Recorder]:
    """A started simulator with a frozen clock, recording its v3 responses and checking each
    write's body against the official OpenAPI description (a misfit is a 400)."""
    simulator = JiraSimulator(flavour, clock=SimClock(start), time_zone=time_zone).start()
    recorder = V3Recorder()
    simulator.site.observer = recorder
    simulator.site.request_check = spec_validator().request_problem
    return simulator, recorder


def connector_for(
    simulator: JiraSimulator, clock: FakeClock | None = None, **overrides: Any
) -> JiraConnector:
    """A connector signed in to ``simulator``, retrying without really waiting."""
    clock = clock or FakeClock()
    settings = {
        "base_url": simulator.base_url,
        "deployment": simulator.flavour,
        "projects": ["IT"],
        "page_size": 3,
        "max_attempts": 4,
        "retry_budget": 30.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "read_timeout": 5.0,
        **simulator.credentials(),
        **overrides,
    }
    connector = JiraConnector(
        "jira-test",
        JiraConnector.settings_model.model_validate(settings),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )
    return connector


@contextmanager
def connected(simulator: JiraSimulator, **settings: Any) -> Iterator[JiraConnector]:
    """:func:`connector_for`, closed afterwards."""
    connector = connector_for(simulator, **settings)
    try:
        yield connector
    finally:
        connector.close()


class Served(NamedTuple):
    """One request the simulator answered: its path after ``rest/api/<version>/``."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


#: Answers a request (method, path, JSON body) in the site's place, or ``None`` to let it.
Refusal = Callable[[str, str, Any], Reply | None]


@contextmanager
def served(simulator: JiraSimulator, refuse: Refusal | None = None) -> Iterator[list[Served]]:
    """Every request the simulator answers meanwhile, in order.

    ``refuse`` may answer a request in the site's place (a site whose validation is stricter
    than its screen metadata says).
    """
    seen: list[Served] = []
    answer = simulator.answer

    def recording(
        method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        payload = json.loads(body) if body else None
        reply = refuse(method, path, payload) if refuse is not None else None
        if reply is None:
            reply = answer(method, path, query, headers, body)
        where = path.split("/rest/api/", 1)[1][2:]
        seen.append(Served(method, where, dict(query), payload, reply.status))
        return reply

    simulator.answer = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        simulator.answer = answer  # type: ignore[method-assign]


class JiraHarness(ConnectorHarness):
    """Jira Cloud simulated on loopback, reached over real HTTP."""

    flavour: ClassVar[Flavour] = "cloud"
    seed_count: ClassVar[int] = 7
    settings: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.simulator, self.recorder = start_simulator(self.flavour)
        self.site = self.simulator.site

    def make_connector(self) -> Connector:
        return connector_for(self.simulator, **self.settings)

    def seed(self, count: int) -> list[str]:
        return [str(issue.id) for issue in self.site.seed(count)]

    def touch(self, remote_id: str) -> None:
        issue = self.site.issue(remote_id)
        assert issue is not None
        self.site.touch(issue)

    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        self.simulator.fail_next(FAULTS[fault], times)

    def inject_rejection(self, message: str) -> None:
        self.simulator.reject_next(message)

    def make_draft(self, text: str) -> RemoteDraft:
        return RemoteDraft(
            fields={
                "fields": {
                    "summary": text,
                    "description": "Opened by the standard suite",
                    "issuetype": {"name": "[System] Incident"},
                    "priority": {"name": "High"},
                    "impact": {"value": "Significant / Large"},
                }
            }
        )

    def make_update(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"fields": {"summary": text}}, status="In Progress")

    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        issue = self.site.issue(remote_id)
        if issue is None:
            return None
        with self.site.lock:
            shown = self.site.issue_json(issue, "2", None)
            shown["properties"] = dict(issue.properties)
            return shown

    def all_remote_ids(self) -> list[str]:
        return [str(issue_id) for issue_id in self.site.issues]

    def let_time_pass(self) -> None:
        self.site.clock.advance(timedelta(minutes=10))

    def close(self) -> None:
        self.simulator.stop()
        self.recorder.validate()


class JiraDataCenterHarness(JiraHarness):
    """Jira Data Center simulated on loopback; the connector detects the deployment itself."""

    flavour: ClassVar[Flavour] = "datacenter"
    settings: ClassVar[dict[str, Any]] = {"deployment": "auto"}
