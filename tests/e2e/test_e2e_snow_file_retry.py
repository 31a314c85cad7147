"""A file IT's ServiceNow will not let the bridge read (403, ACL) holds up nothing (issue #20
follow-up): the record is stored, the file waits with a dead letter naming the 403, and once
the ACL lets it through it is read and reaches Facilities' Jira and HR's requester by mail,
each copy written once; its letter is resolved.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from usm_bridge_servicenow.simulator.server import _Answer

from e2e.e2e_env import (
    SNOW_TABLE,
    Tools,
    assert_quiet,
    calls_by_unit,
    onboard,
    only,
    settle,
)
from usm_bridge.sync.engine import SyncEngine

FORM = b"%PDF-1.4\n% laptop handover form, signed by IT\n" + b"1" * 70_000
DOWNLOAD = re.compile(r"^/api/now(/v1)?/attachment/([0-9a-f]+)/file")


class Acl:
    """ServiceNow answers 403 (an ACL) to the download of the file ``sys_id`` while :attr:`on`."""

    def __init__(self, tools: Tools) -> None:
        self.on = True
        self.sys_id = ""
        self.refused = 0
        self.served = 0
        answer = tools.snow.answer

        def guarded(method: str, path: str, *rest: Any) -> Any:
            match = DOWNLOAD.match(path)
            if method == "GET" and match is not None and match.group(2) == self.sys_id:
                if self.on:
                    self.refused += 1
                    failed = {"message": "Operation Failed", "detail": "ACL Exception Read Failed"}
                    body = {"error": failed, "status": "failure"}
                    return _Answer(403, body)
                self.served += 1
            return answer(method, path, *rest)

        tools.snow.answer = guarded  # type: ignore[method-assign]


def _letters(engine: SyncEngine) -> list[Any]:
    with engine.store.begin(readonly=True) as tx:
        return list(tx.list_dead_letters())


def test_a_file_servicenow_refuses_403_waits_then_reaches_every_unit_once(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    onboard(tools, engine)
    [item] = tools.snow_items()
    acl = Acl(tools)
    acl.sys_id = tools.snow.attachments.attach(
        SNOW_TABLE, item["sys_id"], "handover.pdf", FORM, "application/pdf"
    )
    settle(engine)  # every cycle succeeds: nothing is held up
    it = only(calls_by_unit(engine.store)["it"])
    [waiting] = it.attachments
    assert waiting.refused_under == "retry: 403" and "ACL" in str(waiting.refused)
    [letter] = _letters(engine)
    assert letter.instance == "it-snow" and "403" in letter.reason
    assert letter.subject.endswith(":handover.pdf")
    assert acl.refused >= 1 and acl.served == 0
    # (The back-off's request counts are tested on Jira with a clock the test moves.)
    [issue] = tools.jira_issues()
    assert issue.attachments == [] and tools.mailed_files("handover.pdf") == []

    acl.on = False
    with engine.store.begin() as tx:
        tx.connection.execute(
            sa.text("UPDATE file_retries SET next_try_at = :at"),
            {"at": "2000-01-01 00:00:00+00:00"},
        )
    settle(engine)
    assert acl.served == 1
    digest = hashlib.sha256(FORM).hexdigest()
    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    for call in (hr, fac, it):
        [copy] = call.attachments
        assert (copy.name, copy.sha256, copy.refused) == ("handover.pdf", digest, None)
    [jira_copy] = issue.attachments
    assert hashlib.sha256(jira_copy.path.read_bytes()).hexdigest() == digest
    assert tools.mailed_files("handover.pdf") == [FORM]
    assert _letters(engine) == []
    with engine.store.begin(readonly=True) as tx:
        closed = tx.get_dead_letter(letter.id)
        assert tx.connection.execute(sa.text("SELECT count(*) FROM file_retries")).scalar() == 0
    assert closed is not None and str(closed.status) == "resolved"
    assert_quiet(tools, engine, rounds=2)
    assert acl.served == 1 and len(issue.attachments) == 1
