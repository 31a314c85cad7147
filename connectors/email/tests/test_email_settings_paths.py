"""The e-mail connector's paths (Maildir, outbox, CA bundle) are relative to the config file's
folder, so a daemon started from another working directory reads the right mailbox."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from email_harness import ADDRESS, Desk, customer_mail, write_config
from usm_bridge.config import load_config
from usm_bridge.connector import RawRecord
from usm_bridge.plugins import default_host
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store

from usm_bridge_email import EmailConnector, EmailSettings


def _deliver(folder: Path, subject: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(folder, create=True).add(customer_mail(subject, f"{subject}.")[1])


def test_the_engine_reads_the_maildir_next_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "etc" / "usm-bridge"
    relative = {"path": "mail/hr", "outbox": "mail/hr-sent"}
    settings = {"address": ADDRESS, "reference_prefix": "HR", "acknowledge": False}
    desk = Desk("hr-mail", "hr", {**settings, "maildir": relative})
    path = write_config(root, desk, store="sqlite:///state.db")  # relative, the store's too
    _deliver(root / "mail" / "hr", "Desk for the new hire")
    # The daemon runs from elsewhere (systemd: "/"), where a folder of the same name waits.
    cwd = tmp_path / "elsewhere"
    _deliver(cwd / "mail" / "hr", "Wrong mailbox")
    monkeypatch.chdir(cwd)

    config = load_config(path)
    store = Store.open(config.store.url)
    engine = build_runtime(config, store, host=default_host()).engine
    try:
        connector = engine.instances.connector("hr-mail")
        assert isinstance(connector, EmailConnector)
        records = [r for r in connector.read_changes(None) if isinstance(r, RawRecord)]
        maildir = connector.config.maildir
        assert maildir is not None
        assert maildir.path == root / "mail" / "hr"
        assert maildir.outbox == root / "mail" / "hr-sent"
    finally:
        engine.close()
        store.close()

    assert [r.data["subject"] for r in records] == ["Desk for the new hire"]


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    absolute = tmp_path / "srv" / "mail"
    settings = EmailSettings.model_validate(
        {"address": ADDRESS, "maildir": {"path": str(absolute), "outbox": "~/sent"}},
        context={"base_dir": tmp_path / "conf"},
    )

    assert settings.maildir is not None
    assert settings.maildir.path == absolute
    assert settings.maildir.outbox == tmp_path / "home" / "sent"


def test_ca_files_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    raw = {
        "address": ADDRESS,
        "imap": {"host": "imap.example", "username": "hr", "password": "pw", "ca_file": "ca.pem"},
        "smtp": {"host": "smtp.example", "ca_file": "certs/relay.pem"},
    }
    connector = EmailConnector.from_config("hr-mail", raw, base_dir=tmp_path)
    assert isinstance(connector, EmailConnector)
    assert connector.config.imap is not None
    assert connector.config.smtp is not None

    assert connector.config.imap.ca_file == tmp_path / "ca.pem"
    assert connector.config.smtp.ca_file == tmp_path / "certs" / "relay.pem"


def test_without_base_dir_paths_stay_relative_to_the_working_directory() -> None:
    connector = EmailConnector.from_config(
        "hr-mail", {"address": ADDRESS, "maildir": {"path": "mail/hr"}}
    )
    assert isinstance(connector, EmailConnector)
    assert connector.config.maildir is not None

    assert connector.config.maildir.path == Path("mail/hr")
    assert connector.config.maildir.outbox is None
