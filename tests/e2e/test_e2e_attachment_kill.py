"""Issue 20: the crash between upload and commit, on a real process. ``usm-bridge sync --once``
is SIGKILLed after the target tool took a file and before the bridge recorded its copy; the next
``sync --once`` converges: one copy in the target, its bytes the source's, the call naming that
copy, no second upload, and no temporary spool file left behind (the upload reads the copy the
intake kept by its hash, which stays whole).

The tools run in this process (:mod:`e2e.e2e_env`). The point of the kill is chosen by holding
the target's answer to the upload: the simulator has stored the file, then the test's wrapper
around its ``answer`` waits until the bridge is dead before the answer goes out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from e2e.e2e_env import Tools, calls_by_unit, only, open_engine, settle
from e2e.held_upload import (
    SNOW_UPLOAD,
    HeldUpload,
    kill_when_held,
    snow_copies,
    snow_uploads,
    spool_files,
    sync_once,
)
from usm_bridge.store import Store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

FORM = b"%PDF-1.4\n% onboarding form, signed by Maria Lopez\n" + bytes(range(256)) * 64


def test_a_sync_killed_between_the_upload_and_its_record_leaves_one_copy(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the spool folder is relative to the state folder
    spool = tmp_path / "attachments-spool"
    config = tmp_path / "usm-bridge.toml"
    tools.mail_to_hr()
    with open_engine(tools, config, store_url) as engine:
        settle(engine)  # the chain: HR's call, Facilities' issue, IT's requested item
    [issue] = tools.jira_issues()
    [item] = tools.snow_items()
    tools.jira.site.attachments.add(issue, "signed-form.pdf", FORM)

    held = HeldUpload(tools.snow.answer, "POST", SNOW_UPLOAD)
    tools.snow.answer = held
    log_path = tmp_path / "sync.log"
    killed = kill_when_held(held, config, tmp_path, log_path)
    tools.wait_idle()

    # The tool took the file; the bridge never learnt its copy. The upload read the copy the
    # intake kept: no temporary spool file was left, and the kept copy is whole.
    [copy_id] = snow_copies(tools, item["sys_id"])
    assert spool_files(spool) == []
    assert (spool / "by-sha256" / hashlib.sha256(FORM).hexdigest()).read_bytes() == FORM
    assert killed > 0
    with Store.open(store_url) as store:
        it_file = only(only(calls_by_unit(store)["it"]).attachments)
        assert it_file.source is not None and it_file.source.instance == "facilities-jira"

    uploads_before = snow_uploads(tools)
    with log_path.open("ab") as log:
        assert sync_once(config, tmp_path, log).wait(timeout=60) == 0, log_path.read_text()[-3000:]

    assert spool_files(spool) == []
    assert snow_uploads(tools) == uploads_before == 1  # found there, not written again
    assert snow_copies(tools, item["sys_id"]) == [copy_id]
    content = tools.snow.attachments.path_of(copy_id).read_bytes()
    assert content == FORM
    with open_engine(tools, config, store_url) as engine:
        by_unit = calls_by_unit(engine.store)
        for unit in ("hr", "facilities"):  # the form's other copies: the source's, the mail's
            [file] = only(by_unit[unit]).attachments
            assert (file.sha256, file.refused) == (hashlib.sha256(FORM).hexdigest(), None)
        it_file = only(only(by_unit["it"]).attachments)
        assert it_file.source is not None
        assert (it_file.source.instance, it_file.source.remote_id) == ("it-snow", copy_id)
        assert (it_file.sha256, it_file.refused) == (hashlib.sha256(FORM).hexdigest(), None)
        with engine.store.begin(readonly=True) as tx:
            assert list(tx.list_dead_letters()) == []
            assert tx.list_outbox(status="pending") == []
        writes = tools.write_counts()
        settle(engine)
        assert tools.write_counts() == writes
    assert snow_copies(tools, item["sys_id"]) == [copy_id]
    mailed = [
        part.get_content()
        for mail in tools.sent_mails()
        for part in mail.iter_attachments()
        if part.get_filename() == "signed-form.pdf"
    ]
    assert mailed == [FORM]  # HR's requester got it once, too
