"""Over real HTTP: the bridge's writes are made once, and only its own are taken for its copies.

A comment the bridge adds carries its correlation in a comment property; a retried add finds
the earlier copy by that property, wherever it lies among the issue's comments, and never takes
a person's comment with the same words for it. A create right after the engine's own lookup
does not look the correlation up a second time.
"""

from __future__ import annotations

import base64
import socket
import struct
import time
from collections.abc import Callable

import pytest
import requests
from jira_harness import Served, connected, served
from usm_bridge_jira.simulator import JiraSimulator, SimFault
from usm_bridge_jira.simulator.state import Issue, adf_text

from usm_bridge.connector import CommentDraft, RemoteDraft
from usm_bridge.errors import RetriableRemoteError


def texts(issue: Issue) -> list[str]:
    return [adf_text(comment.body) for comment in issue.comments]


def mine(correlation: str) -> CommentDraft:
    return CommentDraft(body="The technician is on his way", correlation=correlation)


# -- comments -----------------------------------------------------------------------------------


def test_a_comment_carries_its_correlation_in_a_comment_property(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as connector:
        comment_id = connector.add_comment(str(issue.id), mine("comment-1"))
    [comment] = issue.comments
    assert str(comment.id) == comment_id
    assert comment.properties["usmBridge"] == {"correlation": "comment-1"}


def test_a_comment_whose_answer_was_lost_is_found_not_added_again(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    simulator.fail_next(SimFault.LOSE_COMMENT_RESPONSE)
    with connected(simulator) as connector:
        with pytest.raises(RetriableRemoteError, match="not retried"):
            connector.add_comment(str(issue.id), mine("comment-1"))
        again = connector.add_comment(str(issue.id), mine("comment-1"))
    [comment] = issue.comments
    assert again == str(comment.id)


def test_a_persons_comment_with_the_same_words_is_not_taken_for_the_copy(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    # Written from the bridge's own account, even: only the property tells the copies apart.
    theirs = simulator.site.add_comment(issue, "The technician is on his way")
    with connected(simulator) as connector:
        added = connector.add_comment(str(issue.id), mine("comment-1"))
        again = connector.add_comment(str(issue.id), mine("comment-1"))
    assert added != str(theirs.id)
    assert again == added
    assert texts(issue) == ["The technician is on his way"] * 2


def test_the_copy_is_found_under_newer_comments_beyond_the_first_page(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator, comment_page_size=5) as connector:
        added = connector.add_comment(str(issue.id), mine("comment-1"))
        for n in range(23):
            # People answer, one of them with the very same words, above the bridge's copy.
            text = "The technician is on his way" if n == 11 else f"Reply {n}"
            simulator.site.add_comment(issue, text)
        with served(simulator) as seen:
            again = connector.add_comment(str(issue.id), mine("comment-1"))
    assert again == added
    assert len(issue.comments) == 24
    pages = [r for r in seen if r.path.endswith("/comment")]
    assert [r.query["startAt"] for r in pages] == ["0", "5", "10", "15", "20"]
    assert {r.query["orderBy"] for r in pages} == {"-created"}
    # A property is asked of the comments with the same words only: the person's, then ours.
    asked = [r.path for r in seen if "/properties/" in r.path]
    assert len(asked) == 2 and asked[-1] == f"comment/{added}/properties/usmBridge"
    assert all(r.method == "GET" for r in seen)


def test_a_new_comment_costs_one_look_at_the_latest_and_the_add(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1, comments=3)
    with connected(simulator) as connector, served(simulator) as seen:
        connector.add_comment(str(issue.id), mine("comment-1"))
    assert [(r.method, r.path) for r in seen] == [
        ("GET", f"issue/{issue.id}/comment"),
        ("POST", f"issue/{issue.id}/comment"),
    ]


def test_comment_properties_can_be_read_set_and_deleted(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1, comments=1)
    [comment] = issue.comments
    version = "3" if simulator.flavour == "cloud" else "2"
    api = f"{simulator.base_url}/rest/api/{version}"
    url = f"{api}/comment/{comment.id}/properties"
    credentials = simulator.credentials()
    with requests.Session() as http:
        if simulator.flavour == "cloud":
            http.auth = (credentials["email"], credentials["api_token"])
        else:
            http.headers["Authorization"] = f"Bearer {credentials['personal_access_token']}"
        assert http.get(f"{url}/usmBridge", timeout=5).status_code == 404
        assert http.put(f"{url}/usmBridge", json={"c": 1}, timeout=5).status_code == 201
        assert http.put(f"{url}/usmBridge", json={"c": 2}, timeout=5).status_code == 200
        read = http.get(f"{url}/usmBridge", timeout=5).json()
        assert read == {"key": "usmBridge", "value": {"c": 2}}
        assert [k["key"] for k in http.get(url, timeout=5).json()["keys"]] == ["usmBridge"]
        assert http.delete(f"{url}/usmBridge", timeout=5).status_code == 204
        assert http.get(f"{api}/comment/1/properties/usmBridge", timeout=5).status_code == 404


# -- creates ------------------------------------------------------------------------------------

DRAFT = RemoteDraft(fields={"fields": {"summary": "Boiler room flooded"}})


def searches(seen: list[Served]) -> list[Served]:
    return [r for r in seen if r.path in ("search/jql", "search")]


def test_a_create_right_after_the_engines_lookup_looks_once(simulator: JiraSimulator) -> None:
    with connected(simulator) as connector:
        connector.discover()  # the field list, read once per connector, out of the count
        with served(simulator) as seen:
            # What the outbox does: find_by_correlation(...) or create(...).
            ref = connector.find_by_correlation("corr-1") or connector.create(DRAFT, "corr-1")
        assert [(r.method, r.path) for r in seen] == [
            ("GET", "search/jql" if simulator.flavour == "cloud" else "search"),
            ("POST", "issue"),
        ]
        with served(simulator) as seen:
            # Called again (a create repeated as such): it looks for itself and finds the first.
            assert connector.create(DRAFT, "corr-1") == ref
        assert len(searches(seen)) == 1 and all(r.method == "GET" for r in seen)
    made = [i for i in simulator.site.issues.values() if i.summary == "Boiler room flooded"]
    assert [str(i.id) for i in made] == [ref.remote_id]


def test_a_lost_create_after_the_engines_lookup_is_found_when_repeated(
    simulator: JiraSimulator,
) -> None:
    simulator.fail_next(SimFault.LOSE_CREATE_RESPONSE)
    with connected(simulator) as connector:
        assert connector.find_by_correlation("corr-lost") is None
        with pytest.raises(RetriableRemoteError):
            connector.create(DRAFT, "corr-lost")
        # At once, without the engine's lookup in between: the note was used up.
        again = connector.create(DRAFT, "corr-lost")
    made = [i for i in simulator.site.issues.values() if i.summary == "Boiler room flooded"]
    assert [str(i.id) for i in made] == [again.remote_id]


# -- the simulator --------------------------------------------------------------------------------


def test_a_client_gone_mid_request_leaves_no_traceback(
    cloud: JiraSimulator, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger="usm_bridge_jira.simulator.server"):
        cloud.fail_next(SimFault.SLOW, delay=0.3)
        _killed_mid_request(cloud.base_url, b"GET /rest/api/2/serverInfo HTTP/1.1\r\n\r\n")
        _wait_for(lambda: any("went away" in r.getMessage() for r in caplog.records))
    assert "Traceback" not in capfd.readouterr().err


def _killed_mid_request(base_url: str, request: bytes) -> None:
    """Send ``request`` and, while the answer is on its way, die: the connection is reset."""
    host, port = base_url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    client.sendall(request)
    time.sleep(0.1)  # the request is read by now
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the simulator never got to it"
        time.sleep(0.02)


def test_half_a_request_is_never_acted_on(cloud: JiraSimulator) -> None:
    # A client killed between the headers and the body (urllib3 writes them separately): a
    # real site waits for the rest and never creates an empty issue, nor may the simulator.
    before = len(cloud.site.issues)
    credentials = cloud.credentials()
    token = base64.b64encode(f"{credentials['email']}:{credentials['api_token']}".encode())
    host, port = cloud.base_url.removeprefix("http://").split(":")
    head = (
        "POST /rest/api/3/issue HTTP/1.1\r\nHost: sim\r\n"
        f"Authorization: Basic {token.decode()}\r\n"
        "Content-Type: application/json\r\nContent-Length: 80\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as client:
        client.sendall(head.encode())
        client.shutdown(socket.SHUT_WR)  # the body never comes
        assert client.recv(1024) == b""  # closed without an answer
    assert len(cloud.site.issues) == before


def test_a_lost_copy_is_found_by_its_property_never_a_persons_comment_via_the_vendor_client() -> (
    None
):
    # A person comments through pycontribs' client (REST API v2 on Jira Cloud, plain text),
    # in the copy's very words, from the same account even: only the property is proof.
    from datetime import UTC, datetime, timedelta

    from jira import JIRA
    from usm_bridge_jira.simulator.state import CLOUD_EMAIL, CLOUD_TOKEN

    since = datetime.now(UTC) - timedelta(minutes=5)
    with JiraSimulator("cloud") as simulator:
        [issue] = simulator.site.seed(1)
        person = JIRA(
            server=simulator.base_url, basic_auth=(CLOUD_EMAIL, CLOUD_TOKEN), get_server_info=False
        )
        try:
            theirs = person.add_comment(str(issue.id), "The technician is on his way")
            with connected(simulator) as connector:
                assert connector.find_comment(str(issue.id), "comment-1", since=since) is None
                added = connector.add_comment(str(issue.id), mine("comment-1"))
                again = person.add_comment(str(issue.id), "The technician is on his way")
                found = connector.find_comment(str(issue.id), "comment-1", since=since)
                unknown = connector.find_comment(
                    str(issue.id), "comment-1", since=since, known=[added]
                )
        finally:
            person.close()
    assert found == added and unknown is None
    assert len({str(theirs.id), added, str(again.id)}) == 3
    assert texts(issue) == ["The technician is on his way"] * 3
