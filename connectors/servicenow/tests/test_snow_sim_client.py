"""The simulator as clients that did not come from this project see it.

ServiceNow's own Python client (pysnc) through its ordinary calls, and raw ``requests`` calls
for what pysnc never varies: header names in any case (RFC 9110), ``X-no-response-body``,
``Accept``, rate limiting per user, integer fields given a word, the empty result.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from pysnc import ServiceNowClient, ServiceNowPasswordGrantFlow
from usm_bridge.connector import Checkpoint, RawRecord

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.simulator import RateLimitRule, ServiceNowSimulator, SimClock
from usm_bridge_servicenow.simulator.__main__ import build

PERSON, PERSON_PASSWORD = "beth.anglin", "beth-secret-1"
FROZEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)  # on a minute: windows start here


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    """A plain-HTTP instance with a frozen clock and one person besides the integration user."""
    with ServiceNowSimulator(clock=SimClock(frozen_at=FROZEN)) as simulator:
        simulator.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
        yield simulator


@pytest.fixture
def tls_sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(ssl_context=tls_context) as simulator:
        simulator.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
        yield simulator


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _url(sim: ServiceNowSimulator, path: str) -> str:
    return f"{sim.base_url}/api/now/table/{path}"


# -- 1. header names in any case -------------------------------------------------------------


def test_header_names_are_read_in_any_case(sim: ServiceNowSimulator) -> None:
    good = _basic(sim.username, sim.password)
    headers = {
        "authorization": good,
        "ACCEPT": "application/json",
        "content-TYPE": "Application/JSON",
    }
    created = requests.post(
        _url(sim, "incident"), json={"short_description": "lower"}, headers=headers, timeout=5
    )
    assert created.status_code == 201
    sys_id = created.json()["result"]["sys_id"]
    read = requests.get(_url(sim, f"incident/{sys_id}"), headers={"aUtHoRiZaTiOn": good}, timeout=5)
    assert read.status_code == 200
    assert read.json()["result"]["short_description"] == "lower"
    # The header is really read: a wrong password in a lower-case header is refused.
    wrong = requests.get(
        _url(sim, f"incident/{sys_id}"),
        headers={"authorization": _basic(sim.username, "not-it")},
        timeout=5,
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "User Not Authenticated"


def _write(
    sim: ServiceNowSimulator, method: str, path: str, values: dict[str, str], quiet: str
) -> requests.Response:
    """A write as the integration user, with ``quiet`` as one spelling of the header's name."""
    name, value = quiet.split(": ")
    return requests.request(
        method,
        _url(sim, path),
        json=values,
        headers={name: value},
        auth=(sim.username, sim.password),
        timeout=5,
    )


def test_x_no_response_body_in_any_case_suppresses_the_record(sim: ServiceNowSimulator) -> None:
    created = _write(
        sim, "POST", "incident", {"short_description": "quiet"}, "x-no-response-body: true"
    )
    assert (created.status_code, created.content) == (201, b"")
    (sys_id,) = sim.ids("incident")  # the write was done all the same
    patched = _write(
        sim,
        "PATCH",
        f"incident/{sys_id}",
        {"description": "changed quietly"},
        "X-No-Response-Body: TRUE",
    )
    assert (patched.status_code, patched.content) == (200, b"")
    assert sim.get("incident", sys_id)["description"] == "changed quietly"  # type: ignore[index]
    # With false the record comes back.
    loud = _write(
        sim, "PATCH", f"incident/{sys_id}", {"description": "loud"}, "x-NO-response-BODY: false"
    )
    assert loud.json()["result"]["description"] == "loud"


def test_media_types_are_checked_whatever_the_header_case(sim: ServiceNowSimulator) -> None:
    auth = (sim.username, sim.password)
    not_json = requests.post(
        _url(sim, "incident"),
        data=b"short_description=x",
        headers={"content-type": "text/plain"},
        auth=auth,
        timeout=5,
    )
    assert not_json.status_code == 415
    for accept in ("text/html", "application/json;q=0, text/html"):
        refused = requests.get(
            _url(sim, "incident"), headers={"accept": accept}, auth=auth, timeout=5
        )
        assert refused.status_code == 406, accept
    for accept in ("*/*", "text/html, application/*;q=0.5", "APPLICATION/JSON"):
        served = requests.get(
            _url(sim, "incident"), headers={"aCCept": accept}, auth=auth, timeout=5
        )
        assert served.status_code == 200, accept
    assert sim.ids("incident") == []  # the refused POST wrote nothing


# -- 2. who wrote what -------------------------------------------------------------------------


def test_records_and_journal_entries_carry_the_user_who_signed_in(
    tls_sim: ServiceNowSimulator,
) -> None:
    sim = tls_sim
    person = ServiceNowClient(sim.base_url, (PERSON, PERSON_PASSWORD))
    bridge = ServiceNowClient(sim.base_url, (sim.username, sim.password))
    record = person.GlideRecord("incident")
    record.initialize()
    record.short_description = "Badge does not open the door"
    record.comments = "Tried twice at the main entrance"
    sys_id = record.insert()
    assert sys_id is not None

    mine = bridge.GlideRecord("incident")
    assert mine.get(str(sys_id))
    mine.work_notes = "Checked the badge reader log"
    mine.update()

    check = bridge.GlideRecord("incident")
    assert check.get(str(sys_id))
    assert check.get_value("sys_created_by") == PERSON
    assert check.get_value("sys_updated_by") == sim.username
    (beth,) = [
        r["sys_id"]
        for r in [sim.get("sys_user", i) or {} for i in sim.ids("sys_user")]
        if r.get("user_name") == PERSON
    ]
    assert check.get_value("opened_by") == beth

    entries = bridge.GlideRecord("sys_journal_field")
    entries.add_query("element_id", str(sys_id))
    entries.order_by("sys_created_on")
    entries.query()
    authors = sorted(
        (entry.get_value("element"), entry.get_value("sys_created_by"), entry.get_value("value"))
        for entry in entries
    )
    assert authors == [
        ("comments", PERSON, "Tried twice at the main entrance"),
        ("work_notes", sim.username, "Checked the badge reader log"),
    ]


def test_an_oauth_token_signs_in_as_the_integration_user_whatever_the_case(
    tls_sim: ServiceNowSimulator,
) -> None:
    sim = tls_sim
    flow = ServiceNowPasswordGrantFlow(sim.username, sim.password, sim.client_id, sim.client_secret)
    client = ServiceNowClient(sim.base_url, flow)
    record = client.GlideRecord("incident")
    record.initialize()
    record.short_description = "Opened over OAuth"
    sys_id = str(record.insert())
    stored = sim.get("incident", sys_id)
    assert stored is not None
    assert (stored["sys_created_by"], stored["opened_by"]) == (sim.username, sim.user_id)
    # Client credentials in Basic auth are checked like those in the form.
    refused = requests.post(
        f"{sim.base_url}/oauth_token.do",
        data={"grant_type": "password", "username": sim.username, "password": sim.password},
        auth=(sim.client_id, "not-the-secret"),
        timeout=5,
    )
    assert refused.status_code == 401
    # pysnc's token in a lower-case header with a lower-case scheme.
    token = client.session.token["access_token"]
    read = requests.get(
        _url(sim, f"incident/{sys_id}"), headers={"authorization": f"bearer {token}"}, timeout=5
    )
    assert read.json()["result"]["short_description"] == "Opened over OAuth"


# -- 3. rate limiting --------------------------------------------------------------------------


def test_a_rate_limit_rule_counts_each_user_over_its_window(sim: ServiceNowSimulator) -> None:
    rule = RateLimitRule(requests=3, window=60)
    sim.set_rate_limit(rule)
    reset = str(int(FROZEN.timestamp()) + 60)
    bridge, person = (sim.username, sim.password), (PERSON, PERSON_PASSWORD)
    answers = [requests.get(_url(sim, "incident"), auth=bridge, timeout=5) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
    assert {a.headers["X-RateLimit-Reset"] for a in answers} == {reset}
    assert {a.headers["X-RateLimit-Rule"] for a in answers} == {rule.sys_id}
    refused = answers[-1]
    assert refused.headers["Retry-After"] == "60"
    assert refused.json()["error"]["message"] == "Rate limit exceeded"
    assert "Retry-After" not in answers[0].headers
    # Another user has a count of their own.
    theirs = requests.get(_url(sim, "incident"), auth=person, timeout=5)
    assert (theirs.status_code, theirs.headers["X-RateLimit-Remaining"]) == (200, "2")
    # Half the window later the wait is shorter; once it is over, the user is served again.
    sim.clock.advance(30)
    again = requests.get(_url(sim, "incident"), auth=bridge, timeout=5)
    assert (again.status_code, again.headers["Retry-After"]) == (429, "30")
    sim.clock.advance(30)
    served = requests.get(_url(sim, "incident"), auth=bridge, timeout=5)
    assert (served.status_code, served.headers["X-RateLimit-Remaining"]) == (200, "2")
    assert sim.rate_limiter is not None and sim.rate_limiter.refused == 2


def test_the_connector_waits_out_the_rate_limit_and_reads_everything(
    sim: ServiceNowSimulator,
) -> None:
    seeded = {
        sim.insert("incident", {"short_description": f"Desk {n}"}, user=PERSON) for n in range(9)
    }
    sim.set_rate_limit(RateLimitRule(requests=2, window=60))
    waits: list[float] = []
    elapsed = [0.0]

    def sleep(seconds: float) -> None:  # the instance's clock moves as the connector waits
        waits.append(seconds)
        elapsed[0] += seconds
        sim.clock.advance(seconds)

    settings = ServiceNowSettings.model_validate(
        {
            "instance_url": sim.base_url,
            "username": sim.username,
            "password": sim.password,
            "page_size": 2,
            "read_journal": False,
            "max_attempts": 3,
            "retry_budget": 300.0,
        }
    )
    connector = ServiceNowConnector(
        "it-snow", settings, sleep=sleep, clock=lambda: elapsed[0], now=sim.clock.now
    )
    try:
        items = list(connector.read_changes(None))
    finally:
        connector.close()
    read = {item.remote_id for item in items if isinstance(item, RawRecord)}
    assert read == seeded
    assert isinstance(items[-1], Checkpoint)
    limiter = sim.rate_limiter
    assert limiter is not None and limiter.refused >= 2
    # Each wait is exactly what Retry-After asked: the rest of the frozen clock's window.
    assert waits == [60.0] * limiter.refused


# -- 4. integer fields -------------------------------------------------------------------------


def test_an_integer_choice_given_a_word_is_ignored_and_a_label_taken_when_asked(
    sim: ServiceNowSimulator,
) -> None:
    auth = (sim.username, sim.password)
    created = requests.post(
        _url(sim, "incident"),
        json={
            "short_description": "Words",
            "state": "In Progress",
            "impact": "high",
            "urgency": "2",
        },
        auth=auth,
        timeout=5,
    )
    assert created.status_code == 201
    result = created.json()["result"]
    # The words are dropped (defaults stay), the integer is kept, priority follows it.
    assert (result["state"], result["impact"], result["urgency"], result["priority"]) == (
        "1",
        "3",
        "2",
        "4",
    )
    sys_id = result["sys_id"]
    ignored = requests.patch(
        _url(sim, f"incident/{sys_id}"),
        json={"state": "2.5", "urgency": "x1"},
        auth=auth,
        timeout=5,
    )
    assert (ignored.json()["result"]["state"], ignored.json()["result"]["urgency"]) == ("1", "2")
    by_label = requests.patch(
        _url(sim, f"incident/{sys_id}"),
        params={"sysparm_input_display_value": "true"},
        json={"state": "In Progress", "impact": "1 - High"},
        auth=auth,
        timeout=5,
    )
    assert (by_label.json()["result"]["state"], by_label.json()["result"]["impact"]) == ("2", "1")


# -- 5. the empty result ----------------------------------------------------------------------


@pytest.mark.parametrize(("version", "status"), [("", 200), ("v2/", 200), ("v1/", 404)])
def test_a_query_matching_nothing(sim: ServiceNowSimulator, version: str, status: int) -> None:
    answer = requests.get(
        f"{sim.base_url}/api/now/{version}table/incident",
        params={"sysparm_query": "short_description=nothing like this"},
        auth=(sim.username, sim.password),
        timeout=5,
    )
    assert answer.status_code == status
    if status == 200:
        assert answer.json() == {"result": []}
        assert answer.headers["X-Total-Count"] == "0"
    else:
        assert answer.json()["error"]["message"] == "No Record found"


def test_pysnc_iterates_nothing_for_an_empty_match(tls_sim: ServiceNowSimulator) -> None:
    client = ServiceNowClient(tls_sim.base_url, (tls_sim.username, tls_sim.password))
    record = client.GlideRecord("incident")
    record.add_query("short_description", "nothing like this")
    record.query()
    assert record.get_row_count() == 0
    assert [r.sys_id for r in record] == []
    assert not record.has_next()


# -- 6. pysnc through its ordinary calls ------------------------------------------------------


def test_pysnc_queries_pages_writes_and_deletes(tls_sim: ServiceNowSimulator) -> None:
    sim = tls_sim
    client = ServiceNowClient(sim.base_url, (PERSON, PERSON_PASSWORD))
    made = {}
    for n in range(7):
        record = client.GlideRecord("incident")
        record.initialize()
        record.short_description = f"Printer {n}"
        record.impact = "1" if n % 2 else "3"
        record.urgency = "1"
        made[str(record.insert())] = n
    assert set(made) == set(sim.ids("incident"))

    # Paging: a batch size smaller than the result, ordered by an encoded query.
    before = sim.request_count
    paged = client.GlideRecord("incident", batch_size=2)
    paged.add_encoded_query("impact=1^ORDERBYDESCshort_description")
    paged.query()
    assert paged.get_row_count() == 3
    assert [r.get_value("short_description") for r in paged] == [
        "Printer 5",
        "Printer 3",
        "Printer 1",
    ]
    assert sim.request_count - before == 2  # two pages of at most two
    assert {r.get_value("priority") for r in paged} == {"1"}  # impact 1 x urgency 1

    both = client.GlideRecord("incident", batch_size=3)
    both.add_query("impact", "3")
    both.add_query("short_description", "STARTSWITH", "Printer")
    both.order_by("short_description")
    both.query()
    assert [r.get_value("short_description") for r in both] == [
        f"Printer {n}" for n in (0, 2, 4, 6)
    ]

    # Update with a journal field, read back through sys_journal_field.
    target = client.GlideRecord("incident")
    assert target.get("short_description", "Printer 4")
    sys_id = target.sys_id
    target.short_description = "Printer 4 (toner)"
    target.comments = "Toner ordered"
    target.work_notes = "PO 4471"
    target.update()
    assert sim.get("incident", sys_id)["short_description"] == "Printer 4 (toner)"  # type: ignore[index]
    journal = client.GlideRecord("sys_journal_field")
    journal.add_encoded_query(f"element_id={sys_id}^elementINcomments,work_notes")
    journal.query()
    assert sorted((j.get_value("element"), j.get_value("value")) for j in journal) == [
        ("comments", "Toner ordered"),
        ("work_notes", "PO 4471"),
    ]
    # The journal fields themselves read empty on the record, as on a real instance.
    reread = client.GlideRecord("incident")
    assert reread.get(sys_id)
    assert reread.get_value("comments") == ""

    # Delete.
    gone = client.GlideRecord("incident")
    assert gone.get(sys_id)
    assert gone.delete()
    assert sim.get("incident", sys_id) is None
    assert len(sim.ids("incident")) == 6
    assert not client.GlideRecord("incident").get(sys_id)


# -- 7. a client that hangs up -----------------------------------------------------------------


@pytest.fixture(params=["http", "https"])
def any_sim(request: pytest.FixtureRequest) -> Iterator[ServiceNowSimulator]:
    """The instance over plain HTTP, then over TLS."""
    context = request.getfixturevalue("tls_context") if request.param == "https" else None
    with ServiceNowSimulator(ssl_context=context) as simulator:
        yield simulator


def _open(sim: ServiceNowSimulator) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window (set before connecting): the server's writes back up quickly.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((sim.host, sim.port))
    if sim.ssl_context is None:
        return raw
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE  # only the hang-up matters
    return client.wrap_socket(raw)


def test_a_client_that_hangs_up_mid_answer_costs_one_log_line(
    any_sim: ServiceNowSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = any_sim
    # An answer of about 12 MB: more than the kernel buffers between server and client hold
    # (Linux caps a loopback send buffer at 4 MB), so the server is still writing at the reset.
    for n in range(2000):
        sim.insert(
            "incident", {"short_description": f"Long {n}", "description": "x" * 6000}, rules=False
        )
    logged = threading.Event()
    lines: list[logging.LogRecord] = []

    class Seen(logging.Handler):  # its own handler: other tests may reconfigure propagation
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)
            logged.set()

    seen = Seen(level=logging.INFO)
    server_log = logging.getLogger("usm_bridge_servicenow.simulator.server")
    server_log.addHandler(seen)
    level = server_log.level
    server_log.setLevel(logging.INFO)
    auth = base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
    try:
        with _open(sim) as client:
            client.sendall(
                f"GET /api/now/table/incident HTTP/1.1\r\nHost: sim\r\n"
                f"authorization: Basic {auth}\r\n\r\n".encode()
            )
            client.recv(1024)  # the answer has begun
            # Close with a reset (linger 0), the way a killed client's socket goes.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert logged.wait(10), "the server never noticed the hang-up"
    finally:
        server_log.removeHandler(seen)
        server_log.setLevel(level)
    assert len(lines) == 1
    assert "went away mid-request" in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert "Traceback" not in capsys.readouterr().err
    # And the instance serves the next client as usual.
    with _open(sim) as client:
        client.sendall(
            f"GET /api/now/table/incident?sysparm_limit=1 HTTP/1.1\r\nHost: sim\r\n"
            f"Authorization: Basic {auth}\r\nConnection: close\r\n\r\n".encode()
        )
        assert client.recv(12) == b"HTTP/1.1 200"


def test_the_command_line_sets_a_rate_limit_rule_per_hour() -> None:
    sim, replayed = build(["--rate-limit", "2", "--seed-records", "3", "--username", "ops"])
    assert replayed == 0
    assert sim.rate_limiter is not None
    assert (sim.rate_limiter.rule.requests, sim.rate_limiter.rule.window) == (2, 3600)
    with sim:
        answers = [
            requests.get(_url(sim, "incident"), auth=("ops", sim.password), timeout=5)
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert len(answers[0].json()["result"]) == 3
    unlimited, _ = build([])
    assert unlimited.rate_limiter is None
