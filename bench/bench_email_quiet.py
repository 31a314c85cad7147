"""Benchmark of the e-mail connector's quiet cycle: a read with nothing new in a large mailbox.

Run: ``.venv/bin/python bench/bench_email_quiet.py [--messages 10000] [--quiet 20]
[--backend maildir|imap|dovecot|all]``

A mailbox of ``--messages`` mails (one in five a reply to an earlier one; 50 senders, so the
acknowledgements stop at the hourly limit per sender and the Sent folder holds some 150
copies) is made quickly: files written straight into a Maildir's ``cur``, or APPENDs to pymap
(its in-memory backend, on loopback, reached without a proxy) or to a real Dovecot (Debian's
``dovecot-imapd``, started as the tests start it: a child process with a private
configuration; it offers CONDSTORE, so the pending marks are asked only when the Sent folder's
HIGHESTMODSEQ moved). No relay: the outbox or Sent
folder copy is the sending. Then, for each backend:

- ``first read``: a new connector reads everything from no cursor (every header, every
  thread in full);
- ``quiet, running``: ``--quiet`` reads from the cursor by the same connector (a daemon's
  cycles with nothing new);
- ``quiet, new process``: one read from the cursor by a new connector each time (``usm-bridge
  sync`` from cron): connecting and logging in included.

Reported per phase: wall time (median and max of the quiet reads), and what was fetched:
headers and whole messages the store returned, and on IMAP every command sent (counted in the
client) with the FETCH commands among them. Target: a quiet cycle fetches nothing and takes
well under 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import imaplib
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from mailbox import Maildir
from pathlib import Path
from typing import Any, BinaryIO

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.stores import FolderRole, MailStore, StoredHeader

from usm_bridge.connector import Checkpoint

TESTS = Path(__file__).resolve().parents[1] / "connectors" / "email" / "tests"
ADDRESS = "servicedesk@hr.example"
#: IMAP commands sent by any client, counted by name (``UID FETCH`` under its own).
COMMANDS: Counter[str] = Counter()


def _count_imap_commands() -> None:
    real = imaplib.IMAP4._command

    def command(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
        COMMANDS[f"UID {args[0]}" if name == "UID" and args else name] += 1
        return real(self, name, *args)

    imaplib.IMAP4._command = command  # type: ignore[method-assign]


class CountingStore:
    """The connector's store, counting the headers and whole messages it hands over."""

    def __init__(self, inner: MailStore) -> None:
        self.inner, self.where = inner, inner.where
        self.headers = self.messages = 0

    def validity(self, role: FolderRole) -> int:
        return self.inner.validity(role)

    def list_since(self, role: FolderRole, uid: int) -> list[StoredHeader]:
        found = self.inner.list_since(role, uid)
        self.headers += len(found)
        return found

    def uids(self, role: FolderRole) -> list[int]:
        return self.inner.uids(role)

    def pending(self, role: FolderRole) -> list[int]:
        return self.inner.pending(role)

    def fetch(self, role: FolderRole, uids: list[int]) -> dict[int, bytes]:
        found = self.inner.fetch(role, uids)
        self.messages += len(found)
        return found

    def open_message(
        self, role: FolderRole, uid: int
    ) -> contextlib.AbstractContextManager[BinaryIO | None]:
        self.messages += 1  # a mail over max_message_bytes, read from a file
        return self.inner.open_message(role, uid)

    def append(self, role: FolderRole, raw: bytes, *, pending: bool) -> int | None:
        return self.inner.append(role, raw, pending=pending)

    def mark_sent(self, role: FolderRole, uid: int) -> None:
        self.inner.mark_sent(role, uid)

    def delete(self, role: FolderRole, uid: int) -> None:
        self.inner.delete(role, uid)

    def close(self) -> None:
        self.inner.close()


def mails(count: int) -> Iterator[bytes]:
    """``count`` mails as people send them, dated a month ago onwards, one in five a reply."""
    start = datetime.now(UTC) - timedelta(days=30)
    for n in range(count):
        lines = [
            f"From: Person {n % 50} <p{n % 50}@customer.example>",
            f"To: {ADDRESS}",
            f"Subject: {'Re: ' if n % 5 == 4 else ''}Chair {n - 1 if n % 5 == 4 else n} wobbles",
            f"Date: {email.utils.format_datetime(start + timedelta(minutes=n))}",
            f"Message-ID: <m{n}@customer.example>",
        ]
        if n % 5 == 4:
            lines += [f"In-Reply-To: <m{n - 1}@customer.example>"]
        lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", ""]
        lines += [f"The chair in room {n} wobbles and one wheel is missing.", ""]
        yield "\r\n".join(lines).encode()


def fill_maildir(path: Path, count: int) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for n, raw in enumerate(mails(count)):
        (path / "cur" / f"{1_700_000_000 + n}.M{n}P1.{host}:2,S").write_bytes(raw)


def fill_imap(port: int, folders: tuple[str, str], count: int) -> None:
    client = imaplib.IMAP4("127.0.0.1", port)
    # Without it every APPEND waits for a delayed ACK (some 40 ms): 10,000 would take minutes.
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login("demouser", "demopass")
    for folder in folders:
        client.create(folder)
    for raw in mails(count):
        client.append(folders[0], "(\\Seen)", None, raw)
    client.logout()


def fill_raw(port: int, folder: str, raw: bytes) -> None:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login("demouser", "demopass")
    client.append(folder, None, None, raw)
    client.logout()


def read(connector: EmailConnector, cursor: str | None) -> tuple[int, str, CountingStore]:
    """One read: the records it yielded, its last checkpoint, and what it fetched."""
    store = CountingStore(connector._open())
    connector._store = store
    records, last = 0, ""
    for item in connector.read_changes(cursor):
        if isinstance(item, Checkpoint):
            last = item.cursor
        else:
            records += 1
    return records, last, store


def reply(n: int) -> bytes:
    """A reply to mail ``n`` of :func:`mails`, sent now."""
    return "\r\n".join([
        "From: Person 7 <p7@customer.example>", f"To: {ADDRESS}", f"Subject: Re: Chair {n}",
        f"Date: {email.utils.format_datetime(datetime.now(UTC))}",
        f"Message-ID: <reply{n}@customer.example>", f"In-Reply-To: <m{n}@customer.example>",
        "", "Still wobbling.", "",
    ]).encode()  # fmt: skip


def run(
    backend: str, make: Callable[[], EmailConnector], quiet: int, deliver: Callable[[bytes], None]
) -> None:
    print(f"\n== {backend} ==")
    COMMANDS.clear()
    opening: list[float] = []
    began = time.perf_counter()
    connector = make()
    records, cursor, store = read(connector, None)
    first = time.perf_counter() - began
    print(f"first read: {first:.1f} s, {records} threads, {store.headers} headers and "
          f"{store.messages} messages fetched, IMAP commands {sum(COMMANDS.values())} "
          f"(FETCH {COMMANDS['UID FETCH']})")  # fmt: skip

    def phase(name: str, one: Callable[[], tuple[int, str, CountingStore]]) -> None:
        times: list[float] = []
        opening.clear()
        fetched = commands = fetch_commands = records = 0
        for _ in range(quiet):
            COMMANDS.clear()
            began = time.perf_counter()
            found, after, store = one()
            times.append(time.perf_counter() - began)
            assert after == cursor, "a quiet read moved the cursor"
            records += found
            fetched += store.headers + store.messages
            commands = max(commands, sum(COMMANDS.values()))
            fetch_commands += COMMANDS["UID FETCH"] + COMMANDS["FETCH"]
        print(f"{name}: {quiet} reads, median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms; records {records}; headers+messages fetched "
              f"{fetched}; IMAP commands per read at most {commands}, FETCH commands "
              f"{fetch_commands}")  # fmt: skip
        if opening:
            print(f"  of which connecting (and logging in): median "
                  f"{statistics.median(opening) * 1000:.1f} ms")  # fmt: skip

    phase("quiet, running", lambda: read(connector, cursor))

    # One reply arrives: the running connector fetches its header and its thread, no more.
    deliver(reply(10))
    COMMANDS.clear()
    began = time.perf_counter()
    records, _, store = read(connector, cursor)
    print(f"one new mail, running: {(time.perf_counter() - began) * 1000:.1f} ms, {records} "
          f"thread, {store.headers} header and {store.messages} message fetched (what is new), "
          f"IMAP commands {sum(COMMANDS.values())}")  # fmt: skip
    connector.close()
    COMMANDS.clear()
    began = time.perf_counter()
    records, _, store = read(make(), cursor)
    print(f"the same mail read by a new process: {time.perf_counter() - began:.1f} s, {records} "
          f"thread, {store.headers} headers and {store.messages} messages fetched (the header "
          f"index is built anew), IMAP commands {sum(COMMANDS.values())}")  # fmt: skip
    deliver(reply(20))  # the quiet phase of new processes starts from the cursor of a fresh read
    connector = make()
    _, cursor, _ = read(connector, cursor)
    connector.close()
    made: list[EmailConnector] = []

    def new_process() -> tuple[int, str, CountingStore]:
        made.append(make())
        began = time.perf_counter()
        made[-1]._open()  # timed on its own: pymap spends ~120 ms on a LOGIN
        opening.append(time.perf_counter() - began)
        return read(made[-1], cursor)

    phase("quiet, new process", new_process)
    for one in made:
        one.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--quiet", type=int, default=20)
    parser.add_argument("--backend", choices=["maildir", "imap", "dovecot", "all"], default="all")
    args = parser.parse_args()
    _count_imap_commands()
    base: dict[str, Any] = {"address": ADDRESS, "reference_prefix": "HR"}

    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("maildir", "all"):
            path = Path(tmp) / "Maildir"
            began = time.perf_counter()
            fill_maildir(path, args.messages)
            print(
                f"Maildir of {args.messages} mails written in {time.perf_counter() - began:.1f} s"
            )
            settings = EmailSettings.model_validate({**base, "maildir": {"path": str(path)}})
            box = Maildir(str(path), create=False)
            run("Maildir", lambda: EmailConnector("bench", settings), args.quiet, box.add)

    sys.path.insert(0, str(TESTS))
    from email_servers import DovecotServer, PymapServer  # the tests' servers on loopback

    if args.backend in ("imap", "all"):
        pymap = PymapServer()
        pymap.start()
        try:
            run_imap("IMAP (pymap)", pymap.port, args.messages, args.quiet, base)
        finally:
            pymap.stop()
    if args.backend in ("dovecot", "all"):
        dovecot = DovecotServer()
        dovecot.start()
        try:
            run_imap("IMAP (Dovecot)", dovecot.port, args.messages, args.quiet, base)
        finally:
            dovecot.remove()


def run_imap(name: str, port: int, messages: int, quiet: int, base: dict[str, Any]) -> None:
    """The phases of :func:`run` on the IMAP server listening on ``port``."""
    began = time.perf_counter()
    folders = ("Bench", "Bench/Sent")
    fill_imap(port, folders, messages)
    print(f"{name} filled with {messages} mails in {time.perf_counter() - began:.1f} s")
    imap = {"host": "127.0.0.1", "port": port, "security": "plain",
            "username": "demouser", "password": "demopass",
            "inbox": folders[0], "sent": folders[1]}  # fmt: skip
    settings = EmailSettings.model_validate({**base, "imap": imap})
    run(
        name,
        lambda: EmailConnector("bench", settings),
        quiet,
        lambda raw: fill_raw(port, folders[0], raw),
    )


if __name__ == "__main__":
    main()
