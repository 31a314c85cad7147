"""Three units on real tools, on loopback: what the end-to-end tests of the chain start.

- **hr** reads a Maildir (the embedded default) and answers over SMTP (aiosmtpd), keeping a
  copy of every answer in the Maildir outbox ``.Sent``;
- **facilities** is a Jira Service Management project on the Jira Cloud simulator;
- **it** keeps requested items (``sc_req_item``) on the ServiceNow simulator.

Every HTTP request either simulator serves goes through :class:`Traffic` (method, path, and
how many are in flight), so a test can count the bridge's writes and wait until a killed
process's last request has been served; HR's relay can be told to answer late or to refuse
for now (:class:`SmtpFault`). The config is a real TOML file loaded with
:func:`usm_bridge.config.load_config`, with the shipped mapping files; :func:`open_engine`
builds the real :class:`~usm_bridge.sync.engine.SyncEngine` on it, and :func:`settle` and
:func:`assert_quiet` run its cycles as the daemon would. The ``tools`` and ``engine``
fixtures of ``conftest.py`` start and stop both.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import email.utils
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from aiosmtpd.controller import Controller
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN, JiraSimulator
from usm_bridge_servicenow.simulator import ServiceNowSimulator

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.runtime import open_runtime
from usm_bridge.store import Store
from usm_bridge.sync.engine import CycleSummary, SyncEngine

MAPPINGS = SHIPPED_MAPPINGS_DIR
HR_ADDRESS = "servicedesk@hr.example"
NEW_HIRE_SUBJECT = "[request] Onboarding: new hire needs a desk, a badge and a laptop"
NEW_HIRE_BODY = (
    "Hello,\n\nMaria Lopez starts on Monday in the finance team.\n"
    "The new hire needs a desk, a badge and a laptop.\n\nThanks, Hannah"
)
JIRA_PROJECT = "IT"  # the simulator's JSM project ("IT Service Desk"), used by Facilities
SNOW_TABLE = "sc_req_item"
#: Requests that only read, though sent with POST.
_READ_POSTS = ("/search/jql",)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Traffic:
    """Every request a simulator served: (method, path); and how many are being served."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)

    def wrap(self, answer: Callable[..., Any]) -> Callable[..., Any]:
        def counted(method: str, path: str, *args: Any) -> Any:
            with self.lock:
                self.seen.append((method, path))
                self.in_flight += 1
            try:
                return answer(method, path, *args)
            finally:
                with self.lock:
                    self.in_flight -= 1
                    self.idle.notify_all()

        return counted

    def writes(self) -> list[tuple[str, str]]:
        with self.lock:
            return [
                (method, path)
                for method, path in self.seen
                if method != "GET" and not path.split("?")[0].endswith(_READ_POSTS)
            ]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no request is being served (a killed client's last one included)."""
        with self.idle:
            if not self.idle.wait_for(lambda: self.in_flight == 0, timeout=timeout):
                raise AssertionError(f"{self.in_flight} request(s) still being served")


@dataclass(frozen=True)
class SmtpFault:
    """How the relay answers one message: late, or refused for now (451)."""

    #: Seconds before the relay answers.
    delay: float = 0.0
    #: The relay keeps the message before waiting (only its answer is late: a client killed
    #: meanwhile has handed it over) rather than after (a client killed meanwhile has not).
    kept_first: bool = False
    #: Answer 451 (try again later) and keep nothing.
    refuse: bool = False
    #: Only for a message of this ``X-USM-Kind`` (the others pass as usual); any when None.
    kind: str | None = None


class _SmtpSink:
    """What aiosmtpd was handed: (from, to, raw message); and how it answers the next ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.faults: list[SmtpFault] = []
        #: How many messages met a fault so far (waited on by :meth:`wait_faulted`).
        self.faulted = 0
        self._changed = threading.Condition(self.lock)

    def fail_next(self, fault: SmtpFault, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def wait_faulted(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` messages in all met a fault (the relay is then holding the last)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.faulted >= count, timeout=timeout):
                raise AssertionError(f"{self.faulted} message(s) met a fault, not {count}")

    def _keep(self, envelope: Any) -> None:
        content = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(content)))

    def _fault_for(self, envelope: Any) -> SmtpFault | None:
        raw = envelope.original_content or envelope.content
        kind = email.message_from_bytes(raw, policy=email.policy.default)["X-USM-Kind"]
        with self._changed:
            for index, fault in enumerate(self.faults):
                if fault.kind is None or fault.kind == kind:
                    self.faulted += 1
                    self._changed.notify_all()
                    return self.faults.pop(index)
        return None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self._fault_for(envelope) or SmtpFault()
        if fault.kept_first and not fault.refuse:
            self._keep(envelope)
        # A client that goes away meanwhile cancels this (aiosmtpd): nothing more is kept.
        await asyncio.sleep(fault.delay)
        if fault.refuse:
            return "451 4.3.0 Try again later"
        if not fault.kept_first:
            self._keep(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Tools:
    """The three units' tools, running."""

    root: Path
    jira: JiraSimulator
    snow: ServiceNowSimulator
    smtp: Controller
    smtp_port: int
    sink: _SmtpSink
    jira_traffic: Traffic = field(default_factory=Traffic)
    snow_traffic: Traffic = field(default_factory=Traffic)

    @property
    def maildir(self) -> Path:
        return self.root / "Maildir"

    @property
    def sent_dir(self) -> Path:
        return self.maildir / ".Sent"

    # -- the people at each unit ----------------------------------------------------------------

    def mail_to_hr(
        self,
        subject: str = NEW_HIRE_SUBJECT,
        body: str = NEW_HIRE_BODY,
        *,
        sender: str = "Hannah Hiring <hannah@example.com>",
        in_reply_to: str | None = None,
        parts: Sequence[bytes] = (),
    ) -> str:
        """A person's mail delivered into HR's Maildir, as a mail server would; its Message-ID.

        :param in_reply_to: the Message-ID it answers (a reply in the thread).
        :param parts: MIME parts (headers, blank line, content; CRLF) after the text: files."""
        message_id = f"<{uuid.uuid4().hex}@example.com>"
        thread = [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
        raw = "\r\n".join(
            [
                f"From: {sender}",
                f"To: {HR_ADDRESS}",
                f"Subject: {subject}",
                f"Date: {email.utils.format_datetime(datetime.now(UTC))}",
                f"Message-ID: {message_id}",
                *(thread if in_reply_to else []),
                "MIME-Version: 1.0",
                *(
                    ['Content-Type: multipart/mixed; boundary="e2e-part"', "", "--e2e-part"]
                    if parts
                    else []
                ),
                "Content-Type: text/plain; charset=utf-8",
                "",
                body.replace("\n", "\r\n"),
                "",
            ]
        ).encode()
        if parts:  # written as a client writes them: the parts as given, between boundaries
            raw += b"".join(b"--e2e-part\r\n" + part + b"\r\n" for part in parts)
            raw += b"--e2e-part--\r\n"
        name = f"{uuid.uuid4().hex}.e2e"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        tmp.rename(self.maildir / "new" / name)  # Maildir delivery: tmp, then new
        return message_id

    def jira_as_person(self, method: str, path: str, body: Any = None) -> requests.Response:
        """A person (or their browser) using Jira's REST API."""
        token = base64.b64encode(f"{CLOUD_EMAIL}:{CLOUD_TOKEN}".encode()).decode()
        response = requests.request(
            method,
            f"{self.jira.base_url}/rest/api/3/{path}",
            json=body,
            headers={"Authorization": f"Basic {token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response

    def resolve_in_jira(self, issue_id: str) -> None:
        transitions = self.jira_as_person("GET", f"issue/{issue_id}/transitions").json()
        resolve = next(t for t in transitions["transitions"] if t["to"]["name"] == "Resolved")
        self.jira_as_person(
            "POST",
            f"issue/{issue_id}/transitions",
            {"transition": {"id": resolve["id"]}, "fields": {"resolution": {"name": "Done"}}},
        )

    # -- what each tool holds --------------------------------------------------------------------

    def jira_issues(self) -> list[Any]:
        with self.jira.site.lock:
            return list(self.jira.site.issues.values())

    def snow_items(self) -> list[dict[str, str]]:
        with self.snow.lock:
            return [dict(r) for r in self.snow.tables[SNOW_TABLE].records.values()]

    def snow_comments(self, sys_id: str) -> list[str]:
        return [e["value"] for e in self.snow.journal(sys_id) if e["element"] == "comments"]

    def sent_mails(self) -> list[email.message.EmailMessage]:
        """The bridge's outbound mail, from the Maildir outbox."""
        found = []
        for sub in ("new", "cur"):
            folder = self.sent_dir / sub
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    message = email.message_from_bytes(
                        path.read_bytes(), policy=email.policy.default
                    )
                    found.append(message)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]

    def mailed_files(self, name: str) -> list[bytes]:
        """The content of every file named ``name`` in the bridge's outbound mail."""
        return [
            part.get_content()
            for mail in self.sent_mails()
            for part in mail.iter_attachments()
            if part.get_filename() == name
        ]

    def snow_files(self, sys_id: str) -> list[tuple[str, bytes]]:
        """(file name, content) of every file ServiceNow holds on the record ``sys_id``."""
        records = self.snow.tables["sys_attachment"].records.values()
        return [
            (r["file_name"], self.snow.attachments.path_of(r["sys_id"]).read_bytes())
            for r in list(records)
            if r["table_sys_id"] == sys_id
        ]

    def unsent_mails(self) -> list[str]:
        """Message-IDs of the outbox copies still marked pending (``D``): never handed over."""
        folder = self.sent_dir / "cur"
        found = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if "D" in path.name.rpartition(":2,")[2]:
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                found.append(str(message["Message-ID"]))
        return found

    def smtp_message_ids(self) -> set[str]:
        """The Message-IDs the relay took."""
        return {
            str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])
            for _, _, raw in self.smtp_messages()
        }

    def inbox_files(self) -> int:
        return sum(
            len(list((self.maildir / sub).iterdir()))
            for sub in ("new", "cur")
            if (self.maildir / sub).is_dir()
        )

    def smtp_messages(self) -> list[tuple[str, list[str], bytes]]:
        with self.sink.lock:
            return list(self.sink.messages)

    def write_counts(self) -> dict[str, int]:
        """Every write the bridge can make, per tool: HTTP writes, mails kept, mails sent."""
        return {
            "jira": len(self.jira_traffic.writes()),
            "servicenow": len(self.snow_traffic.writes()),
            "sent": len(self.sent_mails()),
            "smtp": len(self.smtp_messages()),
        }

    def wait_idle(self) -> None:
        self.jira_traffic.wait_idle()
        self.snow_traffic.wait_idle()

    def stop(self) -> None:
        try:
            self.jira.stop()
        finally:
            try:
                self.snow.stop()
            finally:
                self.smtp.stop()


def start_tools(root: Path, *, snow_tls: ssl.SSLContext | None = None) -> Tools:
    """Start the three tools on loopback ports (stop them with :meth:`Tools.stop`).

    :param snow_tls: serve ServiceNow over HTTPS with this context (pysnc, ServiceNow's own
        client, refuses plain ``http://``); the bridge must then trust its authority.
    """
    for sub in ("tmp", "new", "cur"):
        (root / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    jira = JiraSimulator("cloud").start()
    try:
        snow = ServiceNowSimulator(ssl_context=snow_tls).start()
    except BaseException:
        jira.stop()
        raise
    sink = _SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    try:
        controller.start()
    except BaseException:
        jira.stop()
        snow.stop()
        raise
    tools = Tools(root, jira, snow, controller, port, sink)
    jira.answer = tools.jira_traffic.wrap(jira.answer)  # type: ignore[method-assign]
    snow.answer = tools.snow_traffic.wrap(snow.answer)  # type: ignore[method-assign]
    return tools


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_config(
    tools: Tools,
    path: Path,
    store_url: str,
    *,
    read_timeout: float = 10.0,
    extra: dict[str, dict[str, Any]] | None = None,
    owners: dict[str, dict[str, str]] | None = None,
    more_routes: list[dict[str, Any]] | None = None,
    relay_comments: bool = False,
) -> BridgeConfig:
    """The bridge's TOML config for the three tools; loaded (and so validated) back.

    :param owners: a route's ``owners`` by route name (``"facilities-to-it"``).
    :param more_routes: routes after the chain's two, each a table of TOML keys and values.
    :param relay_comments: the chain's two routes relay comments (HR's reach IT, and back).
    """
    owners = owners or {}

    def owners_line(route: str) -> list[str]:
        relay = ["relay_comments = true"] if relay_comments else []
        if route not in owners:
            return relay
        return [
            "owners = { " + ", ".join(f"{k} = {_toml(v)}" for k, v in owners[route].items()) + " }",
            *relay,
        ]

    settings: dict[str, dict[str, Any]] = {
        "hr-mail": {
            "address": HR_ADDRESS,
            "reference_prefix": "HR",
            "maildir": {"path": str(tools.maildir)},
            "smtp": {"host": "127.0.0.1", "port": tools.smtp_port, "security": "plain"},
            "max_attempts": 3,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
        },
        "facilities-jira": {
            "base_url": tools.jira.base_url,
            "deployment": "cloud",
            **tools.jira.credentials(),
            "projects": [JIRA_PROJECT],
            "max_attempts": 3,
            "retry_budget": 5.0,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "read_timeout": read_timeout,
        },
        "it-snow": {
            "instance_url": tools.snow.base_url,
            "tables": [SNOW_TABLE],
            "username": tools.snow.username,
            "password": tools.snow.password,
            "max_attempts": 3,
            "retry_budget": 5.0,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "read_timeout": read_timeout,
        },
    }
    for name, more in (extra or {}).items():
        settings[name].update(more)
    mappings = {
        "hr-mail": ("hr", "email", "email-service-desk.yaml"),
        "facilities-jira": ("facilities", "jira", "jira-service-management.yaml"),
        "it-snow": ("it", "servicenow", "servicenow-sc-req-item.yaml"),
    }
    lines = [
        "[store]",
        f"url = {_toml(store_url)}",
        "",
        # Files on their way beside the config (the test's folder), never in the working
        # directory's default spool (the repository, when the suite runs from a checkout).
        "[attachments]",
        f"spool = {_toml(str(path.parent / 'attachments-spool'))}",
        "",
        "[units.hr]",
        'title = "Human Resources"',
        "[units.facilities]",
        'title = "Facilities"',
        "[units.it]",
        'title = "IT"',
        "",
    ]
    for name, (unit, kind, mapping) in mappings.items():
        lines += [
            f"[instances.{name}]",
            f"unit = {_toml(unit)}",
            f"kind = {_toml(kind)}",
            f"mapping = {_toml(str(MAPPINGS / mapping))}",
            "interval = 1",
            f"[instances.{name}.settings]",
            *(f"{key} = {_toml(value)}" for key, value in settings[name].items()),
            "",
        ]
    lines += [
        "[[routes]]",
        'from = "hr"',
        'to = "facilities"',
        'when = { call_type = ["service_request"] }',
        *owners_line("hr-to-facilities"),
        "",
        "[[routes]]",
        'from = "facilities"',
        'to = "it"',
        'when = { call_type = ["service_request"] }',
        *owners_line("facilities-to-it"),
        "",
    ]
    for route in more_routes or []:
        lines += ["[[routes]]", *(f"{key} = {_toml(value)}" for key, value in route.items()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return load_config(path)


INSTANCES = ("hr-mail", "facilities-jira", "it-snow")


def calls_by_unit(store: Any) -> dict[str, list[Any]]:
    with store.begin(readonly=True) as tx:
        return {
            unit: [s.call for s in tx.list_calls(unit=unit)] for unit in ("hr", "facilities", "it")
        }


def iter_instances(rounds: int) -> Iterator[str]:
    for _ in range(rounds):
        yield from INSTANCES


@contextmanager
def open_engine(
    tools: Tools,
    config_path: Path,
    store_url: str,
    *,
    extra: dict[str, dict[str, Any]] | None = None,
    clock: Callable[[], datetime] | None = None,
    owners: dict[str, dict[str, str]] | None = None,
    more_routes: list[dict[str, Any]] | None = None,
    relay_comments: bool = False,
) -> Iterator[SyncEngine]:
    """The real engine on the three tools (config written to ``config_path``), closed after.

    :param clock: the engine's "now" for outbox due times (a test moves it instead of waiting).
    """
    config = write_config(
        tools, config_path, store_url, extra=extra, owners=owners, more_routes=more_routes,
        relay_comments=relay_comments,
    )  # fmt: skip
    with open_runtime(config, clock=clock) as runtime:
        yield runtime.engine


def settle(engine: SyncEngine, rounds: int = 3) -> list[CycleSummary]:
    """Each instance in turn, as the daemon would, a few times; every cycle must succeed."""
    summaries = []
    for _ in range(rounds):
        for name in INSTANCES:
            summary = engine.run_cycle(name)
            assert summary.ok, summary.error
            summaries.append(summary)
    return summaries


def onboard(tools: Tools, engine: SyncEngine) -> dict[str, list[Any]]:
    """The new hire's mail reaches HR and the bridge settles: each unit's calls then."""
    tools.mail_to_hr()
    settle(engine)
    return calls_by_unit(engine.store)


def versions(store: Store) -> dict[str, int]:
    """Every stored call's version, by call id."""
    with store.begin(readonly=True) as tx:
        return {stored.id: stored.version for stored in tx.list_calls()}


def assert_quiet(tools: Tools, engine: SyncEngine, rounds: int = 3) -> None:
    """More cycles store nothing and write nothing into any tool."""
    before, calls_before = tools.write_counts(), versions(engine.store)
    for summary in settle(engine, rounds):
        assert summary.pushed == 0 and summary.stored == 0, summary
    assert tools.write_counts() == before
    assert versions(engine.store) == calls_before


def only(calls: list[Any]) -> Any:
    """The one call of a unit."""
    assert len(calls) == 1, [c.title for c in calls]
    return calls[0]


def b64_part(headers: str, content: bytes) -> bytes:
    """A MIME part for :meth:`Tools.mail_to_hr`: ``headers`` (CRLF between), ``content`` in
    base64 as a mail client encodes it."""
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    return headers.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded


def adf(text: str) -> dict[str, Any]:
    """``text`` as a one-paragraph Atlassian document, as Jira's editor sends it."""
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }
