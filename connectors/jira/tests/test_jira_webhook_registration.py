"""``usm-bridge webhooks register`` against the Jira simulator, whose ``/rest/webhooks/1.0/webhook``
answers as Jira's admin webhooks do, and whose webhooks then fire to what was registered.

(pycontribs' ``jira`` client, the third-party check used elsewhere, has no webhook API in the
version installed, so it cannot be held against these endpoints.)"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result
from prometheus_client import CollectorRegistry
from usm_bridge_jira.simulator import JiraSimulator

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.events.app import build_app
from usm_bridge.events.counts import EventCounts
from usm_bridge.events.daemon_app import event_receivers
from usm_bridge.events.server import AppServer
from usm_bridge.sync.metrics import Health

SECRET = "fac-webhook-secret/with+odd&chars=0123456789"  # noqa: S105 - a test's own
INSTANCE = "fac-jira"
CASEY = "5b10ac8d82e05b22cc7d4ef5"


def write_config(
    path: Path,
    sim: JiraSimulator,
    *,
    public_url: str | None = "https://bridge.example.com",
    auth: str = "signature",
    credentials: dict[str, str] | None = None,
) -> Path:
    settings = {
        "base_url": sim.base_url,
        "deployment": sim.flavour,
        **(credentials or sim.credentials()),
        "projects": ["IT"],
        "max_attempts": 1,
    }
    lines = [
        '[store]\nurl = "sqlite:///bridge.db"\n',
        "[units.fac]\n",
        f"[instances.{INSTANCE}]",
        'unit = "fac"\nkind = "jira"\nmapping = "jira.yaml"',
        'webhook_secret = "${FAC_WEBHOOK_SECRET}"',
        f'webhook_auth = "{auth}"',
        f"[instances.{INSTANCE}.settings]",
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
    ]
    if public_url is not None:
        lines += ["", "[daemon]", f'public_url = "{public_url}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def register(config: Path, *args: str) -> Result:
    runner = CliRunner(env={"FAC_WEBHOOK_SECRET": SECRET})
    result = runner.invoke(cli, ["webhooks", "register", "-c", str(config), *args])
    assert "Traceback" not in result.output
    # Never the secret, in any form, whatever the outcome.
    assert SECRET not in result.output
    assert urllib.parse.quote(SECRET, safe="") not in result.output
    return result


def casey(sim: JiraSimulator) -> dict[str, str]:
    """The settings that sign in as Casey, who is not a Jira administrator."""
    if sim.flavour == "cloud":
        return {"email": "casey@sim.example", "api_token": sim.site.tokens[CASEY]}
    return {"personal_access_token": sim.site.tokens[CASEY]}


def test_register_creates_once_then_reports_the_existing_one(
    cloud: JiraSimulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", cloud)
    url = f"https://bridge.example.com/events/jira/{INSTANCE}"

    dry = register(config, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{INSTANCE}: would create (cloud) (dry run): posting to {url}" in dry.output
    assert cloud.site.webhooks.registered == []

    first = register(config)
    assert first.exit_code == 0, first.output
    assert f"{INSTANCE}: created (cloud): webhook 1, posting to {url}" in first.output
    [hook] = cloud.site.webhooks.registered
    assert (hook.url, hook.secret, hook.name) == (url, SECRET, f"usm-bridge {INSTANCE}")
    assert hook.jql == 'project in ("IT")'
    assert {"jira:issue_created", "jira:issue_updated", "comment_created"} <= hook.events

    second = register(config)
    assert second.exit_code == 0, second.output
    assert f"{INSTANCE}: exists (cloud): webhook 1 ('usm-bridge {INSTANCE}')" in second.output
    assert len(cloud.site.webhooks.registered) == 1
    # A dry run once it exists says so too, and changes nothing either.
    assert "exists" in register(config, "--dry-run").output
    assert len(cloud.site.webhooks.registered) == 1


def test_an_account_that_is_not_admin_gets_the_settings_to_enter_by_hand(
    cloud: JiraSimulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", cloud, credentials=casey(cloud))
    result = register(config)
    assert result.exit_code == 0, result.output
    assert (
        f"{INSTANCE}: manual (cloud): Jira refused to list webhooks (not an admin: HTTP 403)."
        in result.output
    )
    lines = result.output.splitlines()
    expected = {
        "Name:": f"usm-bridge {INSTANCE}",
        "URL:": f"https://bridge.example.com/events/jira/{INSTANCE}",
        "Secret:": "the value of ${FAC_WEBHOOK_SECRET}",
        "Events:": "Issue: created, updated, deleted; Comment: created, updated",
        "JQL:": 'project in ("IT")',
    }
    for label, value in expected.items():
        assert any(line.split() and line.split()[0] == label and line.endswith(value)
                   for line in lines), (label, result.output)  # fmt: skip
    assert "not an admin: HTTP 403" in result.output
    assert cloud.site.webhooks.registered == []


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (404, "manual (cloud): Jira refused to list webhooks (no such API: HTTP 404).", 0),
        (400, "failed: could not list webhooks:", 1),
    ],
)
def test_a_refused_listing_prints_the_settings_or_fails_with_jiras_message(
    cloud: JiraSimulator, tmp_path: Path, status: int, expected: str, code: int
) -> None:
    config = write_config(tmp_path / "c.toml", cloud)
    # Jira's message quotes the secret: it must not reach the output either.
    cloud.reject_next(f"nope, not with {SECRET}", status)
    result = register(config)
    assert result.exit_code == code, result.output
    assert f"{INSTANCE}: {expected}" in result.output
    if code:
        assert "nope, not with ***" in result.output
    else:
        assert "URL:         https://bridge.example.com/events/jira/fac-jira" in result.output
    assert cloud.site.webhooks.registered == []


def test_without_a_receiver_url_it_fails_naming_the_setting(
    cloud: JiraSimulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", cloud, public_url=None)
    result = register(config)
    assert result.exit_code == 1
    assert "set [daemon] public_url, or webhook_url of [instances.fac-jira]" in result.output
    assert cloud.site.webhooks.registered == []


def test_data_center_without_signing_is_left_to_the_admin(
    datacenter: JiraSimulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", datacenter)
    result = register(config)
    assert result.exit_code == 0, result.output
    assert f"{INSTANCE}: manual (datacenter): Jira Data Center does not sign" in result.output
    assert 'webhook_auth = "url_secret"' in result.output
    assert datacenter.site.webhooks.registered == []


class Receiver:
    """The bridge's Jira receiver on loopback, for one instance, recording what it wakes."""

    def __init__(self, config: Path) -> None:
        self.config = load_config(config, environ={"FAC_WEBHOOK_SECRET": SECRET})
        self.woken: list[str] = []
        self.changed = threading.Condition()
        self.registry = CollectorRegistry()
        counts = EventCounts(self.registry, [INSTANCE])
        receivers = event_receivers(self.config, [INSTANCE], self._wake, counts)
        app = build_app(self, lambda: Health(True, {}), receivers)
        self.server = AppServer(app, "127.0.0.1", 0)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain"

    def _wake(self, name: str) -> None:
        with self.changed:
            self.woken.append(name)
            self.changed.notify_all()

    def counted(self, outcome: str) -> float:
        labels = {"instance": INSTANCE, "outcome": outcome}
        return self.registry.get_sample_value("usm_bridge_events_total", labels) or 0.0


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_the_registered_webhook_fires_to_the_receiver_which_wakes_the_instance(
    flavour: str, cloud: JiraSimulator, datacenter: JiraSimulator, tmp_path: Path
) -> None:
    """Cloud signs (X-Hub-Signature); Data Center posts to the URL with the secret in it."""
    sim = cloud if flavour == "cloud" else datacenter
    auth = "signature" if flavour == "cloud" else "url_secret"
    # The receiver's port is known once it is bound: write the config twice.
    path = write_config(tmp_path / "c.toml", sim, auth=auth)
    receiver = Receiver(path)
    with receiver.server:
        write_config(path, sim, public_url=receiver.server.url, auth=auth)
        result = register(path)
        assert result.exit_code == 0, result.output
        assert f"{INSTANCE}: created ({flavour})" in result.output
        [hook] = sim.site.webhooks.registered
        if flavour == "datacenter":
            assert hook.secret is None
            assert parse_qs(urlsplit(hook.url).query) == {"secret": [SECRET]}
            assert "secret=<the value of ${FAC_WEBHOOK_SECRET}, URL-encoded>" in result.output
        else:
            assert hook.secret == SECRET and urlsplit(hook.url).query == ""
        # Run again: the URL with its secret is recognised, not registered twice.
        assert f"{INSTANCE}: exists ({flavour})" in register(path).output
        assert len(sim.site.webhooks.registered) == 1

        sim.site.add_issue("Light out in room 4", project="IT")
        sim.site.add_issue("Not the bridge's project", project="DEV")  # outside the JQL
        assert sim.site.webhooks.wait_sent()
        with receiver.changed:
            assert receiver.changed.wait_for(lambda: receiver.woken, 5)
        assert [d.status for d in sim.site.webhooks.deliveries] == [202]
        assert receiver.woken == [INSTANCE]
        assert receiver.counted("accepted") == 1


def _call(
    sim: JiraSimulator, method: str, path: str, body: Any = None, account: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if account is not None:
        headers.update(sim.site.sign_in(account))
    data = None if body is None else json.dumps(body).encode()
    # S310: the simulator's own loopback http:// URL.
    request = urllib.request.Request(sim.base_url + path, data, headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def test_the_simulator_lists_creates_shows_and_deletes_admin_webhooks(
    cloud: JiraSimulator,
) -> None:
    admin, path = cloud.site.me, "/rest/webhooks/1.0/webhook"
    assert _call(cloud, "GET", path, account=admin) == (200, [])
    body = {
        "name": "bridge",
        "url": "https://bridge.example.com/events/jira/x",
        "events": ["jira:issue_updated"],
        "filters": {"issue-related-events-section": "project = IT"},
        "excludeBody": False,
        "secret": "s3cret",
    }
    status, made = _call(cloud, "POST", path, body, admin)
    assert status == 201
    assert made["self"] == f"{cloud.base_url}{path}/1"
    assert made["filters"] == {"issue-related-events-section": "project = IT"}
    assert "secret" not in made  # never shown back
    assert _call(cloud, "GET", path, account=admin) == (200, [made])
    assert _call(cloud, "GET", f"{path}/1", account=admin) == (200, made)

    # Refusals: unsigned, not an admin, a bad body, a bad filter, an unknown id.
    assert _call(cloud, "GET", path)[0] == 401
    assert _call(cloud, "GET", path, account=CASEY)[0] == 403
    assert _call(cloud, "POST", path, body, CASEY)[0] == 403
    assert _call(cloud, "POST", path, {**body, "url": "ftp://x"}, admin)[0] == 400
    assert _call(cloud, "POST", path, {**body, "name": ""}, admin)[0] == 400
    bad_jql = {**body, "filters": {"issue-related-events-section": "nosuchfield = 1"}}
    cloud.site.add_issue("so that field names are checked")
    assert _call(cloud, "POST", path, bad_jql, admin)[0] == 400
    assert _call(cloud, "DELETE", f"{path}/99", account=admin)[0] == 404
    assert len(cloud.site.webhooks.registered) == 1

    assert _call(cloud, "DELETE", f"{path}/1", account=CASEY)[0] == 403
    assert _call(cloud, "DELETE", f"{path}/1", account=admin) == (204, None)
    assert _call(cloud, "GET", path, account=admin) == (200, [])
