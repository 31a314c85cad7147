"""The secret in the URL (``webhook_auth = "url_secret"``, for a Jira Data Center that does not
sign): accepted as the alternative to ``X-Hub-Signature`` only on the instances that ask for
it, refused when wrong, and never a way around a signature that is wrong."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from usm_bridge.config import BridgeConfig, DaemonConfig, InstanceConfig
from usm_bridge.events.app import build_app
from usm_bridge.events.counts import EventCounts
from usm_bridge.events.daemon_app import event_receivers, receiving
from usm_bridge.events.server import AppServer
from usm_bridge.events.signature import sign
from usm_bridge.model import Unit
from usm_bridge.sync.metrics import Health

SECRET = "dc secret/with+odd&chars=é"
BODY = b'{"timestamp":1,"webhookEvent":"jira:issue_updated","issue":{"id":"1","key":"IT-1"}}'


def config() -> BridgeConfig:
    def instance(name: str, auth: str) -> InstanceConfig:
        return InstanceConfig(
            name=name, unit="u", kind="jira", mapping=Path("m.yaml"),
            webhook_secret=SecretStr(SECRET), webhook_auth=auth,  # type: ignore[arg-type]
        )  # fmt: skip

    return BridgeConfig(
        units={"u": Unit(name="u")},
        instances={"dc": instance("dc", "url_secret"), "cloud": instance("cloud", "signature")},
        daemon=DaemonConfig(event_max_body=4096),
    )


class Running:
    def __init__(self, url: str, registry: CollectorRegistry, woken: list[str]) -> None:
        self.url, self.registry, self.woken = url, registry, woken

    def post(self, path: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(self.url + path, BODY, headers or {}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def counted(self, instance: str, outcome: str) -> float:
        labels = {"instance": instance, "outcome": outcome}
        value = self.registry.get_sample_value("usm_bridge_events_total", labels)
        assert value is not None
        return value


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain"


@pytest.fixture
def running() -> Iterator[Running]:
    cfg = config()
    registry = CollectorRegistry()
    woken: list[str] = []
    names = list(cfg.instances)
    counts = EventCounts(registry, receiving(cfg, names))
    receivers = event_receivers(cfg, names, woken.append, counts)
    app = build_app(_Metrics(registry), lambda: Health(True, {}), receivers)
    with AppServer(app, "127.0.0.1", 0) as server:
        yield Running(server.url, registry, woken)


def test_the_right_secret_in_the_url_is_accepted_as_a_signature_would_be(
    running: Running,
) -> None:
    assert running.post(f"/events/jira/dc?secret={quote(SECRET, safe='')}") == 202
    assert running.woken == ["dc"]
    assert running.counted("dc", "accepted") == 1


def test_a_wrong_or_missing_url_secret_is_refused_and_wakes_nothing(running: Running) -> None:
    statuses = [
        running.post("/events/jira/dc?secret=guess"),
        running.post(f"/events/jira/dc?secret={quote(SECRET[:-1], safe='')}"),
        running.post("/events/jira/dc?secret="),
        running.post("/events/jira/dc"),
    ]
    assert statuses == [403, 403, 403, 401]
    assert running.counted("dc", "bad_signature") == 3
    assert running.counted("dc", "unsigned") == 1
    assert running.woken == []


def test_a_signature_is_still_checked_when_a_url_secret_comes_with_it(running: Running) -> None:
    good_url = f"/events/jira/dc?secret={quote(SECRET, safe='')}"
    forged = {"X-Hub-Signature": sign("not the secret", BODY)}
    assert running.post(good_url, forged) == 403
    assert running.post("/events/jira/dc", {"X-Hub-Signature": sign(SECRET, BODY)}) == 202
    assert running.woken == ["dc"]


def test_an_instance_that_signs_ignores_a_secret_in_the_url(running: Running) -> None:
    assert running.post(f"/events/jira/cloud?secret={quote(SECRET, safe='')}") == 401
    assert running.counted("cloud", "unsigned") == 1
    assert running.woken == []
