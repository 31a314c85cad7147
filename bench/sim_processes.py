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
from urllib.parse import quote, urlencode

import requests

#: Issues per page of Jira's ``/search/jql`` (the connector's ``page_size`` default).
JIRA_PAGE = 100
#: Records per page of ServiceNow's Table API (the connector's ``page_size`` default).
SERVICENOW_PAGE = 1000
#: The project the Jira simulator seeds (its first).
JIRA_PROJECT = "IT"
#: The JQL of the connector's backfill of that project (no cursor yet).
JIRA_JQL = f"project = {JIRA_PROJECT} ORDER BY updated ASC, key ASC"
#: Record ids per journal request (the connector's ``journal_batch`` default).
JOURNAL_BATCH = 200
#: The journal fields the connector asks for.
JOURNAL_FIELDS = "sys_id,element,element_id,value,sys_created_on,sys_created_by"
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

    def __init__(self, issues: int, *extra: str) -> None:
        super().__init__(
            "usm_bridge_jira.simulator", "--port", "0", "--seed-issues", str(issues), *extra
        )
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
    """Every incident and its journal, in the connector's own requests.

    The connector reads a table by its last second, not by offset: the first page unbounded,
    each next one ``sys_updated_on>=<last second>`` (the rows of that second it already took
    are skipped), and a second that fills most of a page is drained by ``sys_id`` keyset. After
    each page it reads the journal (``sys_journal_field``) of the page's new records,
    ``JOURNAL_BATCH`` ids a request, each result paged by offset. This loop sends those same
    requests with the same parameters; it does no more with the rows than count them.
    """
    count = sent = 0
    began = time.perf_counter()
    common = {
        "sysparm_display_value": "false",
        "sysparm_exclude_reference_link": "true",
    }
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"

    def get(session: requests.Session, table: str, params: dict[str, Any]) -> requests.Response:
        nonlocal sent
        sent += 1
        query = urlencode({**params, **common}, quote_via=quote, safe=",")
        return session.get(f"{sim.base_url}/api/now/v2/table/{table}?{query}", timeout=60)

    with requests.Session() as session:
        session.auth = (sim.username, sim.password)
        second, seen = "", set[str]()
        phase, after_id = "all", ""
        while True:
            if phase == "drain":
                query = f"sys_updated_on={second}" + (f"^sys_id>{after_id}" if after_id else "")
                query += "^ORDERBYsys_id"
            elif phase == "after":
                query = f"sys_updated_on>{second}^{order}"
            elif phase == "from":
                query = f"sys_updated_on>={second}^{order}"
            else:
                query = order
            params = {"sysparm_query": query, "sysparm_limit": page, "sysparm_offset": 0}
            response = get(session, "incident", params)
            rows = response.json()["result"]
            fresh = []
            for row in rows:
                stamp, sys_id = row["sys_updated_on"], row["sys_id"]
                if stamp == second and sys_id in seen:
                    continue
                if stamp != second:
                    second, seen = stamp, set()
                seen.add(sys_id)
                fresh.append(sys_id)
            count += len(fresh)
            for start in range(0, len(fresh), JOURNAL_BATCH):
                ids = ",".join(fresh[start : start + JOURNAL_BATCH])
                journal_query = (
                    f"element_idIN{ids}^elementINcomments,work_notes"
                    "^ORDERBYsys_created_on^ORDERBYsys_id"
                )
                offset = 0
                while True:
                    entries = get(
                        session,
                        "sys_journal_field",
                        {
                            "sysparm_query": journal_query,
                            "sysparm_limit": page,
                            "sysparm_offset": offset,
                            "sysparm_fields": JOURNAL_FIELDS,
                        },
                    )
                    offset += len(entries.json()["result"])
                    if "next" not in entries.links:
                        break
            if "next" not in response.links:
                if phase == "drain":
                    phase, after_id = "after", ""
                    continue
                break
            if phase == "drain":
                after_id = rows[-1]["sys_id"]
                continue
            last = rows[-1]["sys_updated_on"]
            in_last = sum(1 for row in rows if row["sys_updated_on"] == last)
            if in_last * 2 > len(rows) or not fresh:
                phase, after_id = "drain", rows[-1]["sys_id"]
            else:
                phase = "from"
    return BareLoop(count, sent, time.perf_counter() - began)
