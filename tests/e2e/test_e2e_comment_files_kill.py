"""Issue 20: the crash between a comment's file upload and the comment's write, on a real
process. A Jira comment with a file goes to IT's ServiceNow, whose connector uploads the file
to the record first, then writes the comment's journal entry naming it. ``usm-bridge sync
--once`` is SIGKILLed after ServiceNow took the file and before its answer came back (so before
the entry); the next ``sync --once`` finds the file on the record (it lists first), writes the
entry once, naming the file, and records it as the bridge's copy: one file, one entry, no echo
comment back in Jira, nothing written after.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e import held_upload
from e2e.e2e_env import Tools, adf, assert_quiet, calls_by_unit, only, open_engine, settle
from usm_bridge.sync.call_files import all_attachments

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

PLAN = b"%PDF-1.4\n% desk plan, floor 4\n" + bytes(range(256)) * 40
WORDS = "Here is the desk plan for Maria."


def test_a_sync_killed_between_a_comments_file_and_its_entry_leaves_one_of_each(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "usm-bridge.toml"
    tools.mail_to_hr()
    with open_engine(tools, config, store_url) as engine:
        settle(engine)
    [issue] = tools.jira_issues()
    [item] = tools.snow_items()
    sys_id = item["sys_id"]
    tools.jira.site.attachments.add(issue, "desk-plan.pdf", PLAN)
    tools.jira_as_person(
        "POST", f"issue/{issue.id}/comment", {"body": adf(f"{WORDS} [^desk-plan.pdf]")}
    )
    entries_before = _entries(tools, sys_id)

    held = held_upload.HeldUpload(tools.snow.answer, "POST", held_upload.SNOW_UPLOAD)
    tools.snow.answer = held
    log_path = tmp_path / "sync.log"
    held_upload.kill_when_held(held, config, tmp_path, log_path)
    tools.wait_idle()
    # ServiceNow took the file; the entry of the comment was never written.
    [copy] = held_upload.snow_copies(tools, sys_id)
    assert _entries(tools, sys_id) == entries_before

    with log_path.open("ab") as log:
        assert held_upload.sync_once(config, tmp_path, log).wait(timeout=60) == 0, (
            log_path.read_text()[-3000:]
        )

    assert held_upload.snow_copies(tools, sys_id) == [
        copy
    ]  # found on the record, not uploaded again
    assert held_upload.snow_uploads(tools) == 1
    new = [e for e in _entries(tools, sys_id) if e not in entries_before]
    [entry] = new  # one entry: the comment, naming its file
    assert WORDS in entry["value"] and "Attached: desk-plan.pdf" in entry["value"]
    with open_engine(tools, config, store_url) as engine:
        settle(engine)  # ServiceNow's entry read back: the bridge's copy, no new comment
        by_unit = calls_by_unit(engine.store)
        it, fac = only(by_unit["it"]), only(by_unit["facilities"])
        [it_comment] = [c for c in it.comments if WORDS in c.body]
        assert it_comment.remote_id == entry["sys_id"]  # the bridge's copy, known by its id
        [it_file] = [a for a in all_attachments(it) if a.name == "desk-plan.pdf"]
        assert (it_file.source.instance, it_file.source.remote_id) == ("it-snow", copy)
        # No echo: Facilities' issue holds the person's comment only, and one file.
        assert [c for c in issue.comments if WORDS in str(c.body)] == [
            c for c in issue.comments if "Here is the desk plan" in str(c.body)
        ]
        assert len([c for c in fac.comments if WORDS in c.body]) == 1
        assert [a.filename for a in issue.attachments] == ["desk-plan.pdf"]
        with engine.store.begin(readonly=True) as tx:
            assert (list(tx.list_dead_letters()), tx.list_outbox(status="pending")) == ([], [])
        assert_quiet(tools, engine, rounds=1)
    assert held_upload.snow_copies(tools, sys_id) == [copy]
    assert len(_entries(tools, sys_id)) == len(entries_before) + 1


def _entries(tools: Tools, sys_id: str) -> list[dict[str, str]]:
    return [e for e in tools.snow.journal(sys_id) if e["element"] == "comments"]
