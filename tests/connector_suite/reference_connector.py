"""The reference connector: a small, correct connector for the in-memory tool, and its harness.

It proves the standard suite (a correct connector passes it) and is the base that
``test_suite_catches_broken`` breaks on purpose (a broken one fails it, naming the promise).
It is written the way the Jira and ServiceNow connectors are: an
:class:`~usm_bridge.http_connector.HttpConnector`, so every request goes through an
:class:`~usm_bridge.http.HttpClient` made with the settings' timeouts and retry policy and the
test seams; a checkpoint after each page; create made idempotent by looking up the correlation
first (always: the single lookup per create that the base offers is left to the real ones).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Unpack

import requests
from pydantic import SecretStr

from connector_suite.reference_backend import (
    BASE_URL,
    TOKEN,
    InMemoryAdapter,
    ReferenceTool,
    Reply,
)
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    RawRecord,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
    VocabularyValue,
)
from usm_bridge.errors import RemoteError
from usm_bridge.http import BearerAuth
from usm_bridge.http_connector import HttpConnector, HttpConnectorSettings, HttpSeams
from usm_bridge.testing import ConnectorHarness, FakeClock, Fault


class ReferenceSettings(HttpConnectorSettings):
    base_url: str
    token: SecretStr
    page_size: int = 50


class ReferenceConnector(HttpConnector[ReferenceSettings]):
    kind = "reference"
    settings_model = ReferenceSettings
    description = "In-memory reference tool (tests only)"

    def __init__(self, name: str, settings: ConnectorSettings, **seams: Unpack[HttpSeams]) -> None:
        super().__init__(name, settings, **seams)
        token = BearerAuth(self.config.token.get_secret_value())
        self.http = self.http_client(self.config.base_url, auth=token)

    def check(self) -> CheckResult:
        try:
            me = self.http.get("api/myself").json()
        except RemoteError as error:
            return CheckResult(ok=False, detail=str(error))
        return CheckResult(
            ok=True,
            detail=f"signed in as {me['name']}",
            facts={"account": me["name"], "time_zone": me["timeZone"]},
        )

    def discover(self) -> Vocabulary:
        body = self.http.get("api/vocabulary").json()

        def values(name: str) -> list[VocabularyValue]:
            return [VocabularyValue(value=v["id"], label=v["name"]) for v in body[name]]

        return Vocabulary(
            statuses=values("statuses"), priorities=values("priorities"), types=values("types")
        )

    def _record(self, ticket: Mapping[str, Any]) -> RawRecord:
        return RawRecord(
            remote_id=ticket["id"],
            remote_key=ticket["key"],
            updated=datetime.fromisoformat(ticket["updated"]),
            url=f"{self.config.base_url}api/tickets/{ticket['id']}",
            data=dict(ticket),
        )

    def _page(self, after: int) -> tuple[list[dict[str, Any]], bool]:
        params = {"changed_after": after, "limit": self.config.page_size}
        body = self.http.get("api/tickets", params=params).json()
        return body["tickets"], bool(body["isLast"])

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        after = int(cursor) if cursor else 0
        while True:
            tickets, last = self._page(after)
            for ticket in tickets:
                yield self._record(ticket)
            if tickets:
                after = int(tickets[-1]["version"])
            yield Checkpoint(cursor=str(after))
            if last or not tickets:
                return

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        body = self.http.get("api/tickets", params={"correlation": correlation}).json()
        if not body["tickets"]:
            return None
        ticket = body["tickets"][0]
        return RemoteRef(remote_id=ticket["id"], remote_key=ticket["key"])

    def _post_ticket(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        payload = {"fields": draft.fields, "status": draft.status, "correlation": correlation}
        body = self.http.post("api/tickets", json=payload).json()
        return RemoteRef(remote_id=body["id"], remote_key=body["key"], url=body["self"])

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        # The lookup first is what makes a create whose answer was lost safe to repeat.
        return self.find_by_correlation(correlation) or self._post_ticket(draft, correlation)

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        self.http.put(
            f"api/tickets/{remote_id}", json={"fields": draft.fields, "status": draft.status}
        )

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        payload = {"body": comment.body, "public": comment.public}
        body = self.http.post(f"api/tickets/{remote_id}/comments", json=payload).json()
        return str(body["id"])

    def remote_ids(self) -> Iterator[str] | None:
        # Paging through every ticket from version 0 lists them all; a failed page raises, so
        # the census never sees a listing cut short as complete.
        after = 0
        while True:
            tickets, last = self._page(after)
            for ticket in tickets:
                yield str(ticket["id"])
            if last or not tickets:
                return
            after = int(tickets[-1]["version"])


_FAULTS: dict[Fault, Reply] = {
    Fault.RATE_LIMITED: Reply(
        429, {"errorMessages": ["Rate limit exceeded."]}, {"Retry-After": "3"}
    ),
    Fault.RATE_LIMITED_NO_RETRY_AFTER: Reply(429, "Rate limit exceeded"),
    Fault.UNAVAILABLE: Reply(503, "<html><body>Service Unavailable</body></html>"),
    Fault.SERVER_ERROR: Reply(500, {"errorMessages": ["Internal server error"], "errors": {}}),
}


class ReferenceHarness(ConnectorHarness):
    """The reference tool in memory, reached through a real ``requests.Session``."""

    seed_count: ClassVar[int] = 7
    page_size: ClassVar[int] = 3
    connector_class: ClassVar[type[ReferenceConnector]] = ReferenceConnector

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.tool = ReferenceTool(self.clock)
        self.session = requests.Session()
        self.session.mount(BASE_URL, InMemoryAdapter(self.tool))

    def settings(self) -> dict[str, Any]:
        return {
            "base_url": BASE_URL,
            "token": TOKEN,
            "page_size": self.page_size,
            "connect_timeout": 5.0,
            "read_timeout": 30.0,
            "max_attempts": 4,
            "retry_budget": 30.0,
            "backoff_initial": 0.1,
        }

    def make_connector(self) -> Connector:
        settings = self.connector_class.settings_model.model_validate(self.settings())
        return self.connector_class(
            "reference",
            settings,
            session=self.session,
            sleep=self.clock.sleep,
            clock=self.clock.monotonic,
            now=self.clock.now,
        )

    def seed(self, count: int) -> list[str]:
        return self.tool.seed(count)

    def touch(self, remote_id: str) -> None:
        self.tool.touch(remote_id)

    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        self.tool.fail_next(_FAULTS[fault], times)

    def inject_rejection(self, message: str) -> None:
        self.tool.fail_next(Reply(400, {"errorMessages": [message], "errors": {}}))

    def make_draft(self, text: str) -> RemoteDraft:
        return RemoteDraft(
            fields={"title": text, "description": "Opened by the standard suite", "priority": "2"},
            status="new",
        )

    def make_update(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"title": text}, status="in_progress")

    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        return self.tool.tickets.get(remote_id)

    def all_remote_ids(self) -> list[str]:
        return list(self.tool.tickets)

    def close(self) -> None:
        self.session.close()
