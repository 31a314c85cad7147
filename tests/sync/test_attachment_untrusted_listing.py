"""A tool's listing of a record's files is untrusted input: an id longer than the store keeps
(an e-mail's file id is its sender's Message-ID) or a name built to mislead a reader must cost
that one file a clear refusal, never the instance's read nor a misleading note."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_files import FilesBridge, StoredFile, files_bridge, files_config, sha
from usm_bridge.connector import RemoteAttachment
from usm_bridge.store import Store
from usm_bridge.sync.attachment_intake import MAX_SOURCE_ID
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
