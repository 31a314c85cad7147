"""The engine's file flows on memory tools that carry files: what a read of records with files
costs the store, how often a file is downloaded, and where a failed download is blamed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync.memory_files import FilesBridge, files_bridge, files_config, sha
from usm_bridge.connector import RawRecord
from usm_bridge.store import Store
from usm_bridge.sync.ingest import Outcome

HR = "hr-tool"
FORM = b"%PDF-1.4\n% a signed form\n" + b"0" * 3000


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[FilesBridge]:
    built = files_bridge(store, files_config(tmp_path))
    try:
        yield built
    finally:
        built.engine.close()


@contextmanager
def counting(store: Store) -> Iterator[list[str]]:
    """The statements the driver runs while the block runs (``BEGIN`` left out)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)


def records(bridge: FilesBridge, *ids: str) -> list[RawRecord]:
    read = {
        item.remote_id: item
        for item in bridge.connectors[HR].read_changes(None)
        if isinstance(item, RawRecord)
    }
    return [read[i] for i in ids]


def test_the_statements_of_a_page_with_files_do_not_grow_with_its_records(
    bridge: FilesBridge,
) -> None:
    """Issue #17 on a table full of files: the stored calls of a page's records with files are
    looked up once for the page, not once per record (a backfill, then a re-read)."""
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    counts: dict[str, list[int]] = {"backfill": [], "re-read": []}
    for size in (10, 60):
        ids = [hr.add(title=f"Incident {n}", kind="incident") for n in range(size)]
        for n, ticket in enumerate(ids):
            shelf.attach(ticket, f"form-{n}.pdf", FORM + str(n).encode())
        for phase, expected in (("backfill", Outcome.ROUTED), ("re-read", Outcome.UNCHANGED)):
            page = records(bridge, *ids)
            with counting(bridge.store) as statements:
                outcomes = bridge.engine.ingest.ingest_page(HR, page)
            assert [o.outcome for o in outcomes] == [expected] * size
            counts[phase].append(len(statements))
    print("statements per page", counts)
    assert counts["backfill"][0] == counts["backfill"][1], counts
    assert counts["re-read"][0] == counts["re-read"][1], counts
    # Every file downloaded once, by the backfill.
    assert sorted(shelf.downloads) == sorted(shelf.files)
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call(HR, ids[-1])
    assert stored is not None and [a.sha256 for a in stored.call.attachments] == [sha(FORM + b"59")]


def test_a_file_attached_twice_is_downloaded_once_per_copy_and_never_again(
    bridge: FilesBridge,
) -> None:
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    ticket = hr.add(title="Two copies", kind="incident")
    first = shelf.attach(ticket, "form.pdf", FORM)
    second = shelf.attach(ticket, "form.pdf", FORM)
    [outcome] = bridge.engine.ingest.ingest_page(HR, records(bridge, ticket))
    assert outcome.outcome is Outcome.ROUTED
    assert sorted(shelf.downloads) == [first, second]
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call(HR, ticket)
    assert stored is not None
    [held] = stored.call.attachments  # one attachment, both copies known
    assert held.source is not None and held.source.remote_id == first
    assert held.same_in_source == [second]
    shelf.downloads.clear()
    hr.edit(ticket, title="Two copies, read again")
    [again] = bridge.engine.ingest.ingest_page(HR, records(bridge, ticket))
    assert again.outcome is Outcome.ROUTED
    assert shelf.downloads == []
