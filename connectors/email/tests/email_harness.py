"""Harnesses of the standard connector suite: the e-mail connector on IMAP+SMTP and on Maildir.

A backend record is a thread; the harness reaches the mailbox directly (its own IMAP login, or
the Maildir files) the way a person with a mail client would.

Also what the e-mail tests share: mails as people write them, a connector's reads and the relay's
mail, and :class:`MailBridge`, a bridge of Maildir desks through the real SyncEngine.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import errno
import imaplib
import itertools
import json
import mailbox
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from email_servers import PASSWORD, USER, DovecotServer, FaultPlan, ImapServer, SmtpServer
from usm_bridge.config import load_config
from usm_bridge.connector import Checkpoint, Connector, RawRecord, RemoteDraft
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import Call
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store
from usm_bridge.sync.engine import CycleSummary
from usm_bridge.testing import ConnectorHarness, Fault

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.parsing import message_ids

#: The mapping of every e-mail desk in these tests.
MAPPING = SHIPPED_MAPPINGS_DIR / "email-service-desk.yaml"
ADDRESS = "servicedesk@hr.example"
#: The outside supplier the harnesses' mailbox mails the calls it opens to.
SUPPLIER = "orders@supplier.example"
_folders = itertools.count(1)

#: The suite's faults as a busy or broken file system answers them (the mailbox on NFS).
FS_FAULTS = {
    Fault.RATE_LIMITED: errno.EAGAIN,
    Fault.RATE_LIMITED_NO_RETRY_AFTER: errno.EBUSY,
    Fault.UNAVAILABLE: errno.ESTALE,
    Fault.SERVER_ERROR: errno.EIO,
}


def customer_mail(
    subject: str,
    body: str,
    *,
    sender: str = "Ann Customer <ann@customer.example>",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    extra: Mapping[str, str] | None = None,
    to: str = ADDRESS,
    when: datetime | None = None,
) -> tuple[str, bytes]:
    """A plain mail from a person, as a client would send it, dated ``when`` (default now)."""
    message_id = message_id or f"<{uuid.uuid4().hex}@customer.example>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(when or datetime.now(UTC))}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return message_id, "\r\n".join(lines).encode()


def _thread_of(raw_messages: list[bytes], remote_id: str) -> list[str]:
    found: list[str] = []
    for raw in raw_messages:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        linked = message_ids(
            " ".join(str(message.get(h, "")) for h in ("Message-ID", "In-Reply-To", "References"))
        )
        if remote_id in linked:
            found.append(raw.decode("utf-8", errors="replace"))
    return found


def _roots(raw_messages: list[bytes]) -> list[str]:
    roots: list[str] = []
    for raw in raw_messages:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not message.get("In-Reply-To") and not message.get("References"):
            roots.extend(message_ids(str(message.get("Message-ID", ""))))
    return list(dict.fromkeys(roots))


class ImapHarness(ConnectorHarness):
    """The connector against pymap or Dovecot (through the fault proxy) and aiosmtpd."""

    seed_count = 7

    def __init__(self, imap: ImapServer, proxy_port: int, smtp: SmtpServer, plan: FaultPlan):
        self.imap, self.proxy_port, self.smtp, self.plan = imap, proxy_port, smtp, plan
        n = next(_folders)
        self.inbox, self.sent = f"Desk{n}", f"Desk{n}/Sent"
        self.client = imap.client()
        self.client.create(self.inbox)
        self.client.create(self.sent)

    def settings(self, **overrides: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "address": ADDRESS,
            "reference_prefix": "HR",
            "imap": {
                "host": "127.0.0.1",
                "port": self.proxy_port,
                "security": "plain",
                "username": USER,
                "password": PASSWORD,
                "inbox": self.inbox,
                "sent": self.sent,
                "timeout": 10,
            },
            "smtp": relay(self.smtp),
            "page_size": 3,
            "max_attempts": 4,
            "backoff_initial": 0.0,
            # The suite's creates open supplier calls: this is whom they are mailed to.
            "supplier_address": SUPPLIER,
        }
        values.update(overrides)
        return EmailSettings.model_validate(values)

    def make_connector(self, **overrides: Any) -> Connector:
        return EmailConnector("hr-mail", self.settings(**overrides), sleep=lambda _: None)

    def deliver(self, raw: bytes, folder: str | None = None) -> None:
        status, _ = self.client.append(folder or self.inbox, None, None, raw)
        assert status == "OK"

    def seed(self, count: int) -> list[str]:
        ids = []
        for i in range(count):
            message_id, raw = customer_mail(f"Printer {i} jams", f"Printer number {i} jams again.")
            self.deliver(raw)
            ids.append(message_id)
        return ids

    def touch(self, remote_id: str) -> None:
        _, raw = customer_mail("Re: printer", "Still broken.", in_reply_to=remote_id)
        self.deliver(raw)

    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        self.plan.add(fault, times)

    def inject_rejection(self, message: str) -> None:
        self.plan.reject(message)

    def make_draft(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"subject": text, "body": f"Please look at this: {text}"})

    def make_update(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"body": text})

    def raw_messages(self, folder: str) -> list[bytes]:
        self.client.select(f'"{folder}"')
        _, data = self.client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]

    def everything(self) -> list[bytes]:
        return self.raw_messages(self.inbox) + self.raw_messages(self.sent)

    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        found = _thread_of(self.everything(), remote_id)
        return {"messages": found} if found else None

    def all_remote_ids(self) -> list[str]:
        return _roots(self.everything())

    def close(self) -> None:
        self.plan.clear()
        try:
            self.client.logout()
        except (imaplib.IMAP4.error, OSError):
            self.client.shutdown()


def empty_on_a_new_server(server: ImapServer, harness: ImapHarness) -> None:
    """The harness's folders, emptied, on a "new server": each with a new UIDVALIDITY. pymap
    is restarted (its memory is all it has); Dovecot's folders are deleted and created again."""
    harness.client.shutdown()
    if isinstance(server, DovecotServer):
        server.recreate(harness.inbox, harness.sent)
        harness.client = server.client()
    else:
        server.restart()
        harness.client = server.client()
        harness.client.create(harness.inbox)
        harness.client.create(harness.sent)


class MaildirHarness(ConnectorHarness):
    """The embedded default: a Maildir a server delivers into and the bridge's Maildir outbox."""

    seed_count = 7

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox_path = root / "Maildir"
        self.outbox_path = root / "Maildir" / ".Sent"
        self.inbox = mailbox.Maildir(self.inbox_path, create=True)
        self.plan = FaultPlan()

    def hook(self, doing: str) -> None:
        rejection = self.plan.take_rejection() if doing == "delivering" else None
        if rejection is not None:
            raise OSError(errno.EROFS, rejection)
        fault = self.plan.take()
        if fault is not None:
            raise OSError(FS_FAULTS[fault], f"{fault.value} (as a file system)")

    def settings(self, **overrides: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "address": ADDRESS,
            "reference_prefix": "HR",
            "maildir": {"path": str(self.inbox_path)},
            "page_size": 3,
            "backoff_initial": 0.0,
            "supplier_address": SUPPLIER,
        }
        values.update(overrides)
        return EmailSettings.model_validate(values)

    def make_connector(self, **overrides: Any) -> Connector:
        return EmailConnector(
            "hr-mail", self.settings(**overrides), sleep=lambda _: None, maildir_hook=self.hook
        )

    def deliver(self, raw: bytes) -> None:
        self.inbox.add(raw)

    def seed(self, count: int) -> list[str]:
        ids = []
        for i in range(count):
            message_id, raw = customer_mail(f"Door {i} stuck", f"Door number {i} is stuck.")
            self.deliver(raw)
            ids.append(message_id)
        return ids

    def touch(self, remote_id: str) -> None:
        _, raw = customer_mail("Re: door", "Still stuck.", in_reply_to=remote_id)
        self.deliver(raw)

    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        self.plan.add(fault, times)

    def inject_rejection(self, message: str) -> None:
        self.plan.reject(message)

    def make_draft(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"subject": text, "body": f"Please look at this: {text}"})

    def make_update(self, text: str) -> RemoteDraft:
        return RemoteDraft(fields={"body": text})

    def everything(self) -> list[bytes]:
        found = []
        for path in (self.inbox_path, self.outbox_path):
            for sub in ("new", "cur"):
                folder = path / sub
                if folder.is_dir():
                    found += [file.read_bytes() for file in sorted(folder.iterdir())]
        return found

    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        found = _thread_of(self.everything(), remote_id)
        return {"messages": found} if found else None

    def all_remote_ids(self) -> list[str]:
        return _roots(self.everything())


# -- a connector as the e-mail tests drive it --------------------------------------------------


def relay(smtp: SmtpServer, **extra: Any) -> dict[str, Any]:
    """The ``smtp`` setting of a desk that mails through ``smtp`` (aiosmtpd on loopback)."""
    return {"host": "127.0.0.1", "port": smtp.port, "security": "plain", **extra}


def connect(harness: MaildirHarness, smtp: SmtpServer, **overrides: Any) -> EmailConnector:
    """The harness's connector (``overrides`` its settings), mailing through ``smtp``."""
    connector = harness.make_connector(smtp=relay(smtp), **overrides)
    assert isinstance(connector, EmailConnector)
    return connector


def desk_with_connector(
    root: Path, **settings: Any
) -> Iterator[tuple[MaildirHarness, EmailConnector]]:
    """For a fixture: a Maildir desk under ``root`` and its connector (``settings`` its
    settings), both closed when the fixture ends."""
    harness = MaildirHarness(root)
    connector = harness.make_connector(**settings)
    assert isinstance(connector, EmailConnector)
    try:
        yield harness, connector
    finally:
        connector.close()
        harness.close()


def read(connector: EmailConnector, cursor: str | None = None) -> tuple[list[RawRecord], str]:
    """One read from ``cursor``: the records, and the checkpoint it ended with."""
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [i for i in items if isinstance(i, RawRecord)], items[-1].cursor


def replies(record: RawRecord) -> list[dict[str, Any]]:
    """A thread record's replies (the mails after its first, the bridge's among them)."""
    found: Any = record.data["replies"]
    return list(found)


def sent_to(smtp: SmtpServer, since: int, address: str) -> list[EmailMessage]:
    """The mails the relay took for ``address`` since its ``since``-th message."""
    return [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _, rcpts, raw in smtp.messages[since:]
        if address in rcpts
    ]


# -- a connector's watch (the daemon's watcher thread) -----------------------------------------


class Wakes:
    """A wake function that counts its calls."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def now(self) -> int:
        with self._changed:
            return self.count

    def beyond(self, count: int, timeout: float = 5.0) -> int:
        """Wait for a wake after the ``count``-th; the count then."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.count > count, timeout), (
                f"no wake after the {count}th"
            )
            return self.count


@contextmanager
def watching(
    watch: Callable[[Callable[[], None], threading.Event], None],
) -> Iterator[tuple[Wakes, threading.Thread]]:
    """``watch`` on a thread; stopped when the block ends, and it must end within 2 s."""
    wakes, stop = Wakes(), threading.Event()
    thread = threading.Thread(target=watch, args=(wakes, stop), daemon=True)
    thread.start()
    try:
        yield wakes, thread
    finally:
        stop.set()
        thread.join(2)
        assert not thread.is_alive(), "the watch did not stop"


# -- a bridge of e-mail desks through the real SyncEngine --------------------------------------


@dataclass(frozen=True)
class Desk:
    """One e-mail instance of a bridge config: ``unit``'s mailbox, on :data:`MAPPING`."""

    instance: str
    unit: str
    settings: Mapping[str, Any]


def maildir_desk(root: Path, smtp: SmtpServer, instance: str, unit: str, **settings: Any) -> Desk:
    """``unit``'s desk ``instance`` on the Maildir ``root/<instance>``, mailing through ``smtp``,
    with ``settings`` (its address and reference prefix at least)."""
    maildir = {"path": str(root / instance)}
    return Desk(
        instance,
        unit,
        {"maildir": maildir, "smtp": relay(smtp), "backoff_initial": 0.0, **settings},
    )


def imap_desk(
    harness: ImapHarness, smtp: SmtpServer, instance: str, unit: str, **settings: Any
) -> Desk:
    """``unit``'s desk ``instance`` on the IMAP folders of ``harness`` (reached directly, not
    through the fault proxy), mailing through ``smtp``, with ``settings``."""
    imap = {
        "host": "127.0.0.1",
        "port": harness.imap.port,
        "security": "plain",
        "username": USER,
        "password": PASSWORD,
        "inbox": harness.inbox,
        "sent": harness.sent,
        "timeout": 10,
    }
    return Desk(
        instance, unit, {"imap": imap, "smtp": relay(smtp), "backoff_initial": 0.0, **settings}
    )


def _toml(value: Any) -> str:
    """``value`` as a TOML value (strings as JSON writes them are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _table(header: str, values: Mapping[str, Any]) -> str:
    return "\n".join([header, *(f"{k} = {_toml(v)}" for k, v in values.items())])


def write_config(
    root: Path,
    *desks: Desk,
    store: str | None = None,
    route: tuple[str, str] | None = None,
    instance: Mapping[str, Any] | None = None,
    daemon: Mapping[str, Any] | None = None,
) -> Path:
    """``root/usm-bridge.toml``: the ``desks``' units and instances on ``store`` (default a
    SQLite file in ``root``), and a ``route`` (from unit, to unit) for service requests;
    ``instance`` adds to every instance's table (``interval``, ``watch``), ``daemon`` is the
    ``[daemon]`` table."""
    tables = [
        _table("[store]", {"url": store or f"sqlite:///{root}/bridge.db"}),
        # Files on their way in the test's folder, never the working directory's default.
        _table("[attachments]", {"spool": str(root / "attachments-spool")}),
        *(f"[units.{unit}]" for unit in dict.fromkeys(desk.unit for desk in desks)),
    ]
    for desk in desks:
        table = {"unit": desk.unit, "kind": "email", "mapping": MAPPING, **(instance or {})}
        tables.append(_table(f"[instances.{desk.instance}]", table))
        tables.append(_table(f"[instances.{desk.instance}.settings]", desk.settings))
    if route is not None:
        source, target = route
        when = {"call_type": ["service_request"]}
        routing = {"name": f"{source}-to-{target}", "from": source, "to": target, "when": when}
        tables.append(_table("[[routes]]", routing))
    if daemon is not None:
        tables.append(_table("[daemon]", daemon))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "usm-bridge.toml"
    path.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    return path


class MailBridge:
    """The bridge of ``desks`` with its store in ``root`` (:func:`write_config`), run through
    the real SyncEngine; each desk's Maildir as the people writing to it see it."""

    def __init__(self, root: Path, *desks: Desk, route: tuple[str, str] | None = None) -> None:
        config = load_config(write_config(root, *desks, route=route))
        self.boxes = {
            desk.instance: mailbox.Maildir(desk.settings["maildir"]["path"], create=True)
            for desk in desks
            if "maildir" in desk.settings  # an IMAP desk's mail comes by its harness
        }
        self.store = Store.open(config.store.url)
        self.engine = build_runtime(config, self.store, host=PluginHost()).engine

    def cycle(self, *names: str) -> list[CycleSummary]:
        """One cycle of each instance in ``names``, in turn."""
        return [self.engine.run_cycle(name) for name in names]

    def run_clean(self, *names: str) -> None:
        """One cycle of each instance in ``names``, in turn, each ok and without dead letters."""
        for name in names:
            summary = self.engine.run_cycle(name)
            assert summary.ok and summary.dead_letters == 0, summary

    def calls(self) -> dict[str, Call]:
        """Each unit's call (the tests have one a unit)."""
        with self.store.begin(readonly=True) as tx:
            return {s.call.unit: s.call for s in tx.list_calls()}

    def close(self) -> None:
        self.engine.close()
        self.store.close()
