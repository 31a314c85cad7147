"""``usm-bridge check`` signs in to a real IMAP server (pymap) with the configured password."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from email_servers import PASSWORD, USER, PymapServer
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR

MAPPING = SHIPPED_MAPPINGS_DIR / "email-service-desk.yaml"


def _config(tmp_path: Path, server: PymapServer, password: str) -> Path:
    inbox = f"Check{uuid.uuid4().hex[:8]}"
    client = server.client()
    try:
        client.create(inbox)
        client.create(f"{inbox}/Sent")
    finally:
        client.logout()
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[units.hr]\n\n'
        f'[instances.hr-mail]\nunit = "hr"\nkind = "email"\nmapping = "{MAPPING}"\n'
        "[instances.hr-mail.settings]\n"
        'address = "servicedesk@hr.example"\nmax_attempts = 1\n'
        "[instances.hr-mail.settings.imap]\n"
        f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\nusername = "{USER}"\n'
        f'password = "{password}"\ninbox = "{inbox}"\nsent = "{inbox}/Sent"\ntimeout = 10\n',
        encoding="utf-8",
    )
    return path


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usm_bridge", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_wrong_imap_password_fails_without_showing_it(
    tmp_path: Path, pymap_server: PymapServer
) -> None:
    wrong = "wrong-pass-Zq81"
    result = _check(_config(tmp_path, pymap_server, wrong))
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed instance hr-mail: "), result.stdout
    assert "AUTHENTICATIONFAILED" in failed[0]  # pymap's own words
    assert "1 of 2 failed: instance hr-mail" in result.stderr
    assert wrong not in result.stdout + result.stderr


def test_the_right_imap_password_signs_in(tmp_path: Path, pymap_server: PymapServer) -> None:
    result = _check(_config(tmp_path, pymap_server, PASSWORD))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "ok instance hr-mail: mailbox readable" in result.stdout
