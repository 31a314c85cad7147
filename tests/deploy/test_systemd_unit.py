"""deploy/systemd's units, the daemon's (usm-bridge.service) and the event receiver's beside
Celery workers (usm-bridge-serve.service): the directives each promises, the hardening they
share, every key one systemd knows (from `systemd --dump-configuration-items`),
`systemd-analyze verify` on a copy whose ExecStart is this checkout's usm-bridge, and
`systemd-analyze security --offline` within "OK".

systemd is not PID 1 on every machine that runs these tests; the offline commands work without
it. Where a command is missing or cannot run even a minimal unit, the test skips and says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_files import SERVE_UNIT, UNIT, machine_cannot, parse_unit

SYSTEMD = next(
    (p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if Path(p).exists()), None
)
#: The console script of the usm-bridge these tests run: what ExecStart names in the copy.
ENTRY_POINT = Path(sys.prefix) / "bin" / "usm-bridge"


@dataclass(frozen=True)
class Unit:
    path: Path

    @property
    def entries(self) -> list[tuple[str, str, str]]:
        return parse_unit(self.path.read_text(encoding="utf-8"))

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def value(self, key: str, section: str = "Service") -> str:
        found = self.values(key, section)
        assert len(found) == 1, f"{self.path.name} [{section}] {key}: {found}"
        return found[0]


DAEMON = Unit(UNIT)
SERVE = Unit(SERVE_UNIT)


@pytest.fixture(params=[DAEMON, SERVE], ids=lambda unit: unit.path.name)
def unit(request: pytest.FixtureRequest) -> Unit:
    chosen: Unit = request.param
    return chosen


# -- the daemon's unit


def test_it_runs_the_daemon_from_the_venv_under_opt() -> None:
    assert DAEMON.value("ExecStart") == "/opt/usm-bridge/bin/usm-bridge daemon"
    assert DAEMON.value("WorkingDirectory") == "%S/usm-bridge"


def test_it_has_its_own_user_state_and_config_directories() -> None:
    assert DAEMON.value("DynamicUser") == "yes"
    assert DAEMON.values("User") == []
    assert DAEMON.value("StateDirectory") == "usm-bridge"
    assert DAEMON.value("ConfigurationDirectory") == "usm-bridge"


def test_no_start_step_checks_the_schema() -> None:
    # The daemon refuses an old schema itself (exit 2, no restart): no ExecStartPre for it.
    assert DAEMON.values("ExecStartPre") == []


# -- the event receiver's unit

#: The directives in which the receiver's unit may differ from the daemon's: what it runs,
#: its name in the journal, its secrets and state, and its restart and stop times.
ITS_OWN = {
    "ExecStart",
    "SyslogIdentifier",
    "LoadCredential",
    "StateDirectory",
    "StateDirectoryMode",
    "WorkingDirectory",
    "RestartSec",
    "TimeoutStopSec",
}


def test_serve_runs_on_loopback_behind_the_proxy() -> None:
    # The host port compose.yaml's `events` service publishes: one proxy setup fits both.
    serve = "/opt/usm-bridge/bin/usm-bridge serve --listen 127.0.0.1:9465"
    assert SERVE.value("ExecStart") == serve
    assert SERVE.value("SyslogIdentifier") == "usm-bridge-serve"


def test_serve_has_no_state_directory_and_never_shares_the_daemon_s() -> None:
    # With DynamicUser= each unit's user would take a shared state directory over in turn;
    # serve never opens the store and writes no file.
    assert SERVE.values("StateDirectory") == []
    assert SERVE.values("WorkingDirectory") == []
    assert SERVE.value("DynamicUser") == "yes"
    assert SERVE.value("ConfigurationDirectory") == "usm-bridge"


def test_serve_loads_the_webhook_secrets_and_broker_url_but_no_tool_or_store_secret() -> None:
    names = {c.partition(":")[0] for c in SERVE.values("LoadCredential")}
    assert names == {"jira-webhook-secret", "broker-url"}
    daemon_names = {c.partition(":")[0] for c in DAEMON.values("LoadCredential")}
    assert not names & daemon_names  # jira-token, servicenow-password: never in serve


def test_serve_has_the_daemon_s_hardening_restart_and_logging() -> None:
    def shared(unit: Unit) -> list[tuple[str, str, str]]:
        return [e for e in unit.entries if e[0] != "Unit" and e[1] not in ITS_OWN]

    assert shared(SERVE) == shared(DAEMON)


# -- both


def test_it_runs_with_the_shared_config(unit: Unit) -> None:
    assert "USM_BRIDGE_CONFIG=%E/usm-bridge/usm-bridge.toml" in unit.values("Environment")
    assert unit.value("ExecStart").startswith("/opt/usm-bridge/bin/usm-bridge ")
    assert unit.value("WantedBy", "Install") == "multi-user.target"


def test_secrets_come_as_credentials(unit: Unit) -> None:
    credentials = unit.values("LoadCredential")
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
def test_hardening_restart_and_logging(unit: Unit, key: str, expected: str) -> None:
    assert unit.value(key) == expected


def test_the_system_call_filter_allows_a_system_service_only(unit: Unit) -> None:
    assert unit.values("SystemCallFilter")[0] == "@system-service"
    assert unit.value("RestartSec")


def test_every_key_is_one_systemd_knows(unit: Unit) -> None:
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
    unknown = [(s, k) for s, k, _ in unit.entries if k not in known.get(s, set())]
    assert unknown == []


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        machine_cannot("systemd-analyze is not installed")
    return subprocess.run(
        [analyze, *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def unit_copy(unit: Unit, tmp_path: Path) -> Path:
    """The unit under its own name, its ExecStart pointed at this checkout's usm-bridge (the
    real one under /opt does not exist here); nothing else changed."""
    assert ENTRY_POINT.exists(), ENTRY_POINT
    text = unit.path.read_text(encoding="utf-8")
    assert text.count("ExecStart=/opt/usm-bridge/bin/usm-bridge ") == 1
    copy = tmp_path / unit.path.name
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
