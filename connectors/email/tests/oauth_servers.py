"""Servers that check OAuth2 tokens, on loopback, for the XOAUTH2 tests.

* :class:`TokenEndpoint` is an OAuth2 authorization server in a thread (``http.server``): the
  token endpoint (RFC 6749: client credentials and refresh token grants, with refresh-token
  rotation when asked) and an introspection endpoint (RFC 7662) saying whether a token is
  active *now*, by the test's clock. It can answer chosen errors, be stopped and started again.
* :class:`OAuthSmtpServer` is the suite's aiosmtpd relay with an ``AUTH XOAUTH2`` mechanism that
  accepts only a token the endpoint says is active, and refuses any other as Gmail does (an
  error challenge, then ``535``). It requires sign-in before MAIL.
* :func:`xoauth2_client` signs the test's own mail client in at a :class:`DovecotServer`
  started with the endpoint's introspection URL (its ``oauth2`` passdb asks the endpoint about
  every token: the IMAP server is a real one checking the token).
"""

from __future__ import annotations

import base64
import imaplib
import itertools
import json
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from email_servers import DovecotServer, FaultPlan, SmtpServer, _Handler, free_port

CLIENT_ID = "usm-bridge-test"
CLIENT_SECRET = "s3cret-client-value-0123456789"
REFRESH_TOKEN = "refresh-initial-abcdefghijklmnop"
MAILBOX = "servicedesk@hr.example"
_XOAUTH2 = re.compile(rb"^user=(.*?)\x01auth=Bearer (.*?)\x01\x01$", re.DOTALL)


class Clock:
    """The test's wall clock, moved by hand: tokens expire when the test says so."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@dataclass
class _Issued:
    user: str
    expires: datetime


@dataclass
class TokenEndpoint:
    """An OAuth2 authorization server on loopback; see the module docstring."""

    clock: Clock
    #: The mailbox every token is for (the introspection answer's ``username``).
    user: str = MAILBOX
    lifetime: int = 3600
    #: Hand out a new refresh token with every refresh (and accept only the newest).
    rotate: bool = False
    port: int = field(default_factory=free_port)
    #: The refresh token that is valid now.
    refresh_token: str = REFRESH_TOKEN
    #: Every form posted to the token endpoint, in order.
    requests: list[dict[str, str]] = field(default_factory=list)
    #: Answers to give instead of the real one, next requests first: (status, body).
    faults: deque[tuple[int, str]] = field(default_factory=deque)
    issued: dict[str, _Issued] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/v2.0/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/introspect"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """An ``oauth`` settings block for this endpoint (client credentials by default)."""
        values: dict[str, Any] = {
            "token_url": self.token_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["https://outlook.office365.com/.default"],
            "timeout": 5,
        }
        values.update(overrides)
        return values

    # -- what the mail servers ask -------------------------------------------------------------

    def active(self, token: str, user: str | None = None) -> bool:
        """Whether ``token`` is one this endpoint issued, unexpired by the clock, for ``user``."""
        with self._lock:
            found = self.issued.get(token)
        return (
            found is not None
            and self.clock.now() < found.expires
            and (user is None or user == found.user)
        )

    def revoke_all(self) -> None:
        """Every token issued so far stops being valid (as when an admin revokes a session)."""
        with self._lock:
            self.issued.clear()

    def mint(self) -> str:
        """A valid token handed out directly (the test's own mail client signs in with it)."""
        with self._lock:
            return self._issue()

    def grants(self) -> list[str]:
        return [form.get("grant_type", "") for form in self.requests]

    # -- the HTTP side ---------------------------------------------------------------------------

    def _issue(self) -> str:
        token = f"at-{next(self._counter)}-{secrets.token_hex(12)}"
        self.issued[token] = _Issued(self.user, self.clock.now() + timedelta(seconds=self.lifetime))
        return token

    def answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            if path == "/introspect":
                token = form.get("token", "")
                found = self.issued.get(token)
                if found is None or self.clock.now() >= found.expires:
                    return 200, {"active": False}
                return 200, {"active": True, "username": found.user, "token_type": "Bearer"}
            if path != "/oauth2/v2.0/token":
                return 404, {"error": "not_found"}
            self.requests.append(dict(form))
            if self.faults:
                status, body = self.faults.popleft()
                return status, body
            if form.get("client_id") != CLIENT_ID or (form.get("client_secret") != CLIENT_SECRET):
                return 401, {"error": "invalid_client", "error_description": "bad client"}
            answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.lifetime}
            grant = form.get("grant_type")
            if grant == "refresh_token":
                if form.get("refresh_token") != self.refresh_token:
                    return 400, {"error": "invalid_grant", "error_description": "token revoked"}
                if self.rotate:
                    self.refresh_token = f"refresh-{secrets.token_hex(12)}"
                    answer["refresh_token"] = self.refresh_token
            elif grant != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}
            answer["access_token"] = self._issue()
            return 200, answer

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                status, body = endpoint.answer(self.path, form)
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read what was asked from ``requests``."""

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: the endpoint is down (connection refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _XOAuth2Handler(_Handler):
    """The suite's relay handler, with AUTH XOAUTH2 checked against the token endpoint."""

    def __init__(self, plan: FaultPlan, endpoint: TokenEndpoint) -> None:
        super().__init__(plan)
        self.endpoint = endpoint
        #: The tokens the relay refused and accepted, in order.
        self.refused: list[str] = []
        self.accepted: list[str] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2:
            blob = base64.b64decode(args[1])
        else:
            answered = await server.challenge_auth("")
            blob = answered if isinstance(answered, bytes) else b""
        match = _XOAUTH2.match(blob)
        user, token = (m.decode() for m in match.groups()) if match else ("", "")
        if match and self.endpoint.active(token, user):
            self.accepted.append(token)
            return AuthResult(success=True, auth_data=user)
        self.refused.append(token)
        # As Gmail: the error as a challenge, which the client answers with an empty line.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "Bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Token not accepted")


class OAuthSmtpServer(SmtpServer):
    """The suite's relay, asking for AUTH XOAUTH2 before it takes mail (plain text: loopback)."""

    def __init__(self, plan: FaultPlan, endpoint: TokenEndpoint) -> None:
        self.oauth = _XOAuth2Handler(plan, endpoint)
        # Not aiosmtpd's auth_required (it warns without TLS): MAIL checks the sign-in.
        super().__init__(plan, auth_require_tls=False)

    def _controller(self) -> Controller:
        self.handler = self.oauth
        return super()._controller()


def xoauth2_client(
    dovecot: DovecotServer, endpoint: TokenEndpoint, user: str = MAILBOX
) -> imaplib.IMAP4:
    """The test's own mail client at ``dovecot`` (started with ``endpoint``'s introspection
    URL), signed in by XOAUTH2 with a token the endpoint hands it."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10)
    token = endpoint.mint()
    client.authenticate("XOAUTH2", lambda _: f"user={user}\x01auth=Bearer {token}\x01\x01")
    return client
