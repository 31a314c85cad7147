"""Jira webhook deliveries over real HTTP on loopback, to the daemon's app under uvicorn, with
a real :class:`Daemon` on the real clock and an engine that counts its cycles.

Every delivery is accounted for: N deliveries are N counted outcomes in /metrics."""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from usm_bridge.config import BridgeConfig, DaemonConfig, InstanceConfig
from usm_bridge.events.daemon_app import events_app
from usm_bridge.events.server import AppServer
from usm_bridge.events.signature import sign
from usm_bridge.model import Unit
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.summary import CycleSummary, PushSummary

SECRET = "It's a s3cret, 64 bytes would be better"
BODY = b'{"timestamp":1,"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"IT-1"}}'
MAX_BODY = 4096


class CountingEngine:
    """Cycles that do nothing but be counted."""

    def __init__(self) -> None:
        self.cycles: list[str] = []
        self.changed = threading.Condition()

    def cycle(self, instance: str, *, progress: Callable[[Any], None] | None = None) -> Any:
        now = datetime.now(UTC)
        with self.changed:
            self.cycles.append(instance)
            self.changed.notify_all()
        return CycleSummary(instance=instance, started=now, finished=now)

    def push(self, target: str) -> PushSummary:
        now = datetime.now(UTC)
        return PushSummary(target=target, started=now, finished=now)

    def census(self, instance: str) -> int:
        return 0

    def count(self, instance: str) -> int:
        with self.changed:
            return self.cycles.count(instance)

    def wait_for(self, instance: str, count: int, timeout: float = 30.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.cycles.count(instance) >= count, timeout), (
                f"{instance}: {self.cycles.count(instance)} cycles, waited for {count}"
            )


class NoSpread(random.Random):
    """The first cycle at once, and every interval exactly."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0 if a <= 0.0 <= b else a


def config() -> BridgeConfig:
    def instance(name: str, kind: str, secret: str | None) -> InstanceConfig:
        return InstanceConfig(
            name=name, unit="u", kind=kind, mapping=Path("m.yaml"), interval=300.0,
            webhook_secret=SecretStr(secret) if secret else None,
        )  # fmt: skip

    return BridgeConfig(
        units={"u": Unit(name="u")},
        instances={
            "fac": instance("fac", "jira", SECRET),
            # Jira without a secret, and ServiceNow with one: neither takes Jira deliveries.
            "dev": instance("dev", "jira", None),
            "snow": instance("snow", "servicenow", SECRET),
        },
        daemon=DaemonConfig(event_debounce=1.0, event_max_body=MAX_BODY),
    )


class Running:
    def __init__(self, engine: CountingEngine, daemon: Daemon, url: str) -> None:
        self.engine, self.daemon, self.url = engine, daemon, url

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def deliver(self, identifier: str, body: bytes = BODY, **headers: str) -> int:
        sent = {
            "Content-Type": "application/json",
            "X-Hub-Signature": sign(SECRET, body),
            "X-Atlassian-Webhook-Identifier": identifier,
            **headers,
        }
        return self.post("/events/jira/fac", body, {k: v for k, v in sent.items() if v})[0]

    def counted(self, instance: str, outcome: str) -> float:
        value = self.daemon.metrics.registry.get_sample_value(
            "usm_bridge_events_total", {"instance": instance, "outcome": outcome}
        )
        assert value is not None, (instance, outcome)
        return value

    def total(self) -> float:
        """Every delivery counted, whatever its instance and outcome."""
        return sum(
            sample.value
            for family in self.daemon.metrics.registry.collect()
            if family.name == "usm_bridge_events"
            for sample in family.samples
            if sample.name == "usm_bridge_events_total"
        )

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as answer:
            return str(answer.read().decode())


@pytest.fixture
def running() -> Iterator[Running]:
    engine = CountingEngine()
    cfg = config()
    daemon = Daemon(cfg, engine, rng=NoSpread(), instances=["fac", "dev", "snow"])  # type: ignore[arg-type]
    thread = threading.Thread(target=daemon.run, daemon=True)
    with AppServer(events_app(cfg, daemon), "127.0.0.1", 0) as server:
        thread.start()
        try:
            engine.wait_for("fac", 1)  # the first, scheduled cycle: due at once
            yield Running(engine, daemon, server.url)
        finally:
            daemon.stop()
            thread.join(30)


def settle(running: Running, seconds: float = 3.0) -> None:
    """Longer than the debounce and a cycle: a woken cycle would have run by then."""
    time.sleep(seconds)


def test_a_signed_delivery_is_accepted_and_wakes_one_cycle(running: Running) -> None:
    assert running.deliver("d-1") == 202
    running.engine.wait_for("fac", 2)
    settle(running)
    assert running.engine.count("fac") == 2
    assert running.engine.count("dev") == 1 and running.engine.count("snow") == 1
    assert running.counted("fac", "accepted") == 1
    assert 'usm_bridge_events_total{instance="fac",outcome="accepted"} 1.0' in (
        running.metrics_text()
    )


def test_refused_deliveries_are_counted_by_reason_and_wake_nothing(running: Running) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    outcomes = [
        (running.deliver("r-1", **{"X-Hub-Signature": ""}), 401, "unsigned"),
        (running.deliver("r-2", **{"X-Hub-Signature": sign("not it", BODY)}), 403, "bad_signature"),
        (running.deliver("r-3", **{"X-Hub-Signature": sign(SECRET, BODY + b"\n")}), 403,
         "bad_signature"),
        (running.deliver("r-4", big, **{"X-Hub-Signature": sign(SECRET, big)}), 413, "too_large"),
        (chunked(running.url, big, sign(SECRET, big)), 413, "too_large"),
        (running.post("/events/jira/dev", BODY, {"X-Hub-Signature": sign(SECRET, BODY)})[0], 404,
         "unknown_instance"),
        (running.post("/events/jira/snow", BODY, {"X-Hub-Signature": sign(SECRET, BODY)})[0], 404,
         "unknown_instance"),
        (running.post("/events/servicenow/fac", BODY, {"X-Hub-Signature": sign(SECRET, BODY)})[0],
         404, "unknown_instance"),
        (running.post("/events/jira/%2E%2E", BODY, {})[0], 404, "unknown_instance"),
    ]  # fmt: skip
    assert [got for got, _, _ in outcomes] == [want for _, want, _ in outcomes]
    settle(running)
    assert running.engine.count("fac") == 1  # no cycle woken
    expected: dict[str, int] = {}
    for _, _, reason in outcomes:
        expected[reason] = expected.get(reason, 0) + 1
    for reason, count in expected.items():
        instance = "" if reason == "unknown_instance" else "fac"
        assert running.counted(instance, reason) == count, reason
    assert running.counted("fac", "accepted") == 0
    assert running.total() == len(outcomes)  # every delivery counted once, none twice
    # The names a sender chose are not labels: no series for "dev" or "..".
    assert 'instance="dev"' not in running.metrics_text().split("usm_bridge_events_total")[1]


def chunked(url: str, body: bytes, signature: str) -> int:
    """POST ``body`` without a Content-Length (chunked): the cap holds while streaming."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/events/jira/fac")
        conn.putheader("X-Hub-Signature", signature)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            try:
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:  # refused before the end: the server closed it
                break
        else:
            conn.send(b"0\r\n\r\n")
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_replayed_delivery_is_answered_200_and_ignored(running: Running) -> None:
    assert running.deliver("once") == 202
    running.engine.wait_for("fac", 2)
    settle(running)
    assert running.deliver("once") == 200  # Jira's retry of a delivery that arrived
    settle(running)
    assert running.engine.count("fac") == 2
    assert running.counted("fac", "accepted") == 1 and running.counted("fac", "replayed") == 1


def test_an_unsigned_delivery_does_not_burn_its_id(running: Running) -> None:
    """Ids are recorded only once the signature verified: a forger cannot have a real
    delivery refused as a replay by sending its id first."""
    assert running.deliver("real", **{"X-Hub-Signature": sign("forged", BODY)}) == 403
    assert running.deliver("real") == 202


def test_a_burst_of_50_deliveries_is_one_or_two_cycles(running: Running) -> None:
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(running.deliver, [f"burst-{n}" for n in range(50)]))
    assert statuses == [202] * 50
    running.engine.wait_for("fac", 2)
    settle(running)
    assert 2 <= running.engine.count("fac") <= 3  # the first scheduled cycle, then 1 or 2
    assert running.counted("fac", "accepted") == 50
    assert running.total() == 50


def test_healthz_and_metrics_answer_as_before(running: Running) -> None:
    with urllib.request.urlopen(running.url + "/healthz", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["Cache-Control"] == "no-store"
        assert b'"status": "ok"' in answer.read()
    assert 'usm_bridge_cycles_total{instance="fac",outcome="ok"}' in running.metrics_text()
    status, body = running.post("/nowhere", b"", {})
    assert (status, body) == (404, b"not found\n")
