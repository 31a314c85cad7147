"""A process that dies by SIGKILL in the middle of a chained backfill page (for
``test_page_kill``): ``python chained_page_killer.py STORE_URL FOLDER COUNT PAGE``.

It adds ``COUNT`` requests with a comment each to hr's memory tool, saves the tool's tickets to
``FOLDER/hr-tickets.json`` (the test's own tool takes them over), and runs a cycle of hr that
reads them in pages of ``PAGE``. Each page opens a supplier call in fac for each request; the
second page's writes go out (calls, links, comment copies, audit events sent) and the process
kills itself as the page's outbox items are about to be: its transaction never commits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from sync.memory_tool import make_bridge, make_config
from usm_bridge.store import Store, batch_writes
from usm_bridge.store import schema as t

HR = "hr-tool"


def main(url: str, folder: Path, count: int, page: int) -> int:
    store = Store.open(url)
    bridge = make_bridge(store, make_config(folder))
    hr = bridge.tools[HR]
    for n in range(count):
        ticket = hr.add(title=f"Chair {n}", kind="request")
        hr.comment(ticket, f"Please hurry with chair {n}")
    saved = {"tickets": hr.tickets, "version": hr.version, "ids": hr._ids,
             "comment_ids": hr._comment_ids}  # fmt: skip
    (folder / "hr-tickets.json").write_text(json.dumps(saved))
    bridge.connectors[HR].page = page
    insert_rows = batch_writes.insert_rows
    outboxes: list[int] = []

    def killing(conn: Connection, table: Any, rows: Any, **options: Any) -> None:
        if table is t.outbox:
            outboxes.append(len(rows))
            if len(outboxes) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        insert_rows(conn, table, rows, **options)

    batch_writes.insert_rows = killing  # type: ignore[assignment]
    bridge.cycle(HR)
    print(f"the cycle ended without the kill: outbox inserts {outboxes}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    url, folder, count, page = sys.argv[1:]
    raise SystemExit(main(url, Path(folder), int(count), int(page)))
