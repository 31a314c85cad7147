"""Mail over HR's ``max_message_bytes`` through the whole chain: a request with a file too
large for the limit is still HR's call (and Facilities' and IT's), only that file refused with
a note and a dead letter saying why; the bridge's own large mail (a form from Jira mailed to
HR) is mailed once and its Sent copy is no dead letter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.e2e_env import Tools, b64_part, calls_by_unit, onboard, only, open_engine, settle
from usm_bridge.sync.engine import SyncEngine

LIMIT = 1_000_000
SCAN = b"%PDF-1.4\n" + bytes(range(256)) * (1_500_000 // 256)  # about 2 MB in a mail
PHOTO = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(
    range(256)
)


@pytest.fixture
def engine(tools: Tools, store_url: str, tmp_path: Path) -> Iterator[SyncEngine]:
    """The engine with HR's mailbox reading mail whole only up to ``LIMIT``."""
    extra = {"hr-mail": {"max_message_bytes": LIMIT}}
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url, extra=extra) as built:
        yield built


def test_a_request_with_a_file_over_the_limit_is_a_call_without_that_file(
    tools: Tools, engine: SyncEngine, tmp_path: Path
) -> None:
    tools.mail_to_hr(parts=[
        b64_part('Content-Type: application/pdf; name="signed.pdf"\r\n'
                 'Content-Disposition: attachment; filename="signed.pdf"', SCAN),
        b64_part('Content-Type: image/png; name="photo.png"\r\n'
                 'Content-Disposition: attachment; filename="photo.png"', PHOTO),
    ])  # fmt: skip
    settle(engine)
    calls = calls_by_unit(engine.store)
    hr = only(calls["hr"])  # the request is a call, at HR and down the chain
    assert len(calls["facilities"]) == len(calls["it"]) == 1
    files = {a.name: a.refused for a in hr.attachments}
    assert files["photo.png"] is None  # it fits: carried
    reason = files["signed.pdf"] or ""
    assert "over max_message_bytes 1.0 MB (1000000 bytes)" in reason and "raise it" in reason
    with engine.store.begin(readonly=True) as tx:
        [letter] = tx.list_dead_letters()
    assert "signed.pdf" in letter.subject and "over max_message_bytes" in letter.reason
    # HR's internal note on the call, mailed to nobody.
    notes = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "note"]
    assert len(notes) == 1 and "signed.pdf" in str(notes[0].get_body(("plain",)))
    assert str(notes[0]["Message-ID"]) not in tools.smtp_message_ids()
    assert [p.get_filename() for m in tools.sent_mails() for p in m.iter_attachments()] == []
    assert not (tmp_path / "attachments-spool" / "signed.pdf").exists()


def test_the_bridge_s_own_large_mail_is_mailed_once_and_no_dead_letter(
    tools: Tools, engine: SyncEngine
) -> None:
    onboard(tools, engine)
    [issue] = tools.jira_issues()
    tools.jira.site.attachments.add(issue, "signed-form.pdf", SCAN)
    settle(engine, 4)
    assert len(tools.mailed_files("signed-form.pdf")) == 1  # over the limit in the Sent folder
    carrying = [m for m in tools.sent_mails() if [p.get_filename() for p in m.iter_attachments()]]
    assert [len(m.as_bytes()) > LIMIT for m in carrying] == [True]
    hr = only(calls_by_unit(engine.store)["hr"])
    assert [(a.name, a.refused) for a in hr.attachments] == [("signed-form.pdf", None)]
    with engine.store.begin(readonly=True) as tx:
        assert list(tx.list_dead_letters()) == []
