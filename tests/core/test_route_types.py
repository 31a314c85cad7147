"""``check`` refuses a route USM rules out: one that opens a supplier call of type risk, or one
that takes unclassified calls (a route without a call_type condition takes every type), naming
the file, the line and the key (:mod:`usm_bridge.route_types`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.errors import ConfigurationError
from usm_bridge.model import CallType

CONFIG = """\
[units.hr]

[units.facilities]

[instances.hr-jira]
unit = "hr"
kind = "jira"
mapping = "jira.yaml"

[instances.fac-jira]
unit = "facilities"
kind = "jira"
mapping = "jira.yaml"

[[routes]]
name = "hr-to-facilities"
from = "hr"
to = "facilities"
"""
#: The line of the first key written after CONFIG.
NEXT = CONFIG.count("\n") + 1


def _write(tmp_path: Path, *route_lines: str) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG + "".join(f"{line}\n" for line in route_lines), encoding="utf-8")
    return path


def _check_refuses(path: Path) -> str:
    """``usm-bridge check``: exit 2 and one line, returned."""
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, (result.output, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("lines", "at", "key", "says"),
    [
        # The supplier call's own type.
        (
            ['when = { call_type = "incident" }', 'call_type = "risk"'],
            1,
            "routes.0.call_type",
            "would open supplier calls of type 'risk': a supplier call is one of the four "
            "support requests (incident, rfc, service_request, wish)",
        ),
        (
            ['when = { call_type = "incident" }', 'call_type = "unclassified"'],
            1,
            "routes.0.call_type",
            "supplier calls of type 'unclassified'",
        ),
        # Inherited from the upstream: a risk (alone or in a list) would pass on as risk.
        (
            ['when = { call_type = "risk" }'],
            0,
            "routes.0.when.call_type",
            "admits risk calls and its supplier call takes the upstream's type, so it would "
            "open a supplier call of type risk",
        ),
        (
            ['when = { call_type = ["service_request", "risk"] }'],
            0,
            "routes.0.when.call_type",
            "would open a supplier call of type risk",
        ),
        # Unclassified calls, named or admitted by having no call_type condition at all.
        (
            ['when = { call_type = ["unclassified", "incident"] }', 'call_type = "incident"'],
            0,
            "routes.0.when.call_type",
            "admits unclassified calls: USM does no work on a call before it is classified",
        ),
        (
            ['when = { service = "desk" }', 'call_type = "service_request"'],
            0,
            "routes.0.when",
            "has no call_type condition, so it admits unclassified calls (and risk)",
        ),
    ],
)
def test_a_route_usm_rules_out_is_refused_naming_its_key(
    tmp_path: Path, lines: list[str], at: int, key: str, says: str
) -> None:
    line = _check_refuses(_write(tmp_path, *lines))
    assert f"usm-bridge.toml:{NEXT + at}: key {key}: route 'hr-to-facilities' " in line, line
    assert says in line, line


def test_a_route_without_any_condition_is_refused_at_the_route(tmp_path: Path) -> None:
    line = _check_refuses(_write(tmp_path))  # line 15 is its [[routes]] header
    assert "usm-bridge.toml:15: key routes.0: route 'hr-to-facilities' has no call_type" in line
    assert 'e.g. when = { call_type = ["service_request"] }' in line


@pytest.mark.parametrize(
    ("lines", "supplier"),
    [
        (['when = { call_type = ["service_request", "incident"] }'], None),
        (['when = { call_type = "wish" }'], None),
        # A risk may lead to a support request at another unit (W7: risk -> change).
        (['when = { call_type = "risk" }', 'call_type = "rfc"'], CallType.RFC),
    ],
)
def test_routes_of_support_requests_are_taken(
    tmp_path: Path, lines: list[str], supplier: CallType | None
) -> None:
    (route,) = load_config(_write(tmp_path, *lines)).routes
    assert route.supplier_call_type is supplier


def test_a_route_from_the_environment_is_checked_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, 'when = { call_type = "incident" }')
    monkeypatch.setenv(
        "USM_BRIDGE_ROUTES", '[{"name": "env", "from": "hr", "to": "facilities", "when": {}}]'
    )
    with pytest.raises(ConfigurationError) as refused:
        load_config(path)
    assert "environment variable USM_BRIDGE_ROUTES (key routes.0" in str(refused.value)
    assert "route 'env' has no call_type condition" in str(refused.value)
