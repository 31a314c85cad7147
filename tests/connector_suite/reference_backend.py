"""An in-memory ticket tool behind a real ``requests`` transport.

The reference connector reaches it through a genuine ``requests.Session`` on which
:class:`InMemoryAdapter` is mounted, so every request goes through ``usm_bridge.http``'s
timeouts, retries and error handling exactly as it would against a remote server, while nothing
leaves the process.

The tool's API is small and Jira-flavoured: bearer-token auth, JSON bodies, errors shaped
``{"errorMessages": [...], "errors": {field: message}}``, and a change counter (``version``)
that orders every write, which makes incremental reads exact.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from usm_bridge.testing import FakeClock

BASE_URL = "https://reference.test/"
TOKEN = "reference-s3cret-token"  # a test credential

STATUSES = {
    "new": "New",
    "in_progress": "In Progress",
    "on_hold": "On Hold",
    "resolved": "Resolved",
}
PRIORITIES = {"1": "Critical", "2": "High", "3": "Moderate", "4": "Low"}
TYPES = {"incident": "Incident", "request": "Service Request", "change": "Change"}


@dataclass
class Reply:
    """What the tool answers: status, headers, body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def _error(status: int, /, *messages: str, **fields: str) -> Reply:
    return Reply(status, {"errorMessages": list(messages), "errors": fields})


class ReferenceTool:
    """The tool's state and its HTTP API."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tickets: dict[str, dict[str, Any]] = {}
        self.version = 0
        self._next_id = 100
        self._next_comment = 1
        self._faults: deque[Reply] = deque()
        #: (method, path, timeout) of every request that reached the tool.
        self.requests: list[tuple[str, str, object]] = []

    # -- what a person (or the harness) does in the tool ---------------------------------------

    def _stamp(self, ticket: dict[str, Any]) -> None:
        self.version += 1
        ticket["version"] = self.version
        ticket["updated"] = self.clock.now().isoformat()

    def add(
        self, fields: Mapping[str, Any], status: str = "new", correlation: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        ticket_id = str(self._next_id)
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "key": f"REF-{ticket_id}",
            "title": "",
            "description": "",
            "priority": "3",
            "type": "incident",
            **fields,
            "status": status,
            "correlation": correlation,
            "created": self.clock.now().isoformat(),
            "comments": [],
        }
        self._stamp(ticket)
        self.tickets[ticket_id] = ticket
        return ticket

    def seed(self, count: int) -> list[str]:
        return [
            self.add({"title": f"Printer {n} on floor 2 is jammed"})["id"] for n in range(count)
        ]

    def touch(self, ticket_id: str) -> None:
        ticket = self.tickets[ticket_id]
        ticket["title"] += " (again)"
        self._stamp(ticket)

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``reply`` instead of serving them."""
        self._faults.extend([reply] * times)

    # -- the HTTP API ---------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(url)
        path = parts.path.strip("/").split("/")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        if self._faults:
            return self._faults.popleft()
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error(401, "You are not authenticated.")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "The request body is not valid JSON.")
        match method, path:
            case "GET", ["api", "myself"]:
                return Reply(200, {"name": "usm-bridge", "timeZone": "UTC"})
            case "GET", ["api", "vocabulary"]:
                return Reply(200, self._vocabulary())
            case "GET", ["api", "tickets"]:
                return self._search(query)
            case "POST", ["api", "tickets"]:
                return self._create(payload)
            case "GET", ["api", "tickets", ticket_id] if ticket_id in self.tickets:
                return Reply(200, self.tickets[ticket_id])
            case "PUT", ["api", "tickets", ticket_id] if ticket_id in self.tickets:
                return self._update(self.tickets[ticket_id], payload)
            case "POST", ["api", "tickets", ticket_id, "comments"] if ticket_id in self.tickets:
                return self._comment(self.tickets[ticket_id], payload)
            case _, ["api", "tickets", *_]:
                return _error(404, "Issue does not exist or you do not have permission to see it.")
        return _error(404, f"No route for {method} {parts.path}")

    @staticmethod
    def _vocabulary() -> dict[str, Any]:
        def values(table: Mapping[str, str]) -> list[dict[str, str]]:
            return [{"id": value, "name": label} for value, label in table.items()]

        return {
            "statuses": values(STATUSES),
            "priorities": values(PRIORITIES),
            "types": values(TYPES),
        }

    def _search(self, query: Mapping[str, str]) -> Reply:
        tickets = sorted(self.tickets.values(), key=lambda ticket: int(ticket["version"]))
        if "correlation" in query:
            found = [t for t in tickets if t["correlation"] == query["correlation"]]
            return Reply(200, {"tickets": found, "isLast": True})
        try:
            after = int(query.get("changed_after", "0"))
            limit = int(query.get("limit", "50"))
        except ValueError:
            return _error(400, "changed_after and limit must be whole numbers.")
        newer = [ticket for ticket in tickets if ticket["version"] > after]
        return Reply(200, {"tickets": newer[:limit], "isLast": len(newer) <= limit})

    def _validate(self, fields: Any, status: Any, *, creating: bool) -> Reply | None:
        if not isinstance(fields, dict):
            return _error(400, "fields must be an object.")
        unknown = sorted(set(fields) - {"title", "description", "priority", "type"})
        if unknown:
            return _error(400, **{name: "Field does not exist." for name in unknown})
        if (creating or "title" in fields) and not fields.get("title"):
            return _error(400, title="Title is required.")
        if status is not None and status not in STATUSES:
            return _error(400, status=f"'{status}' is not a valid status.")
        return None

    def _create(self, payload: dict[str, Any]) -> Reply:
        fields, status = payload.get("fields", {}), payload.get("status")
        refusal = self._validate(fields, status, creating=True)
        if refusal:
            return refusal
        ticket = self.add(fields, status or "new", payload.get("correlation"))
        link = f"{BASE_URL}api/tickets/{ticket['id']}"
        return Reply(201, {"id": ticket["id"], "key": ticket["key"], "self": link})

    def _update(self, ticket: dict[str, Any], payload: dict[str, Any]) -> Reply:
        fields, status = payload.get("fields", {}), payload.get("status")
        refusal = self._validate(fields, status, creating=False)
        if refusal:
            return refusal
        ticket.update(fields)
        if status is not None:
            ticket["status"] = status
        self._stamp(ticket)
        return Reply(204)

    def _comment(self, ticket: dict[str, Any], payload: dict[str, Any]) -> Reply:
        if not isinstance(payload.get("body"), str) or not payload["body"]:
            return _error(400, body="Comment body can not be empty!")
        comment = {
            "id": f"c{self._next_comment}",
            "body": payload["body"],
            "public": bool(payload.get("public", True)),
            "created": self.clock.now().isoformat(),
        }
        self._next_comment += 1
        ticket["comments"].append(comment)
        self._stamp(ticket)
        return Reply(201, comment)


class InMemoryAdapter(BaseAdapter):
    """A ``requests`` transport that hands each request to a :class:`ReferenceTool`."""

    def __init__(self, tool: ReferenceTool) -> None:
        super().__init__()
        self.tool = tool

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: object = None,
    ) -> requests.Response:
        if timeout is None or (isinstance(timeout, tuple) and None in timeout):
            # usm_bridge.http promises a timeout on every request; hold it to that.
            raise AssertionError(f"{request.method} {request.url} sent without a timeout")
        body = request.body or b""
        url = request.url or ""
        method = request.method or "GET"
        self.tool.requests.append((method, urlsplit(url).path, timeout))
        reply = self.tool.handle(
            method, url, request.headers, body.encode() if isinstance(body, str) else body
        )
        response = requests.Response()
        response.status_code = reply.status
        response.reason = HTTPStatus(reply.status).phrase
        response.headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json"
                if not isinstance(reply.body, str)
                else "text/plain"
            }
            | reply.headers
        )
        response.raw = io.BytesIO(reply.payload())
        response.encoding = "utf-8"
        response.url = url
        response.request = request
        response.connection = self  # type: ignore[assignment]
        return response

    def close(self) -> None:
        """Nothing to release: no sockets."""
