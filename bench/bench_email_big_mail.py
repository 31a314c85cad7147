"""Benchmark of the e-mail connector's memory for a mail over ``max_message_bytes``.

Run: ``.venv/bin/python bench/bench_email_big_mail.py [--file-mb 40] [--limit-mb 10]``

One mail (a line of text and a PDF of ``--file-mb`` MB, base64-encoded as a mail client
sends it) is delivered into a Maildir desk. A new connector reads it, then opens its files,
once with ``max_message_bytes`` at ``--limit-mb`` (the mail is read within that bound: its
text, the file refused) and once with the limit above the mail (parsed whole, the file
decoded), each under ``tracemalloc``. Reported: the mail's size, the peak of Python's
allocations during the read and during the opening of the file, and the wall times.
Target: the read of a mail over the limit peaks at about what a mail at the limit costs
whole (the stdlib parses the mail as read, at most the limit) and never grows with the mail.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.mime_parts import UnreadablePart


def the_mail(file_bytes: int) -> bytes:
    content = hashlib.sha256(b"scan").digest() * (file_bytes // 32)
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    head = (
        "From: Ann <ann@customer.example>\r\nTo: hr@hr.example\r\nSubject: My scans\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <big@customer.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nAll my scans, signed.\r\n--b\r\n"
        'Content-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64'
        '\r\nContent-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    )
    return head.encode() + encoded + b"--b--\r\n"


def measured(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(peak MB of Python's allocations, seconds, result) of ``work``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1] / 1e6, time.perf_counter() - started, result
    finally:
        tracemalloc.stop()


def run(root: Path, raw: bytes, limit: int) -> dict[str, Any]:
    maildir = root / f"desk-{limit}"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.big.host").write_bytes(raw)
    settings = EmailSettings.model_validate({
        "address": "hr@hr.example", "reference_prefix": "HR", "maildir": {"path": str(maildir)},
        "max_message_bytes": limit, "acknowledge": False,
    })  # fmt: skip
    connector = EmailConnector("hr-mail", settings)
    try:
        read_mb, read_s, records = measured(lambda: list(connector.read_changes(None)))
        [file] = connector.list_attachments("<big@customer.example>")

        def open_file() -> str:
            try:
                with connector.open_attachment(file.remote_id) as chunks:
                    return f"{sum(len(c) for c in chunks)} bytes"
            except UnreadablePart as error:
                return f"refused: {error.remote_message}"

        open_mb, open_s, outcome = measured(open_file)
    finally:
        connector.close()
    return {
        "limit": limit, "records": sum(1 for r in records if hasattr(r, "remote_id")),
        "read_mb": read_mb, "read_s": read_s, "open_mb": open_mb, "open_s": open_s,
        "file": outcome,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file-mb", type=float, default=40.0)
    parser.add_argument("--limit-mb", type=float, default=10.0)
    args = parser.parse_args(argv)
    raw = the_mail(int(args.file_mb * 1e6))
    print(f"mail: {len(raw) / 1e6:.1f} MB ({args.file_mb:g} MB file, base64)")
    with tempfile.TemporaryDirectory() as folder:
        for limit in (int(args.limit_mb * 1e6), len(raw) + 1):
            found = run(Path(folder), raw, limit)
            print(
                f"max_message_bytes {limit / 1e6:.1f} MB: {found['records']} record; read peak "
                f"{found['read_mb']:.1f} MB in {found['read_s']:.2f} s; opening the file peak "
                f"{found['open_mb']:.1f} MB in {found['open_s']:.2f} s ({found['file'][:70]})"
            )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
