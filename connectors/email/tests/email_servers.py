"""Real mail servers on loopback for the tests, and a way to make them fail on purpose.

* :class:`PymapServer` runs pymap (an IMAP server from PyPI) as a child process with its
  in-memory ``dict`` backend: every start has a new UIDVALIDITY, which is how the resync test
  moves a mailbox to a "new server".
* :class:`DovecotServer` runs a real Dovecot (Debian's ``dovecot-imapd``) as a child process
  on loopback with a private configuration in a temporary folder: Maildir storage, a
  passwd-file with the test user, CONDSTORE and QRESYNC as Dovecot offers them, a log file.
  Recreating a folder gives it a new UIDVALIDITY (the mailbox "moved to a new server"). Given
  an OAuth2 introspection URL it also signs mailboxes in by XOAUTH2 (its ``oauth2`` passdb).
* :class:`FaultyProxy` sits between the connector and pymap (or Dovecot). The standard
  suite's faults are HTTP-shaped (429, 503, 500); the proxy answers a new connection the way
  an IMAP server under trouble does: ``* BYE [LIMIT]`` (too many connections: the 429s),
  ``* BYE [UNAVAILABLE]`` (the 503) or a dropped connection (the 500).
* :class:`TlsFront` terminates implicit TLS (port-993 style) before a plain pymap, which has no
  such listener of its own; given a certificate, pymap itself offers STARTTLS.
* :class:`SmtpServer` is an aiosmtpd ``Controller`` that records every message, and answers the
  same faults as an SMTP relay does (``421 4.7.0`` / ``450 4.7.1`` / ``421 4.3.2`` / ``451
  4.3.0``), and a rejection as ``550 5.7.1 <message>``. Like a real relay it refuses chosen
  recipients at RCPT TO, for good (``550 5.1.1``, a mistyped or forged address) or for now
  (``451 4.7.1``, greylisting), and it can be stopped and started again on the same port.

One :class:`FaultPlan` is shared by both servers: "the next N requests fail" counts IMAP
connections and SMTP transactions alike, as the suite means it.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import imaplib
import os
import pwd
import re
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from aiosmtpd.controller import Controller
from usm_bridge.testing import Fault

IMAP_GREETING_FAULTS = {
    Fault.RATE_LIMITED: b"* BYE [LIMIT] Too many connections, try again in a moment\r\n",
    Fault.RATE_LIMITED_NO_RETRY_AFTER: b"* BYE [LIMIT] Too many connections\r\n",
    Fault.UNAVAILABLE: b"* BYE [UNAVAILABLE] Server temporarily unavailable\r\n",
    Fault.SERVER_ERROR: b"",  # the connection is dropped without a word
}
SMTP_FAULTS = {
    Fault.RATE_LIMITED: "421 4.7.0 Too many messages, slow down",
    Fault.RATE_LIMITED_NO_RETRY_AFTER: "450 4.7.1 Try again later",
    Fault.UNAVAILABLE: "421 4.3.2 Service not available",
    Fault.SERVER_ERROR: "451 4.3.0 Local error in processing",
}
USER, PASSWORD = "demouser", "demopass"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def serving(server: S) -> Iterator[S]:
    """For a fixture (``yield from serving(server)``): ``server`` started, and stopped when the
    fixture ends whatever happened."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FaultPlan:
    """Faults waiting for the next requests, consumed by whichever server sees one first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._rejections: deque[str] = deque()
        #: Recipient address -> the relay's whole reply at RCPT TO, until cleared.
        self._recipients: dict[str, str] = {}

    def add(self, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def reject(self, message: str) -> None:
        with self._lock:
            self._rejections.append(message)

    def refuse_recipient(self, address: str, *, for_now: bool = False) -> None:
        """Every RCPT TO ``address`` is refused until cleared: ``550 5.1.1`` (for good, as
        Postfix refuses an unknown user), or with ``for_now`` ``451 4.7.1`` (greylisting)."""
        reply = (
            f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again later"
            if for_now
            else f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        )
        with self._lock:
            self._recipients[address.lower()] = reply

    def accept_recipient(self, address: str) -> None:
        with self._lock:
            self._recipients.pop(address.lower(), None)

    def recipient_refusal(self, address: str) -> str | None:
        with self._lock:
            return self._recipients.get(address.lower())

    def take(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def take_rejection(self) -> str | None:
        with self._lock:
            return self._rejections.popleft() if self._rejections else None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rejections.clear()
            self._recipients.clear()


class _ChildServer:
    """An IMAP server run as a child process on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _greeted(self) -> bool:
        """Wait (15 s at most) for the server's ``* OK`` greeting; False if none came."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.process and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    if conn.recv(100).startswith(b"* OK"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM; a Dovecot master stops its children)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client


class PymapServer(_ChildServer):
    """pymap's in-memory backend on a free loopback port, as a child process.

    With ``tls=(cert_file, key_file)`` it offers STARTTLS (and refuses LOGIN before it); pymap
    has no implicit-TLS listener, so port-993 style TLS is a :class:`TlsFront` before it.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__()
        self.tls = tls

    def start(self) -> None:
        pymap = Path(sys.executable).with_name("pymap")
        security = ["--cert", str(self.tls[0]), "--key", str(self.tls[1])] if self.tls else []
        self.process = subprocess.Popen(
            [str(pymap), "--host", "127.0.0.1", "--port", str(self.port)]
            + (security or ["--no-tls"])
            + ["dict"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not self._greeted():
            self.stop()
            raise RuntimeError("pymap did not start")

    def restart(self) -> None:
        """A new server for the same address: everything gone, and a new UIDVALIDITY."""
        self.stop()
        self.start()


#: Where Debian's ``dovecot-imapd`` puts the server.
DOVECOT = "/usr/sbin/dovecot"


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None when it can."""
    found = shutil.which("dovecot") or (DOVECOT if os.access(DOVECOT, os.X_OK) else None)
    if found is None:
        return (
            "Dovecot is not installed (apt-get install -y dovecot-imapd, or make dovecot as root)"
        )
    return None


def dovecot_for_fixture(oauth2_introspection_url: str | None = None) -> Iterator[DovecotServer]:
    """A started :class:`DovecotServer` for a fixture, removed when it ends. Missing, Dovecot
    skips the test saying what to install, or fails it when ``CI=true``."""
    missing = dovecot_missing()
    if missing is not None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{missing} (CI=true: the Dovecot tests are required)", pytrace=False)
        pytest.skip(missing)
    server = DovecotServer(oauth2_introspection_url)
    server.start()
    try:
        yield server
    finally:
        server.remove()


class DovecotServer(_ChildServer):
    """A real Dovecot on a free loopback port, as a child process (``dovecot -F -c conf``).

    Everything it writes is in a private temporary folder: its configuration, its run folder
    (``base_dir``), the Maildirs (one per user) and ``dovecot.log`` (shown by :meth:`log` when
    a test fails). No root-owned path, no systemd. Run as root, Dovecot will not hand mail to
    uid 0, so its mail processes run as the ``dovecot`` user (which owns the Maildirs) and its
    login processes as ``dovenull``, the users Debian's package creates; run as anyone else,
    every process runs as that user.

    With ``oauth2_introspection_url`` it also takes ``AUTHENTICATE XOAUTH2`` for any mailbox,
    its ``oauth2`` passdb asking that URL (RFC 7662) about every token, uncached: a token
    expired or revoked by the test is refused at once. The passwd-file user signs in as before.
    """

    def __init__(self, oauth2_introspection_url: str | None = None) -> None:
        super().__init__()
        self.oauth2_introspection_url = oauth2_introspection_url
        self.root = Path(tempfile.mkdtemp(prefix="usm-dovecot-"))

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log(self) -> str:
        """What Dovecot logged so far (a failing test shows it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _config(self) -> Path:
        if os.getuid() == 0:
            internal, login, mail_user = "dovecot", "dovenull", "dovecot"
        else:
            internal = login = mail_user = getpass.getuser()
        account = pwd.getpwnam(mail_user)
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        os.chmod(self.root, 0o755)  # the mail processes (not root) reach their Maildirs
        if os.getuid() == 0:
            os.chown(mail, account.pw_uid, account.pw_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = self.root / "dovecot.conf"
        config.write_text(f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log_path}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2" if self.oauth2_introspection_url else ""}
# Say in the log why a sign-in failed: the OAuth tests count the refusals there.
auth_verbose = yes
# A refused sign-in is answered at once (the default waits 2 s against password guessing).
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {account.pw_uid}
mail_location = maildir:{mail}/%u
mail_max_userip_connections = 1000
# pymap names folders with "/", as the tests do; Dovecot's Maildir++ default would be ".".
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
{self._oauth2_passdb()}userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={mail}/%u
}}
# No growing penalty for the loopback address after refusals (2, 4, 8 s ...): tests refuse
# tokens on purpose, and the IMAP client's timeout must not be what they measure.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        return config

    def _oauth2_passdb(self) -> str:
        """The ``oauth2`` passdb block (XOAUTH2 only), or nothing without an introspection URL."""
        if self.oauth2_introspection_url is None:
            return ""
        settings = self.root / "oauth2.conf.ext"
        settings.write_text(f"""\
introspection_mode = post
introspection_url = {self.oauth2_introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
""")
        return f"""\
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {settings}
}}
"""

    def start(self) -> None:
        missing = dovecot_missing()
        if missing is not None:
            raise RuntimeError(missing)
        binary = shutil.which("dovecot") or DOVECOT
        config = self._config()
        with open(self.root / "dovecot.stderr", "wb") as stderr_file:
            self.process = subprocess.Popen(
                [binary, "-F", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
            )
        if self._greeted():
            return
        stderr = (self.root / "dovecot.stderr").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"Dovecot did not start:\n{stderr}\n{self.log()}")

    def remove(self) -> None:
        """Stop, and delete everything it wrote."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def recreate(self, *folders: str) -> None:
        """Delete ``folders`` (and their mail) and create them anew: each gets a new
        UIDVALIDITY, as on a new server. Children are named after their parents, and go first."""
        client = self.client()
        try:
            for folder in sorted(folders, key=len, reverse=True):
                status, data = client.delete(f'"{folder}"')
                assert status == "OK", (folder, data)
            for folder in sorted(folders, key=len):
                status, data = client.create(f'"{folder}"')
                assert status == "OK", (folder, data)
        finally:
            client.logout()


#: The IMAP servers the tests run: either is reached the same way.
ImapServer = PymapServer | DovecotServer


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        fault = self.server.plan.take()
        if fault is not None:
            greeting = IMAP_GREETING_FAULTS[fault]
            if greeting:
                with contextlib.suppress(OSError):
                    self.request.sendall(greeting)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port()))
        except OSError:
            return
        with upstream, self.server.tracking(self.request):
            _pump(
                self.request,
                upstream,
                self.server.stopping,
                heard=self.server.heard,
                rewrite=self.server.rewrite,
            )


def _pump(
    client: socket.socket,
    upstream: socket.socket,
    stopping: threading.Event,
    *,
    heard: Callable[[bytes], None] | None = None,
    rewrite: Callable[[bytes], bytes] | None = None,
) -> None:
    """Pass bytes both ways until one side closes or the server stops; ``heard`` is given what
    the client sends, ``rewrite`` may change what the server answers."""
    for sock in (client, upstream):  # no Nagle stalls on small IMAP lines
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sockets = [client, upstream]
    while not stopping.is_set():
        readable, _, _ = select.select(sockets, [], [], 0.2)
        for source in readable:
            try:
                chunk = source.recv(65536)
                # A TLS socket may hold decrypted bytes that select() cannot see.
                while isinstance(source, ssl.SSLSocket) and source.pending():
                    chunk += source.recv(source.pending())
            except OSError:
                chunk = b""
            if not chunk:
                return
            if source is client and heard is not None:
                heard(chunk)
            if source is upstream and rewrite is not None:
                chunk = rewrite(chunk)
            target = upstream if source is client else client
            try:
                target.sendall(chunk)
            except OSError:
                return


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, upstream: ImapServer, plan: FaultPlan) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.plan = plan
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        #: What the clients sent since :meth:`record` (``None``: not recorded).
        self._heard: list[bytes] | None = None
        #: Capabilities hidden from the clients (the server's answers are rewritten).
        self.hidden: tuple[bytes, ...] = ()

    def upstream_port(self) -> int:
        return self.upstream.port

    @contextlib.contextmanager
    def tracking(self, client: socket.socket) -> Iterator[None]:
        with self._lock:
            self._live.add(client)
        try:
            yield
        finally:
            with self._lock:
                self._live.discard(client)

    def heard(self, chunk: bytes) -> None:
        with self._lock:
            if self._heard is not None:
                self._heard.append(chunk)

    def record(self, on: bool) -> None:
        with self._lock:
            self._heard = [] if on else None

    def rewrite(self, chunk: bytes) -> bytes:
        for capability in self.hidden:
            chunk = re.sub(rb"(?<= )" + re.escape(capability) + rb"(?=[ \]\r])", b"", chunk)
            chunk = chunk.replace(b"  ", b" ")
        return chunk

    def said(self) -> bytes:
        with self._lock:
            return b"".join(self._heard or [])

    def drop(self) -> int:
        """Cut every connection passing through now, as a network fault would; how many."""
        with self._lock:
            live = list(self._live)
        for client in live:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        return len(live)


class FaultyProxy:
    """A TCP proxy to pymap or Dovecot that answers planned faults instead of passing a
    connection on."""

    def __init__(self, upstream: ImapServer, plan: FaultPlan) -> None:
        self.server = _ProxyServer(upstream, plan)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def record(self, on: bool = True) -> None:
        """Keep what the clients send from now on (anew), or stop keeping it."""
        self.server.record(on)

    def said(self) -> bytes:
        """What the clients sent through the proxy since :meth:`record`."""
        return self.server.said()

    def drop(self) -> int:
        """Cut every connection passing through now (the clients see them reset or closed)."""
        return self.server.drop()

    def hide(self, *capabilities: str) -> None:
        """Take ``capabilities`` out of every answer the server gives (until shown again)."""
        self.server.hidden = tuple(c.encode() for c in capabilities)


class _TlsFrontHandler(socketserver.BaseRequestHandler):
    server: _TlsFrontServer

    def handle(self) -> None:
        self.request.settimeout(5)  # a client that never shakes hands cannot hold stop() up
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except OSError:  # the client refused the certificate (ssl.SSLError is an OSError)
            return
        with tls:
            tls.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.server.upstream.port))
            except OSError:
                return
            with upstream:
                _pump(tls, upstream, self.server.stopping)


class _TlsFrontServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, upstream: PymapServer, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _TlsFrontHandler)
        self.upstream = upstream
        self.context = context
        self.stopping = threading.Event()


class TlsFront:
    """Implicit TLS (port-993 style) before a plain pymap, as stunnel or a load balancer does."""

    def __init__(self, upstream: PymapServer, context: ssl.SSLContext) -> None:
        self.server = _TlsFrontServer(upstream, context)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        rejection = self.plan.take_rejection()
        if rejection is not None:
            return f"550 5.7.1 {rejection}"
        fault = self.plan.take()
        if fault is not None:
            return SMTP_FAULTS[fault]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self.plan.recipient_refusal(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(content)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on loopback, recording what it was given.

    ``options`` go to aiosmtpd's ``Controller``: ``ssl_context`` for implicit TLS, or
    ``tls_context`` / ``require_starttls`` / ``authenticator`` for STARTTLS and AUTH.
    """

    def __init__(self, plan: FaultPlan, **options: Any) -> None:
        self.handler = _Handler(plan)
        self.port = free_port()
        self._options = options
        self.controller = self._controller()
        self._stopped = False

    def _controller(self) -> Controller:
        return Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._options)

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> None:
        """Listen (again, after :meth:`stop`: a new controller on the same port, the same
        record of messages; a stopped controller's event loop cannot run again)."""
        if self._stopped:
            self.controller = self._controller()
        self.controller.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop listening: the bridge finds the relay down (connection refused). Stopping a
        stopped relay does nothing (a test that failed while its relay was down)."""
        if not self._stopped:
            self.controller.stop()
        self._stopped = True
