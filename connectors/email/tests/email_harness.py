"""Harnesses of the standard connector suite: the e-mail connector on IMAP+SMTP and on Maildir.

A backend record is a thread; the harness reaches the mailbox directly (its own IMAP login, or
the Maildir files) the way a person with a mail client would.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import errno
import imaplib
import itertools
import mailbox
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from email_servers import PASSWORD, USER, FaultPlan, PymapServer, SmtpServer
from usm_bridge.connector import Connector, RemoteDraft
from usm_bridge.testing import ConnectorHarness, Fault

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.parsing import message_ids

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
) -> tuple[str, bytes]:
    """A plain mail from a person, as a client would send it."""
    message_id = message_id or f"<{uuid.uuid4().hex}@customer.example>"
    lines = [
        f"From: {sender}",
        f"To: {ADDRESS}",
        f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(datetime.now(UTC))}",
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
    """The connector against pymap (through the fault proxy) and aiosmtpd."""

    seed_count = 7

    def __init__(self, imap: PymapServer, proxy_port: int, smtp: SmtpServer, plan: FaultPlan):
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
            "smtp": {"host": "127.0.0.1", "port": self.smtp.port, "security": "plain"},
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
