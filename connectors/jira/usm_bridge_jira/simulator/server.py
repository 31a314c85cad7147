"""The simulator's HTTP server on loopback, with switchable faults.

A real ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, so the connector's
``requests`` session, timeouts and retries are exercised as against Jira. Two details keep it
from distorting benchmarks (see API-FACTS, "Simulators that do not distort benchmarks"):
``TCP_NODELAY`` on every connection (headers and body go out as separate writes; with Nagle and
delayed ACKs each response would stall ~40 ms), and the whole request body is always read, even
for a request answered with an error, so the next request on the connection is not corrupted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .attachments import Body, FormBody, receive_form
from .state import CLOUD_EMAIL, CLOUD_TOKEN, DC_TOKEN, Flavour, JiraSite, Reply, SimClock

__all__ = ["JiraSimulator", "SimFault"]

logger = logging.getLogger(__name__)


class SimFault(Enum):
    """Temporary failures the simulator can answer with, as Jira (or its edge) does."""

    #: 429 with ``Retry-After`` and ``X-RateLimit-Reset``, ``RateLimit-Reason: jira-burst-based``.
    RATE_LIMITED = "429 with Retry-After"
    #: 429 without ``Retry-After``: the client backs off on its own.
    RATE_LIMITED_NO_RETRY_AFTER = "429 without Retry-After"
    #: 503 Service Unavailable with ``Retry-After``.
    UNAVAILABLE = "503"
    #: 500 Internal Server Error.
    SERVER_ERROR = "500"
    #: The answer comes after ``delay`` seconds (a read timeout on a short-fused client).
    SLOW = "slow response"
    #: The connection is closed (reset) without an answer; the request was not processed.
    DROP = "dropped connection"
    #: The next ``POST /issue`` creates the issue, then the connection is dropped.
    LOSE_CREATE_RESPONSE = "create succeeds, response lost"
    #: The next ``POST /issue/{id}/comment`` adds the comment, then the connection is dropped.
    LOSE_COMMENT_RESPONSE = "comment added, response lost"
    #: The next ``POST /issue/{id}/attachments`` attaches the files, then the connection is
    #: dropped (a crash between upload and commit, seen from the client).
    LOSE_ATTACHMENT_RESPONSE = "files attached, response lost"


#: The requests whose answer a ``LOSE_*_RESPONSE`` fault loses, once they were carried out.
_LOST_ANSWERS: dict[SimFault, re.Pattern[str]] = {
    SimFault.LOSE_CREATE_RESPONSE: re.compile(r"/rest/api/[23]/issue/?$"),
    SimFault.LOSE_COMMENT_RESPONSE: re.compile(r"/rest/api/[23]/issue/[^/]+/comment/?$"),
    SimFault.LOSE_ATTACHMENT_RESPONSE: re.compile(r"/rest/api/[23]/issue/[^/]+/attachments/?$"),
}


@dataclass
class _Pending:
    fault: SimFault
    retry_after: str
    delay: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: JiraSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (killed, or done waiting) is routine: a broken pipe
        # or a reset is worth a debug line, not a traceback on the terminal; anything else is.
        if isinstance(error := sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away mid-request: %r", client_address, error)
        else:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a simulator serving thousands of pages must not flood the terminal."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self._body(length)  # always, even for an error reply
        if body is None:
            # The client went away mid-request (killed between the headers and the body): a
            # real site never acts on half a request, so neither does the simulator.
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {name: value for name, value in self.headers.items()}
        try:
            reply = self.server.simulator.answer(self.command, parts.path, query, headers, body)
        finally:
            if isinstance(body, FormBody):
                body.discard()  # a fault answered first, or a refusal: no part was kept
        if reply.drop:
            self._reset()
            return
        if reply.raw is not None:
            self._send_raw(reply)
            return
        payload = (
            b""
            if reply.body is None
            else json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False).encode()
        )
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _body(self, length: int) -> bytes | FormBody | None:
        """The request body: a multipart form parsed into files as it arrives (an upload may
        be large), anything else as bytes; ``None`` when it ended early."""
        content_type = self.headers.get("Content-Type") or ""
        if content_type.lower().startswith("multipart/form-data"):
            directory = self.server.simulator.site.attachments.files.directory
            form = receive_form(self.rfile, length, content_type, directory)
            return None if form.truncated else form
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _send_raw(self, reply: Reply) -> None:
        """Content that is not JSON; a file is streamed a chunk at a time, then closed."""
        content = reply.raw
        self.send_response(reply.status)
        if isinstance(content, bytes):
            size = len(content)
        else:
            assert content is not None
            size = os.fstat(content.fileno()).st_size - content.tell()
        size = size if reply.raw_length is None else reply.raw_length
        self.send_header("Content-Length", str(size))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if isinstance(content, bytes):
            self.wfile.write(content)
            return
        assert content is not None
        with content:
            while size > 0 and (chunk := content.read(min(size, 1 << 20))):
                self.wfile.write(chunk)
                size -= len(chunk)

    def _reset(self) -> None:
        # SO_LINGER 0: close with a reset, as a crashed proxy or a dropped route would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class JiraSimulator:
    """A Jira site on ``127.0.0.1``: start it, point a connector at ``base_url``, stop it.

    ``site`` is the in-memory Jira (seed, touch and read back through it); ``projects`` maps
    its project keys to names (default: ``IT`` and ``DEV``). Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        flavour: Flavour = "cloud",
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        time_zone: str = "Europe/Berlin",
        clock: SimClock | None = None,
        second_precision: bool = False,
        projects: Mapping[str, str] | None = None,
    ) -> None:
        self.flavour: Flavour = flavour
        self._server = _Server((host, port), _Handler)
        self._server.simulator = self
        real_host, real_port = self._server.server_address[:2]
        host_text = real_host.decode() if isinstance(real_host, bytes) else str(real_host)
        self.base_url = f"http://{host_text}:{real_port}"
        self.site = JiraSite(
            flavour,
            base_url=self.base_url,
            time_zone=time_zone,
            clock=clock,
            second_precision=second_precision,
            projects=projects,
        )
        self._faults: deque[_Pending] = deque()
        self._lose: dict[SimFault, int] = dict.fromkeys(_LOST_ANSWERS, 0)
        self._rejections: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> JiraSimulator:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and close the listening socket (and the webhooks' sender); the
        attachments' files are removed."""
        self.site.webhooks.close()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.site.attachments.files.close()

    def __enter__(self) -> JiraSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- credentials ---------------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        """The connector settings that sign in to this simulator."""
        if self.flavour == "cloud":
            return {"email": CLOUD_EMAIL, "api_token": CLOUD_TOKEN}
        return {"personal_access_token": DC_TOKEN}

    # -- faults --------------------------------------------------------------------------------

    def fail_next(
        self, fault: SimFault, times: int = 1, *, retry_after: str = "1", delay: float = 1.0
    ) -> None:
        """Answer the next ``times`` requests with ``fault``.

        ``LOSE_CREATE_RESPONSE``, ``LOSE_COMMENT_RESPONSE`` and ``LOSE_ATTACHMENT_RESPONSE`` wait
        for the next ``POST /issue`` (``POST /issue/{id}/comment``, ``.../attachments``) instead
        of striking the next request, whatever it is.
        """
        with self._lock:
            if fault in self._lose:
                self._lose[fault] += times
            else:
                self._faults.extend([_Pending(fault, retry_after, delay)] * times)

    def reject_next(self, message: str, status: int = 400) -> None:
        """Refuse the next request with ``status`` and ``message`` in Jira's error shape."""
        with self._lock:
            self._rejections.append((status, message))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()
            self._rejections.clear()
            self._lose = dict.fromkeys(_LOST_ANSWERS, 0)

    def answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Body
    ) -> Reply:
        """The reply to one request, faults first."""
        with self._lock:
            pending = self._faults.popleft() if self._faults else None
            rejection = self._rejections.popleft() if not pending and self._rejections else None
            lose = None
            if pending is None and rejection is None and method == "POST":
                lose = next(
                    (
                        fault
                        for fault, pattern in _LOST_ANSWERS.items()
                        if self._lose[fault] > 0 and pattern.search(path)
                    ),
                    None,
                )
            if lose is not None:
                self._lose[lose] -= 1
        if rejection is not None:
            return Reply(rejection[0], {"errorMessages": [rejection[1]], "errors": {}})
        if pending is not None:
            fault = self._fault_reply(pending)
            if fault is not None:
                return fault
        reply = self.site.handle(method, path, query, headers, body)
        if lose is not None:
            return Reply(0, drop=True)
        return reply

    def _fault_reply(self, pending: _Pending) -> Reply | None:
        fault = pending.fault
        if fault is SimFault.SLOW:
            time.sleep(pending.delay)
            return None
        if fault is SimFault.DROP:
            return Reply(0, drop=True)
        if fault is SimFault.RATE_LIMITED:
            reset = datetime.now(UTC) + timedelta(seconds=float(pending.retry_after))
            return Reply(
                429,
                {"errorMessages": ["Rate limit exceeded."], "errors": {}},
                {
                    "Retry-After": pending.retry_after,
                    "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                    "X-RateLimit-Limit": "100",
                    "X-RateLimit-Remaining": "0",
                    "RateLimit-Reason": "jira-burst-based",
                },
            )
        if fault is SimFault.RATE_LIMITED_NO_RETRY_AFTER:
            return Reply(429, {"errorMessages": ["Rate limit exceeded."], "errors": {}})
        if fault is SimFault.UNAVAILABLE:
            return Reply(
                503,
                {"errorMessages": ["Service Unavailable"], "errors": {}},
                {"Retry-After": pending.retry_after},
            )
        return Reply(500, {"errorMessages": ["Internal server error"], "errors": {}})
