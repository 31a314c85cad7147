"""Servers that check OAuth2 tokens, on loopback, for the XOAUTH2 tests.

* :class:`TokenEndpoint` is an OAuth2 authorization server in a thread (``http.server``): the
  token endpoint (RFC 6749: client credentials and refresh token grants, with refresh-token
  rotation when asked) and an introspection endpoint (RFC 7662) saying whether a token is
  active *now*, by the test's clock. It can answer chosen errors, be stopped and started again.
* :class:`OAuthSmtpServer` is the suite's aiosmtpd relay with an ``AUTH XOAUTH2`` mechanism that
  accepts only a token the endpoint says is active, and refuses any other as Gmail does (an
  error challenge, then ``535``). It requires sign-in before MAIL.
* :class:`DovecotOAuth` is Debian's Dovecot with its ``oauth2`` passdb asking the endpoint's
  introspection URL about every token: the IMAP server is a real one checking the token.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import itertools
import json
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from email_servers import FaultPlan, SmtpServer, _Handler, free_port

CLIENT_ID = "usm-bridge-test"
CLIENT_SECRET = "s3cret-client-value-0123456789"
REFRESH_TOKEN = "refresh-initial-abcdefghijklmnop"
MAILBOX = "servicedesk@hr.example"
_DOVECOT = "/usr/sbin/dovecot"
_XOAUTH2 = re.compile(rb"^user=(.*?)\x01auth=Bearer (.*?)\x01\x01$", re.DOTALL)


class _Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


@contextlib.contextmanager
def running(server: S) -> Iterator[S]:
    """``server`` started for the block, and stopped after it whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


_DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
# Plain text on loopback only (the tests' connection); a real server offers TLS.
disable_plaintext_auth = no
auth_mechanisms = xoauth2
# Say in the log why a sign-in failed: the tests count the refusals there.
auth_verbose = yes
# A refused token is answered at once (the default waits 2 s against password guessing).
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
# No growing penalty for the loopback address after refusals (2, 4, 8 s ...): the tests refuse
# tokens on purpose, and the IMAP client's timeout must not be what they measure.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
# Every login asks the endpoint (no cache): an expired or revoked token is refused at once.
_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


class DovecotOAuth:
    """Dovecot on a free loopback port, signing in by XOAUTH2 against ``endpoint``."""

    def __init__(self, endpoint: TokenEndpoint) -> None:
        self.endpoint = endpoint
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="usm-dovecot-oauth-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        shutil.chown(self.root / "mail", "dovecot", "dovecot")
        self.root.chmod(0o755)
        (self.root / "oauth2.conf.ext").write_text(
            _OAUTH2_CONF.format(url=self.endpoint.introspection_url)
        )
        conf = self.root / "dovecot.conf"
        conf.write_text(_DOVECOT_CONF.format(root=self.root, port=self.port))
        self.process = subprocess.Popen(
            [_DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn,
            ):
                if conn.recv(200).startswith(b"* OK"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not start; see {self.root / 'dovecot.log'}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            # Dovecot's own way down (the master stops its children); a kill if it hangs.
            conf = str(self.root / "dovecot.conf")
            subprocess.run([_DOVECOT, "-c", conf, "stop"], capture_output=True, timeout=10)
            if process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, user: str = MAILBOX) -> imaplib.IMAP4:
        """The test's own mail client, signed in with a token the endpoint hands it."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        token = self.endpoint.mint()
        client.authenticate("XOAUTH2", lambda _: f"user={user}\x01auth=Bearer {token}\x01\x01")
        return client

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""
