"""/healthz and /metrics over real HTTP on a free loopback port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from daemon_fakes import START, FakeClock, FakeEngine, make_config, simulate
from prometheus_client.parser import text_string_to_metric_families

from usm_bridge.config import parse_listen
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.metrics import BridgeMetrics, Health, MetricsServer


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def daemon() -> Daemon:
    clock = FakeClock(horizon=START + 600)
    engine = FakeEngine(clock, failing={"bad"})
    return simulate(
        make_config({"good": 60.0, "bad": 60.0}),
        engine,
        seed=1,
        store_counts=lambda: ({"good": 7}, {"bad": 3}),
    )


@pytest.fixture
def server(daemon: Daemon) -> Iterator[MetricsServer]:
    with MetricsServer("127.0.0.1", 0, daemon.metrics, daemon.health) as server:
        yield server


def test_metrics_are_served_in_the_prometheus_text_format(
    server: MetricsServer, daemon: Daemon
) -> None:
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    good = daemon.schedule.slots["good"].cycles
    assert samples[("usm_bridge_records_read_total", (("instance", "good"),))] == 3 * good
    assert samples[("usm_bridge_outbox_backlog", (("instance", "good"),))] == 7
    assert samples[("usm_bridge_dead_letters_open", (("instance", "bad"),))] == 3
    assert samples[("usm_bridge_consecutive_failures", (("instance", "bad"),))] >= 3
    bucket = ("usm_bridge_cycle_duration_seconds_bucket", (("instance", "good"), ("le", "+Inf")))
    assert samples[bucket] == good
    for name in (
        "usm_bridge_records_stored_total",
        "usm_bridge_echoes_total",
        "usm_bridge_pushed_total",
        "usm_bridge_dead_letters_total",
        "usm_bridge_last_success_timestamp_seconds",
    ):
        assert (name, (("instance", "good"),)) in samples, name


def test_openmetrics_is_served_when_asked_for(server: MetricsServer) -> None:
    request = urllib.request.Request(
        server.url + "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().rstrip().endswith("# EOF")


def test_healthz_is_503_naming_the_failing_instance(server: MetricsServer) -> None:
    status, content_type, body = get(server.url + "/healthz")
    assert (status, content_type) == (503, "application/json")
    detail = json.loads(body)
    assert detail["status"] == "failing"
    assert detail["failing"] == ["bad"]
    assert detail["instances"]["good"]["ok"] is True
    assert detail["instances"]["bad"]["consecutive_failures"] >= 3


def test_healthz_is_200_when_all_is_well() -> None:
    metrics = BridgeMetrics()
    with MetricsServer("127.0.0.1", 0, metrics, lambda: Health(True, {"status": "ok"})) as srv:
        status, _content_type, body = get(srv.url + "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert get(srv.url + "/nope")[0] == 404
        assert get(srv.url + "/")[0] == 200


def test_a_health_check_that_raises_still_answers_503() -> None:
    def broken() -> Health:
        raise RuntimeError("bug")

    with MetricsServer("127.0.0.1", 0, BridgeMetrics(), broken) as srv:
        status, _, body = get(srv.url + "/healthz")
    assert status == 503 and json.loads(body)["status"] == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("off", None),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", "host:", "host:70000", "a:b:c"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(text)
