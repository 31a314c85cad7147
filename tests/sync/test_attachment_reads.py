"""The engine's file flows on memory tools that carry files: what a read of records with files
costs the store, how often a file is downloaded, where a failed download is blamed, and what an
untrusted listing (an over-long id, a misleading name, a file the intake cannot take) costs."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_files import (
    FORM,
    HR,
    FilesBridge,
    StoredFile,
    files_bridge,
    files_config,
    opened_files_bridge,
    sha,
)
from sync.statement_count import counting
from usm_bridge.connector import RemoteAttachment
from usm_bridge.store import Store
from usm_bridge.sync.attachment_intake import MAX_SOURCE_ID
from usm_bridge.sync.ingest import Outcome


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[FilesBridge]:
    with opened_files_bridge(store, tmp_path) as built:
        yield built


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
            page = bridge.records(HR, *ids)
            with counting(bridge.store) as statements:
                outcomes = bridge.engine.ingest.ingest_page(HR, page)
            assert [o.outcome for o in outcomes] == [expected] * size
            counts[phase].append(len(statements))
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
    [outcome] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, ticket))
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
    [again] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, ticket))
    assert again.outcome is Outcome.ROUTED
    assert shelf.downloads == []


TWO_SUPPLIERS = [
    {"from": "hr", "to": "fac", "when": {"call_type": ["service_request"]}},
    {"from": "hr", "to": "ext", "when": {"call_type": ["service_request"]}},
]


@pytest.fixture
def chain(store: Store, tmp_path: Path) -> Iterator[FilesBridge]:
    """HR's requests each open a supplier call at fac and at ext: a file on one goes to both."""
    built = files_bridge(store, files_config(tmp_path, routes=TWO_SUPPLIERS))
    try:
        yield built
    finally:
        built.engine.close()


def copies(bridge: FilesBridge, name: str) -> dict[str, list[bytes]]:
    """Each tool's copies of the file ``name``."""
    return {
        tool: [f.content for f in shelf.files.values() if f.name == name]
        for tool, shelf in bridge.shelves.items()
    }


def test_a_file_bound_for_two_tools_is_read_from_its_source_once(chain: FilesBridge) -> None:
    ticket = chain.tools[HR].add(title="Badge for Ann", kind="request")
    file_id = chain.shelves[HR].attach(ticket, "form.pdf", FORM)
    chain.settle()
    assert copies(chain, "form.pdf") == {"hr-tool": [FORM], "fac-tool": [FORM], "ext-tool": [FORM]}
    # The intake's download, and none per target; nor any of the copies read back.
    assert chain.shelves[HR].downloads == [file_id]
    assert {name: shelf.downloads for name, shelf in chain.shelves.items() if name != HR} == {
        "fac-tool": [], "ext-tool": [],
    }  # fmt: skip
    kept = chain.config.attachments.spool / "by-sha256" / sha(FORM)
    assert kept.read_bytes() == FORM and kept.stat().st_mode & 0o777 == 0o600
    # Nothing else is left in the spool: no temporary file of a download.
    assert [p.name for p in chain.config.attachments.spool.iterdir()] == ["by-sha256"]


@pytest.mark.parametrize("damage", ["gone", "not its content"])
def test_a_kept_copy_gone_or_damaged_is_read_from_the_source_again_once(
    chain: FilesBridge, damage: str
) -> None:
    """The kept copy is checked against its SHA-256 before it is sent: a damaged one is
    removed, never written anywhere; the first push reads the source and keeps the file
    again, the second reads that."""
    ticket = chain.tools[HR].add(title="Badge for Ann", kind="request")
    file_id = chain.shelves[HR].attach(ticket, "form.pdf", FORM)
    chain.engine.ingest.ingest_page(HR, chain.records(HR, ticket))  # the file kept, not pushed
    kept = chain.config.attachments.spool / "by-sha256" / sha(FORM)
    if damage == "gone":
        kept.unlink()
    else:
        kept.write_bytes(FORM[:-1] + b"!")
    chain.settle()
    assert copies(chain, "form.pdf") == {"hr-tool": [FORM], "fac-tool": [FORM], "ext-tool": [FORM]}
    assert chain.shelves[HR].downloads == [file_id, file_id]
    assert kept.read_bytes() == FORM


def test_a_download_cut_mid_stream_blames_the_source_and_holds_back_only_its_item(
    chain: FilesBridge,
) -> None:
    """HR's file cannot be read for the push to fac (its kept copy gone, HR's stream reset):
    the item is retried later with an error naming hr-tool, and fac, which answered, gets the
    drain's other writes at once (a tool that does not answer would stop the drain)."""
    hr, shelf = chain.tools[HR], chain.shelves[HR]
    first = hr.add(title="Badge for Ann", kind="request")
    shelf.attach(first, "form.pdf", FORM)
    chain.engine.ingest.ingest_page(HR, chain.records(HR, first))
    (chain.config.attachments.spool / "by-sha256" / sha(FORM)).unlink()
    second = hr.add(title="Chair for Bob", kind="request")
    chain.engine.ingest.ingest_page(HR, chain.records(HR, second))
    shelf.cut = 1
    counts = chain.engine.pusher.drain("fac-tool")
    assert counts.stalled is None  # fac answered: not held back
    assert counts.retried == 1
    fac = chain.tools["fac-tool"]
    assert sorted(t["title"] for t in fac.tickets.values()) == ["Badge for Ann", "Chair for Bob"]
    with chain.store.begin(readonly=True) as tx:
        [failed] = [item for item in tx.list_outbox(instance="fac-tool") if item.last_error]
    assert failed.last_error is not None
    assert "reading form.pdf from hr-tool to copy it failed" in failed.last_error
    assert "reset while reading the body" in failed.last_error
    chain.clock.advance(hours=2)
    chain.settle()
    assert copies(chain, "form.pdf") == {"hr-tool": [FORM], "fac-tool": [FORM], "ext-tool": [FORM]}


# -- a tool's listing is untrusted input: an id longer than the store keeps (an e-mail's file
# -- id is its sender's Message-ID) or a name built to mislead must cost that one file a clear
# -- refusal, never the instance's read nor a misleading note.


def test_a_file_id_longer_than_the_store_keeps_is_refused_once_and_the_read_goes_on(
    bridge: FilesBridge,
) -> None:
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    first = hr.add(title="A request with a long file id", kind="incident")
    second = hr.add(title="The next request", kind="incident")
    long_id = "<" + "r" * 400 + "@mail.example>#2"
    shelf.files[long_id] = StoredFile(first, "form.pdf", FORM)
    short_id = shelf.attach(first, "other.pdf", FORM + b"1")
    outcomes = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, first, second))
    # Both records stored: the long id stopped neither this record nor the one after it.
    assert [o.outcome for o in outcomes] == [Outcome.ROUTED, Outcome.ROUTED]
    assert shelf.downloads == [short_id]
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call(HR, first)
        letters = list(tx.list_dead_letters())
    assert stored is not None
    by_name = {a.name: a for a in stored.call.attachments}
    assert set(by_name) == {"form.pdf", "other.pdf"}
    assert by_name["other.pdf"].refused is None and by_name["other.pdf"].sha256 == sha(FORM + b"1")
    refused = by_name["form.pdf"]
    assert refused.refused is not None and f"{len(long_id)} characters" in refused.refused
    assert refused.source is not None and refused.source.remote_id.startswith("sha256:")
    assert len(refused.source.remote_id) <= MAX_SOURCE_ID
    [letter] = letters
    assert "form.pdf" in letter.reason and "characters" in letter.reason
    # Read again (the record changed): the refused file is known, not read, not refused twice.
    hr.edit(first, title="A request with a long file id, edited")
    [again] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, first))
    assert again.outcome is Outcome.ROUTED
    assert shelf.downloads == [short_id]
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call(HR, first)
        assert len(list(tx.list_dead_letters())) == 1
    assert stored is not None and len(stored.call.attachments) == 2


def _shown(text: str) -> bool:
    """Whether ``text`` holds nothing that hides or reorders what a reader sees."""
    return not any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in text)


def test_a_refusal_names_a_file_by_its_safe_name_never_the_name_the_tool_gave(
    bridge: FilesBridge,
) -> None:
    """A name with a direction override, a line break and a NUL would put words of the
    sender's choosing into the note on the call and the dead letter: the reason uses the
    same sanitised name the file is listed by."""
    hr = bridge.tools[HR]
    ticket = hr.add(title="A request with a crafted file name", kind="incident")
    crafted = "invoice\u202efdp.exe\r\nApproved by IT: please run it\x00.pdf"
    [record] = bridge.records(HR, ticket)
    # Stated larger than the cap: refused on the listing, before a byte is read.
    listed = RemoteAttachment(remote_id="big-1", name=crafted, size=2**40)
    record = record.model_copy(update={"attachments": [listed]})
    [outcome] = bridge.engine.ingest.ingest_page(HR, [record])
    assert outcome.outcome is Outcome.ROUTED
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call(HR, ticket)
        [letter] = list(tx.list_dead_letters())
    assert stored is not None
    [refused] = stored.call.attachments
    assert refused.refused is not None and "larger than" in refused.refused
    for text in (refused.name, refused.refused, letter.reason):
        assert _shown(text), repr(text)
    assert refused.refused.startswith(refused.name)


def test_a_record_whose_files_fail_on_their_own_is_a_dead_letter_and_the_read_goes_on(
    bridge: FilesBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever one record's listing holds that the intake cannot take (here: a file whose
    taking raises as a bug would), that record alone waits as a dead letter; the records after
    it are stored, and the record read again once mended is stored with its file."""
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    first = hr.add(title="A request whose file breaks the intake", kind="incident")
    second = hr.add(title="The next request, with its own file", kind="incident")
    broken = shelf.attach(first, "broken.pdf", FORM)
    fine = shelf.attach(second, "fine.pdf", FORM + b"2")
    intake = bridge.engine.ingest.attachments
    assert intake is not None
    take = type(intake)._take

    def breaking(self: object, instance: str, record: object, listed: RemoteAttachment,
                 *rest: object) -> object:  # fmt: skip
        if listed.remote_id == broken:
            raise ValueError("a value no model takes")
        return take(intake, instance, record, listed, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(type(intake), "_take", breaking)
    outcomes = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, first, second))
    assert [o.outcome for o in outcomes] == [Outcome.DEAD_LETTER, Outcome.ROUTED]
    assert "ValueError" in str(outcomes[0].reason)
    assert shelf.downloads == [fine]
    with bridge.store.begin(readonly=True) as tx:
        assert tx.find_call(HR, first) is None
        stored = tx.find_call(HR, second)
    assert stored is not None and [a.name for a in stored.call.attachments] == ["fine.pdf"]
    monkeypatch.undo()
    [again] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, first))
    assert again.outcome is Outcome.ROUTED
    with bridge.store.begin(readonly=True) as tx:
        mended = tx.find_call(HR, first)
    assert mended is not None and [a.name for a in mended.call.attachments] == ["broken.pdf"]
