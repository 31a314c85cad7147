"""Harnesses of the standard connector suite: the connector against a real loopback simulator.

One harness per shipped table (and one with OAuth): each starts its own
:class:`~usm_bridge_servicenow.simulator.ServiceNowSimulator` with a frozen clock, so that every
seeded record shares one second, the case that breaks naive incremental reads. The connector
waits through a :class:`~usm_bridge.testing.FakeClock`, so retries never really sleep.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import requests
from usm_bridge.connector import RemoteDraft
from usm_bridge.testing import ConnectorHarness, FakeClock, Fault

from .connector import ServiceNowConnector, ServiceNowSettings
from .simulator import ServiceNowSimulator, SimClock, SimFault

__all__ = [
    "ChangeRequestHarness",
    "IncidentHarness",
    "IncidentOAuthHarness",
    "ProblemHarness",
    "RequestHarness",
    "RequestedItemHarness",
    "ServiceNowHarness",
    "local_https",
]

_FAULTS: dict[Fault, SimFault] = {
    Fault.RATE_LIMITED: SimFault("429", retry_after=2),
    Fault.RATE_LIMITED_NO_RETRY_AFTER: SimFault("429-bare"),
    Fault.UNAVAILABLE: SimFault("503"),
    Fault.SERVER_ERROR: SimFault("500"),
}


def local_https(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 from a new local authority, and that authority's
    certificate written in ``folder``: a simulator served over HTTPS (pysnc, ServiceNow's own
    client, refuses plain ``http://``) that ``requests`` trusts once ``REQUESTS_CA_BUNDLE``
    names the certificate. Needs the ``test`` extra's ``trustme``."""
    import trustme  # only the tests use it

    authority = trustme.CA()
    bundle = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context, bundle


class ServiceNowHarness(ConnectorHarness):
    """The connector on ``table`` against a fresh simulator."""

    table: ClassVar[str] = "incident"
    auth: ClassVar[str] = "basic"
    page_size: ClassVar[int] = 3
    seed_count: ClassVar[int] = 7
    #: The state of a new record, and the one ``make_update`` moves it to, with the fields
    #: that move needs.
    new_state: ClassVar[str] = "1"
    next_state: ClassVar[str] = "2"
    next_fields: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.sim_clock = SimClock(frozen_at=datetime(2024, 5, 1, 9, 30, tzinfo=UTC))
        self.sim = ServiceNowSimulator(clock=self.sim_clock).start()
        self.session = requests.Session()
        self._seeded = 0

    def settings(self) -> dict[str, Any]:
        """The connector's settings (override to vary)."""
        settings: dict[str, Any] = {
            "instance_url": self.sim.base_url,
            "tables": [self.table],
            "username": self.sim.username,
            "password": self.sim.password,
            "page_size": self.page_size,
            "max_attempts": 4,
            "retry_budget": 60.0,
            "backoff_initial": 0.1,
            "backoff_max": 1.0,
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
        }
        if self.auth == "oauth":
            settings.update(
                auth="oauth", client_id=self.sim.client_id, client_secret=self.sim.client_secret
            )
        return settings

    def make_connector(self) -> ServiceNowConnector:
        """The connector, sending through the harness's session and fake clock."""
        return ServiceNowConnector(
            f"sn-{self.table}",
            ServiceNowSettings.model_validate(self.settings()),
            session=self.session,
            sleep=self.clock.sleep,
            clock=self.clock.monotonic,
            now=self.clock.now,
        )

    def seed(self, count: int) -> list[str]:
        """Records created in the instance by a person (not the bridge)."""
        ids = []
        for _ in range(count):
            self._seeded += 1
            ids.append(
                self.sim.insert(
                    self.table,
                    {"short_description": f"Seeded {self._seeded}", "impact": "2", "urgency": "3"},
                    user="beth.anglin",
                )
            )
        return ids

    def touch(self, remote_id: str) -> None:
        """A person edits the record (within the same second: the clock is frozen)."""
        self.sim.update(
            self.table, remote_id, {"description": "edited by a person"}, user="beth.anglin"
        )

    def let_time_pass(self) -> None:
        """A second passes on the instance."""
        self.sim_clock.advance(1)

    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        """The next requests fail as ``fault`` says."""
        self.sim.inject(_FAULTS[fault], times)

    def inject_rejection(self, message: str) -> None:
        """The next request is refused with 400 and ServiceNow's error body."""
        self.sim.inject(SimFault("reject", status=400, message=message))

    def _state_field(self) -> str:
        return "request_state" if self.table == "sc_request" else "state"

    def make_draft(self, text: str) -> RemoteDraft:
        """A new record holding ``text`` in its short description."""
        return RemoteDraft(
            fields={
                "short_description": text,
                "description": "Opened by the standard suite",
                "impact": "2",
                "urgency": "2",
            },
            status=self.new_state,
        )

    def make_update(self, text: str) -> RemoteDraft:
        """``text`` into the short description, with a state change and its required fields."""
        return RemoteDraft(
            fields={"short_description": text},
            status=self.next_state,
            status_fields=dict(self.next_fields),
        )

    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        """The record and its journal, as the instance holds them."""
        record = self.sim.get(self.table, remote_id)
        if record is None:
            return None
        return {**record, "journal": self.sim.journal(remote_id)}

    def all_remote_ids(self) -> list[str]:
        """Every record of the table."""
        return self.sim.ids(self.table)

    def close(self) -> None:
        """Close the session, stop the simulator."""
        self.session.close()
        self.sim.stop()


class IncidentHarness(ServiceNowHarness):
    """``incident``; the update resolves it, which needs close code and notes."""

    table = "incident"
    next_state = "6"
    next_fields: ClassVar[dict[str, str]] = {
        "close_code": "Solution provided",
        "close_notes": "Resolved by the suite",
    }


class IncidentOAuthHarness(IncidentHarness):
    """``incident`` through OAuth (password grant)."""

    auth = "oauth"


class RequestHarness(ServiceNowHarness):
    """``sc_request``, whose state lives in ``request_state``."""

    table = "sc_request"
    new_state = "requested"
    next_state = "in_process"


class RequestedItemHarness(ServiceNowHarness):
    """``sc_req_item``."""

    table = "sc_req_item"
    new_state = "1"
    next_state = "2"


class ChangeRequestHarness(ServiceNowHarness):
    """``change_request``."""

    table = "change_request"
    new_state = "-5"
    next_state = "-4"


class ProblemHarness(ServiceNowHarness):
    """``problem``."""

    table = "problem"
    new_state = "101"
    next_state = "102"
