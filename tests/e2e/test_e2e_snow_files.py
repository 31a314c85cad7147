"""Issue 20 from the other end of the chain: a file a person attaches in IT's ServiceNow with
pysnc (ServiceNow's own client) travels up to Facilities' Jira issue and HR's requester by
mail, each copy written once (same bytes, same SHA-256); the bridge's own copies read back
are recognised, and later cycles read nothing again (no download, no write).

ServiceNow runs over HTTPS here (pysnc refuses plain ``http://``), from a local authority the
bridge's ``requests`` trusts through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysnc import ServiceNowClient
from usm_bridge_servicenow.testing import local_https

from e2e.e2e_env import (
    SNOW_TABLE,
    Tools,
    assert_quiet,
    calls_by_unit,
    onboard,
    only,
    settle,
    start_tools,
)
from usm_bridge.sync.engine import SyncEngine

PERSON, PERSON_PASSWORD = "beth.anglin", "person-secret-1"
FORM = b"%PDF-1.4\n% laptop handover form, signed by IT\n" + b"1" * 70_000  # two chunks


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tools]:
    """The three tools, ServiceNow over HTTPS."""
    context, bundle = local_https(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    started = start_tools(tmp_path, snow_tls=context)
    try:
        yield started
    finally:
        started.stop()


def _snow_reads(tools: Tools) -> list[str]:
    """The paths of the Attachment API requests ServiceNow served (listings and downloads)."""
    with tools.snow_traffic.lock:
        return [path for _, path in tools.snow_traffic.seen if path.startswith("/api/now/attach")]


def test_a_file_attached_in_servicenow_with_pysnc_reaches_every_unit_once(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default spool folder is relative to the state folder
    assert tools.snow.base_url.startswith("https://")
    onboard(tools, engine)
    [item] = tools.snow_items()
    tools.snow.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
    client = ServiceNowClient(tools.snow.base_url, (PERSON, PERSON_PASSWORD))
    record = client.GlideRecord(SNOW_TABLE)
    assert record.get(item["sys_id"])
    record.add_attachment("handover.pdf", FORM, "application/pdf")
    [by_pysnc] = record.get_attachments()
    digest = hashlib.sha256(FORM).hexdigest()
    assert by_pysnc.hash == digest

    settle(engine)

    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    [taken] = it.attachments
    assert (taken.name, taken.sha256, taken.refused, taken.size) == (
        "handover.pdf", digest, None, len(FORM),
    )  # fmt: skip
    assert taken.source is not None
    assert (taken.source.instance, taken.source.remote_id) == ("it-snow", by_pysnc.sys_id)
    for call, instance in ((fac, "facilities-jira"), (hr, "hr-mail")):
        [copy] = call.attachments
        assert (copy.identity, copy.refused, copy.origin) == (taken.identity, None, taken.origin)
        assert copy.source is not None and copy.source.instance == instance
    # Jira holds the bytes once, under the id Facilities' call names.
    [issue] = tools.jira_issues()
    [jira_copy] = issue.attachments
    assert fac.attachments[0].source.remote_id == str(jira_copy.id)
    assert hashlib.sha256(jira_copy.path.read_bytes()).hexdigest() == digest
    # HR's requester got it by mail, once.
    assert tools.mailed_files("handover.pdf") == [FORM]
    # ServiceNow still holds the one file: nothing came back down as a second copy.
    assert [a.sys_id for a in record.get_attachments()] == [by_pysnc.sys_id]
    with engine.store.begin(readonly=True) as tx:
        assert list(tx.list_dead_letters()) == []

    # Read from ServiceNow once, to take it in: each copy written (Jira, the mail) is sent from
    # the copy the intake kept (attachments.kept), not downloaded again.
    downloads = [p for p in _snow_reads(tools) if p.endswith("/file")]
    assert downloads == [f"/api/now/attachment/{by_pysnc.sys_id}/file"]
    before = len(_snow_reads(tools))
    assert_quiet(tools, engine, rounds=2)
    quiet = _snow_reads(tools)[before:]
    # Each idle cycle of it-snow: the files since the cursor, one listing; nothing else of
    # the Attachment API (no record listed with its files, no download).
    assert len(quiet) == 2 and all("sys_created_on" in path for path in quiet), quiet
