"""`usm-bridge demo` end to end: the onboarding travels HR -> Facilities -> IT and back over the
real simulators and a real SMTP server, on a short schedule, in a temporary run folder."""

from __future__ import annotations

import io
import os
import stat
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from demo.demo_checks import chain_calls
from usm_bridge.config import load_config
from usm_bridge.conformance.command import run_conformance_report
from usm_bridge.demo import MARKER, DemoError, run_demo
from usm_bridge.demo_form import form_sha256
from usm_bridge.store import Store


def test_the_demo_carries_one_onboarding_along_the_chain_and_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "demo-run"
    # Started from a folder of its own: the demo leaves nothing in its working directory
    # (its spool is in the run folder; a run from a checkout left one in the repository).
    started_in = tmp_path / "started-in"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    screen = io.StringIO()
    previous_umask = os.umask(0o002)  # a permissive umask: the demo's files stay private anyway
    try:
        result = run_demo(
            run_dir,
            interval=1,
            console=Console(file=screen, width=140, highlight=False),
            quiet_cycles=1,
        )
    finally:
        os.umask(previous_umask)
    text = screen.getvalue()

    # What the demo says it did.
    assert result.statuses == {"hr": "closed", "facilities": "closed", "it": "closed"}
    assert result.references["hr"] == "HR-1"
    assert result.references["facilities"] == "FAC-1"
    assert result.references["it"].startswith("RITM")
    assert result.quiet_writes == {"jira": 0, "servicenow": 0, "mail": 0}  # no echoes
    for step in range(1, 7):
        assert f"Step {step}." in text
    # The links close in order, and the narration says so step by step (lines may wrap).
    flat = " ".join(text.split())
    said = [
        flat.index(f"{result.references['it']} is confirmed by Facilities"),
        flat.index("FAC-1 is confirmed by HR"),
        flat.index("HR-1 confirmed by Hannah"),
        flat.index("HR-1 closed after its confirmation"),
    ]
    assert said == sorted(said)
    assert "demo-run/usm-bridge.toml" in text or str(result.config_path) in text
    # The signed form Hannah attached is at every unit, its bytes read back from each tool
    # (HR's mailbox, Facilities' Jira issue, IT's ServiceNow item) those that were mailed.
    assert {unit: copy.sha256 for unit, copy in result.form.items()} == {
        unit: form_sha256() for unit in ("hr", "facilities", "it")
    }
    assert result.form["facilities"].where.startswith("Jira FAC-1, attachment ")
    assert result.form["it"].where.startswith(f"ServiceNow {result.references['it']}, ")
    for unit, copy in result.form.items():
        assert f"form at {unit}" in text and copy.where in flat
    assert list(started_in.iterdir()) == []  # files on their way were spooled in the run folder
    assert load_config(result.config_path).attachments.spool == run_dir / "attachments-spool"
    assert (run_dir / "attachments-spool").is_dir()

    # What the store holds: one call per unit, linked up and down the chain.
    hr, facilities, _laptop = chain_calls(result.config_path)
    assert hr.confirmed is not None
    # HR fulfilled its call through the mailbox: an agent's status command by mail.
    commands = hr.attributes["email"]["commands"]
    assert isinstance(commands, list) and len(commands) == 1
    command = commands[0]
    assert isinstance(command, dict)
    assert command["by"] == "agent" and command["status"] == "fulfilled"
    assert hr.fulfilled is not None and hr.fulfilled <= hr.confirmed
    assert not any("Status:" in c.body for c in hr.comments)  # a command is no comment
    config = load_config(result.config_path)
    with Store.open(config.store.url) as store, store.begin(readonly=True) as tx:
        replayed = [s for s in tx.list_calls(unit="it") if s.call.chain.upstream is None]
    assert len(replayed) == 890  # IT's incidents, replayed from the real event log

    # Comments travelled one link each way; the customer got her mail by SMTP.
    bodies = {c.body for c in facilities.comments}
    assert any("ThinkPad" in body for body in bodies)  # IT's comment, up to Facilities
    assert any("Desk 4.12" in body for body in (c.body for c in hr.comments))
    # Frank commented in Jira signed in as himself: his copy in HR names him, not the bridge.
    desk = [c.body for c in hr.comments if "Desk 4.12" in c.body]
    assert desk and all(body.startswith("Frank Facilities (Facilities) wrote:") for body in desk)
    hannah = list((result.mail_root / "hannah" / "new").iterdir())
    assert len(hannah) >= 5  # acknowledgement, statuses, comments, confirmation request

    # The report, the log, the config a newcomer can reuse.
    assert result.report_html is not None and result.report_markdown is not None
    html = result.report_html.read_text(encoding="utf-8")
    assert "<html" in html.lower() and "Facilities" in html
    markdown = result.report_markdown.read_text(encoding="utf-8")
    assert "hr-to-facilities" in markdown and "facilities-to-it" in markdown
    assert result.enterprise_score is not None
    # The method works on the demo's own chain: no data check finds anything on its three
    # calls (the replayed incidents' findings are the real desk's, not the demo's).
    own = set(result.references.values())
    report = run_conformance_report(config, format="json", live=False).report
    found = {
        (outcome.check_id, item.remote_key, item.detail)
        for outcome in report.outcomes
        if outcome.check_id.startswith("data.")
        for item in outcome.evidence
        if item.remote_key in own
    }
    assert found == set()
    log = result.log_file.read_text(encoding="utf-8")
    assert "cycle hr-mail ok" in log and "daemon stopped" in log
    assert "'Status: fulfilled' from hilda@example.com (agent) on HR-1 obeyed" in log
    assert stat.S_IMODE(result.log_file.stat().st_mode) == 0o640
    store_file = Path(result.store_url.removeprefix("sqlite:///"))
    assert stat.S_IMODE(store_file.stat().st_mode) == 0o600
    written = tomllib.loads(result.config_path.read_text(encoding="utf-8"))
    password = written["instances"]["it-requests"]["settings"]["password"]
    assert set(password) == {"file"}  # secrets go to files, never into the config
    assert (run_dir / MARKER).exists()


def test_the_demo_never_empties_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a demo run folder"):
        run_demo(tmp_path, console=Console(file=io.StringIO()))
    assert (tmp_path / "precious.txt").read_text() == "keep me"
