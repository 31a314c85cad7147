"""The simulators in child processes, and the bare page loops the backfill benchmarks compare with.

Shared by ``bench_jira_backfill.py``, ``bench_servicenow_backfill.py`` and
``bench_sync_backfill.py``. Each simulator runs as ``python -m usm_bridge_<tool>.simulator`` in
its own process, so that its memory (every seeded record) and CPU never count as the bridge's.

A bare loop fetches every page with nothing but ``requests`` and ``json``, in the request shape
the connector itself uses: it is the rate the server and the HTTP stack allow, the yardstick
against which the bridge's rate is a ratio.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, NamedTuple, Self

import requests

#: Issues per page of Jira's ``/search/jql`` (the connector's ``page_size`` default).
JIRA_PAGE = 100
#: Records per page of ServiceNow's Table API (the connector's ``page_size`` default).
SERVICENOW_PAGE = 1000
#: The project the Jira simulator seeds (its first).
JIRA_PROJECT = "IT"
#: The JQL of the connector's backfill of that project (no cursor yet).
JIRA_JQL = f"project = {JIRA_PROJECT} ORDER BY updated ASC, key ASC"
SERVICENOW_PASSWORD = "bench-password"  # noqa: S105 - a throwaway loopback simulator's


class BareLoop(NamedTuple):
    """What a bare page loop fetched: records, HTTP requests, wall seconds."""

    records: int
    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds


class _SimulatorProcess:
    """A simulator module run in a child process; stops it on ``close`` or leaving ``with``."""

    def __init__(self, module: str, *arguments: str) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if " at " not in first:
            self.process.kill()
            self.process.wait(timeout=10)
            raise RuntimeError(f"{module} did not start: {first!r}")
        self.base_url = first.rsplit(" ", 1)[-1].strip()

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class JiraSimulatorProcess(_SimulatorProcess):
    """The Jira Cloud simulator with ``issues`` issues (one comment each) in project IT."""

    def __init__(self, issues: int) -> None:
        super().__init__("usm_bridge_jira.simulator", "--port", "0", "--seed-issues", str(issues))
        self.email = self._line().split(" = ", 1)[1].strip()
        self.token = self._line().split(" = ", 1)[1].strip()

    def settings(self) -> dict[str, Any]:
        """The Jira connector's settings for this simulator (a config's instance settings)."""
        return {
            "base_url": self.base_url,
            "deployment": "cloud",
            "email": self.email,
            "api_token": self.token,
            "projects": [JIRA_PROJECT],
            "page_size": JIRA_PAGE,
        }


class ServiceNowSimulatorProcess(_SimulatorProcess):
    """The ServiceNow simulator with ``records`` incidents, spread over time as a desk's are."""

    username = "admin"
    password = SERVICENOW_PASSWORD

    def __init__(self, records: int) -> None:
        super().__init__(
            "usm_bridge_servicenow.simulator",
            "--seed-records",
            str(records),
            "--password",
            SERVICENOW_PASSWORD,
        )
        for _ in range(6):  # the credentials and counts it prints after its address
            self._line()

    def settings(self, page_size: int = SERVICENOW_PAGE) -> dict[str, Any]:
        """The ServiceNow connector's settings for this simulator (incidents, journal read)."""
        return {
            "instance_url": self.base_url,
            "tables": ["incident"],
            "username": self.username,
            "password": self.password,
            "page_size": page_size,
            "read_journal": True,
        }


def jira_bare_loop(sim: JiraSimulatorProcess, page: int = JIRA_PAGE) -> BareLoop:
    """Every issue through ``/search/jql`` with ``fields=*all`` and ``nextPageToken`` paging."""
    count = sent = 0
    token = None
    began = time.perf_counter()
    with requests.Session() as session:
        session.auth = (sim.email, sim.token)
        while True:
            params: dict[str, Any] = {"jql": JIRA_JQL, "maxResults": page, "fields": "*all"}
            if token:
                params["nextPageToken"] = token
            response = session.get(
                f"{sim.base_url}/rest/api/3/search/jql", params=params, timeout=60
            )
            sent += 1
            body = response.json()
            count += len(body["issues"])
            token = body.get("nextPageToken")
            if body.get("isLast") or not token:
                break
    return BareLoop(count, sent, time.perf_counter() - began)


def servicenow_bare_loop(sim: ServiceNowSimulatorProcess, page: int = SERVICENOW_PAGE) -> BareLoop:
    """Every incident through the Table API, offset paging ordered as the connector orders."""
    count = sent = 0
    began = time.perf_counter()
    with requests.Session() as session:
        session.auth = (sim.username, sim.password)
        while True:
            params: dict[str, Any] = {
                "sysparm_query": "ORDERBYsys_updated_on^ORDERBYsys_id",
                "sysparm_limit": page,
                "sysparm_offset": count,
                "sysparm_exclude_reference_link": "true",
            }
            response = session.get(
                f"{sim.base_url}/api/now/v2/table/incident", params=params, timeout=60
            )
            sent += 1
            count += len(response.json()["result"])
            if "next" not in response.links:
                break
    return BareLoop(count, sent, time.perf_counter() - began)
