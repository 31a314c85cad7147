"""The URLs in Jira's answers are untrusted (issue #20): the connector fetches a file's content
with the Jira credentials only on the configured site, and Cloud's media redirect only over
https (http between loopback addresses for a site on one), without credentials.

A listener on another loopback address (or port) records every request it gets: for a URL on
another site it must get none at all; for the media redirect, one without credentials.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jira_harness import connected
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.simulator import JiraSimulator

from usm_bridge.errors import UntrustedURLError

FORM = b"%PDF-1.4\n" + bytes(range(256)) * 50


class Listener:
    """An HTTP server on ``host`` that answers FORM to any GET and records its headers."""

    def __init__(self, host: str) -> None:
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", str(len(FORM)))
                self.end_headers()
                self.wfile.write(FORM)

            def log_message(self, *args: Any) -> None:
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["127.0.0.2", "127.0.0.1"], ids=["other-address", "other-port"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    made = Listener(request.param)
    try:
        yield made
    finally:
        made.stop()


def _rewrite(simulator: JiraSimulator, pattern: str, change: Any) -> None:
    """Answers to GETs whose path matches ``pattern`` changed by ``change(reply)``."""
    answer = simulator.answer
    wanted = re.compile(pattern)

    def rewritten(method: str, path: str, *rest: Any) -> Any:
        reply = answer(method, path, *rest)
        return change(reply) if method == "GET" and wanted.search(path) else reply

    simulator.answer = rewritten  # type: ignore[method-assign]


def _content_at(datacenter: JiraSimulator, url: str) -> None:
    """Data Center's attachment metadata names ``url`` as the content URL."""

    def change(reply: Any) -> Any:
        return dataclasses.replace(reply, body={**reply.body, "content": url})

    _rewrite(datacenter, r"/rest/api/2/attachment/\d+$", change)


def _redirect_to(cloud: JiraSimulator, location: str) -> None:
    """Cloud's content endpoint redirects to ``location``."""

    def change(reply: Any) -> Any:
        return dataclasses.replace(reply, headers={**reply.headers, "Location": location})

    _rewrite(cloud, r"/rest/api/3/attachment/content/\d+$", change)


def _file(simulator: JiraSimulator) -> str:
    [issue] = simulator.site.seed(1)
    return str(simulator.site.attachments.add(issue, "form.pdf", FORM).id)


def _read(jira: JiraConnector, ident: str) -> bytes:
    with jira.open_attachment(ident) as chunks:
        return b"".join(chunks)


def _refusal(simulator: JiraSimulator, ident: str) -> UntrustedURLError:
    """Why the connector would not fetch the file ``ident``."""
    with connected(simulator) as jira, pytest.raises(UntrustedURLError) as refused:
        _read(jira, ident)
    return refused.value


def _secrets(simulator: JiraSimulator) -> list[str]:
    return [str(v) for v in simulator.credentials().values()]


def test_data_center_sends_no_request_to_a_content_url_off_the_site(
    datacenter: JiraSimulator, listener: Listener
) -> None:
    ident = _file(datacenter)
    _content_at(datacenter, f"{listener.url}/secure/attachment/{ident}/form.pdf")
    refused = str(_refusal(datacenter, ident))
    assert listener.url.removeprefix("http://") in refused and "configured site" in refused
    assert not any(secret in refused for secret in _secrets(datacenter))
    assert listener.seen == []  # no request at all: the bearer token stayed home


def test_data_center_sends_no_request_over_another_scheme(datacenter: JiraSimulator) -> None:
    ident = _file(datacenter)
    site = datacenter.base_url.removeprefix("http://")
    _content_at(datacenter, f"https://{site}/secure/attachment/{ident}/form.pdf")
    assert "configured site" in str(_refusal(datacenter, ident))


def test_data_center_joins_a_relative_content_url_to_the_site(datacenter: JiraSimulator) -> None:
    ident = _file(datacenter)
    _content_at(datacenter, f"/secure/attachment/{ident}/form.pdf")
    with connected(datacenter) as jira, jira.open_attachment(ident) as chunks:
        assert b"".join(chunks) == FORM


def test_cloud_follows_the_media_redirect_to_another_host_without_credentials(
    cloud: JiraSimulator, listener: Listener
) -> None:
    ident = _file(cloud)
    _redirect_to(cloud, f"{listener.url}/file/abc/binary?token=signed")
    with connected(cloud) as jira, jira.open_attachment(ident) as chunks:
        assert b"".join(chunks) == FORM
    [media] = listener.seen
    assert "Authorization" not in media
    assert not any(secret in str(media) for secret in _secrets(cloud))


def test_cloud_joins_a_relative_media_location_to_the_request(cloud: JiraSimulator) -> None:
    ident = _file(cloud)

    def relative(reply: Any) -> Any:
        where = re.sub(r"^https?://[^/]+", "", reply.headers["Location"])
        return dataclasses.replace(reply, headers={**reply.headers, "Location": where})

    _rewrite(cloud, r"/rest/api/3/attachment/content/\d+$", relative)
    with connected(cloud) as jira, jira.open_attachment(ident) as chunks:
        assert b"".join(chunks) == FORM


@pytest.mark.parametrize(
    ("location", "named"),
    [
        ("http://192.0.2.7/file/abc/binary?token=signed", "192.0.2.7"),  # leaves the machine
        ("ftp://127.0.0.1/file", "127.0.0.1"),
    ],
)
def test_cloud_follows_no_media_location_in_clear_off_loopback(
    cloud: JiraSimulator, location: str, named: str
) -> None:
    ident = _file(cloud)
    _redirect_to(cloud, location)
    refused = str(_refusal(cloud, ident))
    assert named in refused and "signed" not in refused


def test_a_media_location_requests_cannot_send_is_a_remote_error(cloud: JiraSimulator) -> None:
    ident = _file(cloud)
    _redirect_to(cloud, "https://.media.example/file/abc/binary?token=signed")
    assert "InvalidURL" in str(_refusal(cloud, ident))  # a RemoteError, not requests' own
