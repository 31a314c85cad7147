"""deploy/systemd/usm-bridge.service: the directives it promises, every key one systemd knows
(from `systemd --dump-configuration-items`), `systemd-analyze verify` on a copy whose ExecStart
is this checkout's usm-bridge, and `systemd-analyze security --offline` within "OK".

systemd is not PID 1 on every machine that runs these tests; the offline commands work without
it. Where a command is missing or cannot run even a minimal unit, the test skips and says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import UNIT, machine_cannot, parse_unit

ENTRIES = parse_unit(UNIT.read_text(encoding="utf-8"))
SYSTEMD = next(
    (p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if Path(p).exists()), None
)
#: The console script of the usm-bridge these tests run: what ExecStart names in the copy.
ENTRY_POINT = Path(sys.prefix) / "bin" / "usm-bridge"


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in ENTRIES if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]


def test_it_runs_the_daemon_from_the_venv_under_opt() -> None:
    assert value("ExecStart") == "/opt/usm-bridge/bin/usm-bridge daemon"
    assert "USM_BRIDGE_CONFIG=%E/usm-bridge/usm-bridge.toml" in values("Environment")
    assert value("WorkingDirectory") == "%S/usm-bridge"
    assert value("WantedBy", "Install") == "multi-user.target"


def test_it_has_its_own_user_state_and_config_directories() -> None:
    assert value("DynamicUser") == "yes"
    assert values("User") == []
    assert value("StateDirectory") == "usm-bridge"
    assert value("ConfigurationDirectory") == "usm-bridge"


def test_secrets_come_as_credentials() -> None:
    credentials = values("LoadCredential")
    assert credentials
    for credential in credentials:
        name, _, path = credential.partition(":")
        assert name and path.startswith("/etc/usm-bridge/credentials/"), credential


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("StandardOutput", "journal"),
        ("StandardError", "journal"),
    ],
)
def test_hardening_restart_and_logging(key: str, expected: str) -> None:
    assert value(key) == expected


def test_the_system_call_filter_allows_a_system_service_only() -> None:
    assert values("SystemCallFilter")[0] == "@system-service"
    assert value("RestartSec")


def test_no_start_step_checks_the_schema() -> None:
    # The daemon refuses an old schema itself (exit 2, no restart): no ExecStartPre for it.
    assert values("ExecStartPre") == []


def test_every_key_is_one_systemd_knows() -> None:
    if SYSTEMD is None:
        machine_cannot("no systemd binary to list the known unit keys")
    dumped = subprocess.run(
        [SYSTEMD, "--dump-configuration-items"], capture_output=True, text=True, check=False
    )
    if dumped.returncode != 0 or "[Service]" not in dumped.stdout:
        machine_cannot(f"systemd --dump-configuration-items failed: {dumped.stderr.strip()}")
    known: dict[str, set[str]] = {}
    section = ""
    for line in dumped.stdout.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            known.setdefault(section, set()).add(line.split("=", 1)[0])
    unknown = [(s, k) for s, k, _ in ENTRIES if k not in known.get(s, set())]
    assert unknown == []


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        machine_cannot("systemd-analyze is not installed")
    return subprocess.run(
        [analyze, *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit under its own name, its ExecStart pointed at this checkout's usm-bridge (the
    real one under /opt does not exist here); nothing else changed."""
    assert ENTRY_POINT.exists(), ENTRY_POINT
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/opt/usm-bridge/bin/usm-bridge ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(
        text.replace("ExecStart=/opt/usm-bridge/bin/usm-bridge ", f"ExecStart={ENTRY_POINT} "),
        encoding="utf-8",
    )
    # A minimal unit first: if even that fails, the machine cannot verify, the unit is not at
    # fault.
    control = tmp_path / "control" / "usm-bridge-control.service"
    control.parent.mkdir()
    control.write_text(f"[Service]\nExecStart={ENTRY_POINT} --help\n", encoding="utf-8")
    checked = _analyze("verify", "--man=no", str(control))
    if checked.returncode != 0 or checked.stderr.strip():
        machine_cannot(f"systemd-analyze verify fails on a minimal unit: {checked.stderr.strip()}")
    return copy


def test_systemd_analyze_verify_finds_nothing(unit_copy: Path) -> None:
    checked = _analyze("verify", "--man=no", str(unit_copy))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""


def test_systemd_analyze_verify_would_name_a_misspelt_key(unit_copy: Path) -> None:
    # The check above is only worth something if verify reports what it should.
    text = unit_copy.read_text(encoding="utf-8")
    unit_copy.write_text(text.replace("ProtectHome=", "ProtectHomes="), encoding="utf-8")
    checked = _analyze("verify", "--man=no", str(unit_copy))
    assert "Unknown key 'ProtectHomes'" in checked.stderr


def test_systemd_analyze_security_rates_it_ok(unit_copy: Path) -> None:
    probe = _analyze("security", "--help")
    if "--offline" not in probe.stdout:
        machine_cannot("this systemd-analyze has no 'security --offline' (systemd < 250)")
    # --threshold is on the 0-100 scale the report shows divided by 10: at most 2.0, "OK".
    rated = _analyze("security", "--offline=yes", "--threshold=20", "--no-pager", str(unit_copy))
    assert rated.returncode == 0, rated.stdout + rated.stderr
    assert "OK" in rated.stdout.splitlines()[-1]
