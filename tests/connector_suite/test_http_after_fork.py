"""A child forked to read lets go of the HTTP connections it inherits without closing them
(``HttpClient.forget_connections``, ``HttpConnector.after_fork``): they are the parent's
sockets, and a TLS session cannot be shared. Against a real keep-alive server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connector_suite.reference_connector import ReferenceConnector, ReferenceSettings
from usm_bridge.http import HttpClient


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools the connection

    def do_GET(self) -> None:
        self.server.peers.append(self.client_address)  # type: ignore[attr-defined]
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.peers = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _pooled_sockets(client: HttpClient) -> list[socket.socket]:
    found = []
    for adapter in client._session.adapters.values():
        pools = adapter.poolmanager.pools  # type: ignore[attr-defined]
        keys = pools.keys()  # a RecentlyUsedContainer refuses to be iterated
        for key in keys:
            pool = pools[key]
            found += [c.sock for c in list(pool.pool.queue) if c is not None and c.sock]
    return found


def test_forgotten_connections_stay_open_and_the_next_request_opens_its_own(
    server: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    client = HttpClient(url)
    client.get("a")
    client.get("b")
    peers: list[tuple[str, int]] = server.peers  # type: ignore[attr-defined]
    assert len(set(peers)) == 1  # one pooled connection, reused
    (inherited,) = _pooled_sockets(client)
    client.forget_connections()
    # Not closed: in a child it is the parent's socket (its fd stays open, nothing sent).
    assert inherited.fileno() != -1
    assert _pooled_sockets(client) == []
    client.get("c")
    assert len(set(peers)) == 2  # a connection of its own
    assert inherited.fileno() != -1
    client.close()


def test_after_fork_forgets_every_client_the_connector_made(
    server: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    connector = ReferenceConnector("reference", ReferenceSettings(base_url=url, token="t0ken"))
    clients = [connector.http_client(url), connector.http_client(url)]
    for client in clients:
        client.get("x")
    held = [s for client in clients for s in _pooled_sockets(client)]
    assert len(held) == 2
    connector.after_fork()
    assert all(_pooled_sockets(client) == [] for client in clients)
    assert all(s.fileno() != -1 for s in held)
    connector.close()
