"""``usm-bridge serve`` over a real broker, Redis and RabbitMQ: an accepted delivery enqueues
its instance's cycle for the workers (one at most waiting: the debounce), and a broker that does
not answer turns accepted deliveries into counted 503s the tool retries, until it is back.

The app runs under uvicorn on loopback in this process. The broker goes down two ways: a
private ``redis-server`` killed and started again empty (as compose runs Redis), and, for
RabbitMQ, whose own server takes seconds to start, the shared server's link cut by a
:class:`~celery_workers.broker_door.BrokerDoor` (refused, the open connections reset) and opened
again, its queues kept. The command itself runs as a subprocess and stops on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from http_wait import wait_healthy

from celery_workers.broker_door import BrokerDoor
from celery_workers.conftest import BROKERS, _answers, delete_queues
from celery_workers.test_broker_loss import PrivateRedis, private_redis
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.events.serve_app import ServeApp, serve_app
from usm_bridge.events.server import AppServer
from usm_bridge.events.signature import sign
from usm_bridge.workers.backlog import waiting

__all__ = ["private_redis"]

SECRET = "serve-test-secret-0123456789abcdef"
BODY = b'{"timestamp":1,"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"FAC-1"}}'
INSTANCE = "fac-jira"


def write_config(path: Path, broker_url: str) -> BridgeConfig:
    """A Jira instance that takes events and one that does not, on ``broker_url`` with queues
    of this test's own. The tool's token and the store's URL are variables left unset: serve
    never needs them."""
    prefix = f"t{uuid.uuid4().hex[:10]}.tool."
    path.write_text(
        f"""\
[store]
url = "${{STORE_URL_NOT_SET}}"

[units.fac]

[instances.{INSTANCE}]
unit = "fac"
kind = "jira"
mapping = "jira.yaml"
interval = "5m"
webhook_secret = "${{FAC_WEBHOOK_SECRET}}"

[instances.{INSTANCE}.settings]
base_url = "https://fac.example.atlassian.net"
email = "bridge@example.com"
api_token = "${{FAC_JIRA_TOKEN_NOT_SET}}"
projects = ["FAC"]

[instances.it-snow]
unit = "fac"
kind = "servicenow"
mapping = "snow.yaml"
interval = "5m"
webhook_secret = "${{FAC_WEBHOOK_SECRET}}"

[instances.it-snow.settings]
instance_url = "https://it.example.service-now.com"
tables = ["incident"]
username = "bridge"
password = "${{SNOW_PASSWORD_NOT_SET}}"

[instances.quiet-jira]
unit = "fac"
kind = "jira"
mapping = "jira.yaml"

[instances.quiet-jira.settings]
base_url = "https://quiet.example.atlassian.net"
email = "bridge@example.com"
api_token = "${{FAC_JIRA_TOKEN_NOT_SET}}"
projects = ["Q"]

[workers]
broker_url = "{broker_url}"
queue_prefix = "{prefix}"
""",
        encoding="utf-8",
    )
    return load_config(
        path,
        environ={"FAC_WEBHOOK_SECRET": SECRET},
        tool_secrets=False,
        webhook_secrets=True,
        store_secret=False,
    )


def _shared_broker(name: str) -> str:
    """The shared ``name`` broker's URL; a skip (a failure under ``CI=true``) if it does not
    answer, as :func:`celery_workers.conftest.broker_url` does."""
    url = BROKERS[name]
    reason = _answers(url)
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"the {name} broker at {url} does not answer: {reason}", pytrace=False)
        pytest.skip(f"the {name} broker at {url} does not answer: {reason}")
    return url


@pytest.fixture
def redis_url() -> str:
    return _shared_broker("redis")


@pytest.fixture
def rabbitmq_url() -> str:
    return _shared_broker("rabbitmq")


class Served:
    def __init__(self, served: ServeApp, url: str) -> None:
        self.served, self.url = served, url

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        method = "POST" if body is not None else "GET"
        request = urllib.request.Request(self.url + path, body, headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def deliver(self, identifier: str | None = None, instance: str = INSTANCE) -> int:
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature": sign(SECRET, BODY),
            "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
        }
        return self.request(f"/events/jira/{instance}", BODY, headers)[0]

    def sample(self, name: str, **labels: str) -> float:
        value = self.served.metrics.registry.get_sample_value(name, labels)
        assert value is not None, (name, labels)
        return value

    def waiting(self) -> int:
        return waiting(self.served.wake.app, self.served.config, INSTANCE)


@pytest.fixture
def serving(tmp_path: Path, broker_url: str) -> Iterator[Served]:
    """The app on loopback, on each broker in turn (conftest's ``broker_url``)."""
    config = write_config(tmp_path / "usm-bridge.toml", broker_url)
    served = serve_app(config, [INSTANCE, "it-snow", "quiet-jira"])
    try:
        with AppServer(served.app, "127.0.0.1", 0) as server:
            yield Served(served, server.url)
    finally:
        delete_queues(config)


def test_a_signed_event_puts_exactly_one_cycle_on_the_instance_queue(serving: Served) -> None:
    assert serving.waiting() == 0
    assert serving.deliver() == 202
    assert serving.waiting() == 1
    # The task is the instance's cycle, on its own queue, as the scheduler sends it.
    app, config = serving.served.wake.app, serving.served.config
    from usm_bridge.workers.tasks import queue_of

    with app.connection_for_write() as conn:
        message = conn.default_channel.basic_get(queue_of(config, INSTANCE), no_ack=True)
        assert message is not None
        assert message.headers["task"] == "usm_bridge.cycle"
        assert json.loads(message.body)[0] == [INSTANCE]
    assert serving.sample("usm_bridge_events_total", instance=INSTANCE, outcome="accepted") == 1
    assert (
        serving.sample("usm_bridge_event_cycles_total", instance=INSTANCE, result="enqueued") == 1
    )
    # Refusals enqueue nothing: unsigned, badly signed, an instance without a secret.
    assert serving.request(f"/events/jira/{INSTANCE}", BODY, {})[0] == 401
    bad = {"X-Hub-Signature": sign("another secret", BODY)}
    assert serving.request(f"/events/jira/{INSTANCE}", BODY, bad)[0] == 403
    assert serving.deliver(instance="quiet-jira") == 404
    assert serving.waiting() == 0  # the one message was taken above


def test_a_signed_servicenow_event_enqueues_that_instance_s_cycle(serving: Served) -> None:
    from usm_bridge.events.signature import SERVICENOW

    body = b'{"table":"incident","sys_id":"abc","sys_mod_count":"1"}'
    headers = {SERVICENOW.header: SERVICENOW.sign(SECRET, body), "X-USM-Bridge-Delivery": "abc:1"}
    assert serving.request("/events/servicenow/it-snow", body, headers)[0] == 202
    app, config = serving.served.wake.app, serving.served.config
    assert waiting(app, config, "it-snow") == 1
    assert serving.waiting() == 0  # the Jira instance's queue is its own
    assert (
        serving.sample("usm_bridge_event_cycles_total", instance="it-snow", result="enqueued") == 1
    )


def test_a_burst_of_20_events_is_still_one_waiting_cycle(serving: Served) -> None:
    assert serving.deliver() == 202
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: serving.deliver(), range(20)))
    assert statuses == [202] * 20
    assert serving.waiting() == 1
    assert serving.sample("usm_bridge_events_total", instance=INSTANCE, outcome="accepted") == 21
    labels = {"instance": INSTANCE}
    assert serving.sample("usm_bridge_event_cycles_total", **labels, result="enqueued") == 1
    assert serving.sample("usm_bridge_event_cycles_total", **labels, result="already_waiting") == 20
    # A replay of a delivery that was taken is answered 200 and enqueues nothing either.
    identifier = str(uuid.uuid4())
    assert serving.deliver(identifier) == 202
    assert serving.deliver(identifier) == 200
    assert serving.waiting() == 1
    status, body = serving.request("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_broker_down_answers_503_counted_and_logged_once_then_recovers(
    tmp_path: Path, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "usm-bridge.toml", private_redis.url)
    served = serve_app(config, [INSTANCE])
    caplog.set_level(logging.INFO, logger="usm_bridge.events")
    with AppServer(served.app, "127.0.0.1", 0) as server:
        serving = Served(served, server.url)
        assert serving.deliver() == 202
        assert serving.waiting() == 1

        private_redis.kill()
        retried = str(uuid.uuid4())
        statuses = [serving.deliver(retried)] + [serving.deliver() for _ in range(4)]
        assert statuses == [503] * 5
        status, body = serving.request("/healthz")
        assert status == 503
        health = json.loads(body)
        assert health["status"] == "broker_down" and "error" in health
        assert (
            serving.sample("usm_bridge_events_total", instance=INSTANCE, outcome="unavailable") == 5
        )
        assert serving.sample("usm_bridge_event_broker_failures_total") == 5
        assert serving.sample("usm_bridge_event_broker_up") == 0
        down = [r for r in caplog.records if getattr(r, "event", "") == "broker_down"]
        assert len(down) == 1, [r.getMessage() for r in down]
        assert "does not answer" in down[0].getMessage()

        # Back, empty (as compose runs it): Jira's retry of a refused delivery is taken,
        # not refused as a replay, and puts the cycle back on the queue.
        private_redis.start()
        assert serving.deliver(retried) == 202
        assert serving.waiting() == 1
        assert serving.request("/healthz")[0] == 200
        assert serving.sample("usm_bridge_event_broker_up") == 1
        assert serving.sample("usm_bridge_events_total", instance=INSTANCE, outcome="accepted") == 2
        up = [r for r in caplog.records if getattr(r, "event", "") == "broker_up"]
        assert len(up) == 1


def test_rabbitmq_cut_off_answers_503_counted_then_its_waiting_cycle_stays_the_one(
    tmp_path: Path, rabbitmq_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    door = BrokerDoor(rabbitmq_url)
    config = write_config(tmp_path / "usm-bridge.toml", door.url)
    served = serve_app(config, [INSTANCE])
    caplog.set_level(logging.INFO, logger="usm_bridge.events")
    try:
        with AppServer(served.app, "127.0.0.1", 0) as server:
            serving = Served(served, server.url)
            assert serving.deliver() == 202
            assert serving.waiting() == 1

            door.shut()  # the producer's open connection is reset, a new one refused
            retried = str(uuid.uuid4())
            statuses = [serving.deliver(retried)] + [serving.deliver() for _ in range(4)]
            assert statuses == [503] * 5
            status, body = serving.request("/healthz")
            assert status == 503 and json.loads(body)["status"] == "broker_down"
            assert (
                serving.sample("usm_bridge_events_total", instance=INSTANCE, outcome="unavailable")
                == 5
            )
            assert serving.sample("usm_bridge_event_broker_failures_total") == 5
            assert serving.sample("usm_bridge_event_broker_up") == 0
            down = [r for r in caplog.records if getattr(r, "event", "") == "broker_down"]
            assert len(down) == 1, [r.getMessage() for r in down]

            # Back with its queue kept: Jira's retry is taken (not a replay), and finds the
            # cycle sent before the outage still waiting, so it sends none.
            door.open()
            assert serving.deliver(retried) == 202
            assert serving.waiting() == 1
            assert serving.request("/healthz")[0] == 200
            assert serving.sample("usm_bridge_event_broker_up") == 1
            labels = {"instance": INSTANCE}
            assert serving.sample("usm_bridge_event_cycles_total", **labels, result="enqueued") == 1
            assert (
                serving.sample("usm_bridge_event_cycles_total", **labels, result="already_waiting")
                == 1
            )
            up = [r for r in caplog.records if getattr(r, "event", "") == "broker_up"]
            assert len(up) == 1
    finally:
        if not door.is_open:
            door.open()
        delete_queues(config)  # through the door: the queues are the shared server's
        door.shut()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_serve_command_takes_events_and_stops_cleanly_on_sigterm(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path / "usm-bridge.toml", redis_url)
    # The command reads its secrets as deploy/systemd/usm-bridge-serve.service gives them: the
    # Jira webhook secret and the broker's URL as credential files, and only those; the store's
    # URL names a credential that unit never loads.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "jira-webhook-secret").write_text(SECRET + "\n", encoding="utf-8")
    (credentials / "broker-url").write_text(redis_url + "\n", encoding="utf-8")
    text = config.path.read_text(encoding="utf-8")
    text = text.replace(
        'webhook_secret = "${FAC_WEBHOOK_SECRET}"',
        'webhook_secret = { file = "${CREDENTIALS_DIRECTORY}/jira-webhook-secret" }',
        1,  # fac-jira's; it-snow's stays a variable
    )
    text = text.replace(
        f'broker_url = "{redis_url}"',
        'broker_url = { file = "${CREDENTIALS_DIRECTORY}/broker-url" }',
    )
    text = text.replace('url = "${STORE_URL_NOT_SET}"',
                        'url = { file = "${CREDENTIALS_DIRECTORY}/store-url" }')  # fmt: skip
    assert text.count("${CREDENTIALS_DIRECTORY}/") == 3, text
    as_the_unit_gives_it = tmp_path / "serve.toml"
    as_the_unit_gives_it.write_text(text, encoding="utf-8")
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "FAC_WEBHOOK_SECRET": SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}
    env.pop("FAC_JIRA_TOKEN_NOT_SET", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "usm_bridge", "serve", "-c", str(as_the_unit_gives_it),
             "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, timeout=20, why=log.read_text)
        served = Served(serve_app(config, [INSTANCE]), url)
        assert served.deliver() == 202
        assert served.waiting() == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        delete_queues(config)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = [line.get("event") for line in lines]
    assert "webhooks" in events and "listening" in events and "serve_stop" in events
    assert SECRET not in log.read_text()


def test_the_serve_command_refuses_a_config_where_no_instance_takes_events(
    tmp_path: Path, redis_url: str
) -> None:
    from click.testing import CliRunner

    from usm_bridge.cli import cli

    config = write_config(tmp_path / "usm-bridge.toml", redis_url)
    runner = CliRunner(env={"FAC_WEBHOOK_SECRET": SECRET})
    result = runner.invoke(cli, ["serve", "-c", str(config.path), "-i", "quiet-jira"])
    assert result.exit_code == 2, result.output
    assert "no instance takes events" in result.output
    assert "Traceback" not in result.output


def test_the_serve_command_refuses_a_config_without_workers(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from usm_bridge.cli import cli

    config = write_config(tmp_path / "usm-bridge.toml", "redis://127.0.0.1:6379/0")
    text = config.path.read_text(encoding="utf-8")
    config.path.write_text(text[: text.index("[workers]")], encoding="utf-8")
    runner = CliRunner(env={"FAC_WEBHOOK_SECRET": SECRET})
    result = runner.invoke(cli, ["serve", "-c", str(config.path)])
    assert result.exit_code == 2, result.output
    assert "no [workers]" in result.output
    assert "Traceback" not in result.output
