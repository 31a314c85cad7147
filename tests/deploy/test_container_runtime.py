"""The image's steps, run without a container engine: the builder's `pip wheel` on the build
context .dockerignore leaves, the runtime's offline `pip install` of those wheels into a fresh
venv, then `usm-bridge daemon` with the container's config shape (its secrets as files, JSON
logs; loopback and a SQLite store here) and the Dockerfile's own HEALTHCHECK command against it.

The commands are read from the Dockerfile, so a change there is what these tests run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_files import (
    MAILBOX_CONFIG,
    ROOT,
    build_context,
    compose,
    container_config,
    healthcheck_command,
    machine_cannot,
    mailbox_config,
    mappings_link,
    stages,
)
from http_wait import wait_healthy

#: The longest any one step may take before the test gives up (a hang, not a slow machine).
STEP_TIMEOUT = 600


@dataclass(frozen=True)
class Installed:
    """A venv laid out as the image's runtime stage: its prefix plays /usr/local."""

    prefix: Path

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def usm_bridge(self) -> Path:
        return self.prefix / "bin" / "usm-bridge"


def _run(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=STEP_TIMEOUT
    )


def _in_image_paths(argv: list[str], wheels: Path) -> list[str]:
    """The Dockerfile's argv with the image's /wheels folder moved to ``wheels``; the cache is
    kept (--no-cache-dir only keeps the image small) so a rerun does not fetch again."""
    moved = [word.replace("=/wheels", f"={wheels}") for word in argv if word != "--no-cache-dir"]
    assert moved[:3] == ["python", "-m", "pip"], argv
    return moved[1:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    builder, runtime = stages()
    # The build context: what `docker build .` would send, copied file by file.
    context = tmp_path_factory.mktemp("context")
    for relative in build_context():
        source = ROOT / relative
        if source.is_file():
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / relative)
    wheels = tmp_path_factory.mktemp("wheels")
    built = _run(
        [sys.executable, *_in_image_paths(builder.run_with("pip", "wheel"), wheels)], cwd=context
    )
    assert built.returncode == 0, built.stdout + built.stderr
    prefix = tmp_path_factory.mktemp("image") / "usr-local"
    venv.EnvBuilder(with_pip=True).create(prefix)
    target = Installed(prefix)
    argv = _in_image_paths(runtime.run_with("pip", "install"), wheels)
    done = _run([str(target.python), *argv])
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_the_wheels_install_offline_with_the_three_connectors_and_postgresql(
    installed: Installed,
) -> None:
    listed = _run([str(installed.usm_bridge), "connectors"])
    assert listed.returncode == 0, listed.stderr
    for kind in ("email", "jira", "servicenow"):
        assert kind in listed.stdout
    driver = _run(
        [str(installed.python), "-c", "import psycopg; print(psycopg.__version__)"],
        cwd=installed.prefix,
    )
    assert driver.returncode == 0, driver.stderr


def _shipped_mappings(installed: Installed) -> Path:
    """Where the image's link beside the config leads, found by the Dockerfile's own script."""
    script, _ = mappings_link()
    # Run outside the checkout: `python -c` imports from its working directory first.
    found = _run([str(installed.python), "-c", script], cwd=installed.prefix)
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip())


def test_the_mapping_files_the_containers_config_names_are_installed(
    installed: Installed,
) -> None:
    shipped = _shipped_mappings(installed)
    assert shipped.is_relative_to(installed.prefix), shipped
    mappings = [inst["mapping"] for inst in container_config()["instances"].values()]
    assert mappings
    for mapping in mappings:
        assert mapping.startswith("mappings/"), mapping
        assert (shipped / mapping.removeprefix("mappings/")).is_file(), mapping


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    port: int
    lines: list[str]


@pytest.fixture
def daemon(tmp_path: Path, installed: Installed) -> Iterator[Daemon]:
    port = _free_port()
    state = tmp_path / "state"
    state.mkdir()
    config = mailbox_config(tmp_path / "etc", f"sqlite:///{state}/usm-bridge.db")
    env = {
        **os.environ,
        "USM_BRIDGE_CONFIG": str(config),
        "USM_BRIDGE_TEST_MAPPINGS": str(_shipped_mappings(installed)),
        "USM_BRIDGE_TEST_LISTEN": f"127.0.0.1:{port}",
    }
    process = subprocess.Popen(
        [str(installed.usm_bridge), "daemon"],  # the image's ENTRYPOINT and CMD
        cwd=state,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        # The daemon says when it serves /healthz; read its log until then.
        for line in process.stderr:
            lines.append(line)
            if json.loads(line).get("event") == "listening":
                break
        else:
            pytest.fail(f"the daemon exited {process.wait()} before listening: {''.join(lines)}")
        yield Daemon(process, port, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=STEP_TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _healthcheck(installed: Installed, port: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK as it is, but for the venv's python and the free port."""
    command, _ = healthcheck_command()
    listen_port = int(container_config()["daemon"]["listen"].rsplit(":", 1)[1])
    assert command[0] == "python"
    script = command[2].replace(f"127.0.0.1:{listen_port}/", f"127.0.0.1:{port}/")
    assert script != command[2]
    return _run([str(installed.python), *command[1:2], script, *command[3:]])


def test_the_healthcheck_passes_while_the_daemon_runs_and_fails_once_it_is_down(
    installed: Installed, daemon: Daemon
) -> None:
    healthy = _healthcheck(installed, daemon.port)
    assert healthy.returncode == 0, healthy.stderr
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=STEP_TIMEOUT) == 0
    down = _healthcheck(installed, daemon.port)
    assert down.returncode == 1
    assert down.stderr.startswith("unhealthy: ")
    assert "Connection refused" in down.stderr
    assert "Traceback" not in down.stderr


def test_the_mailbox_config_has_the_containers_shape() -> None:
    shape, mailbox = container_config(), tomllib.loads(MAILBOX_CONFIG.read_text("utf-8"))
    assert shape["daemon"]["log_format"] == mailbox["daemon"]["log_format"] == "json"
    assert set(shape["store"]["url"]) == set(mailbox["store"]["url"]) == {"file"}


def test_the_daemon_logs_json_lines_to_standard_error(installed: Installed, daemon: Daemon) -> None:
    assert daemon.process.stderr is not None
    for line in daemon.process.stderr:  # until the mailbox's first cycle is logged
        daemon.lines.append(line)
        if json.loads(line).get("event") == "cycle":
            break
    daemon.process.send_signal(signal.SIGTERM)
    out, err = daemon.process.communicate(timeout=STEP_TIMEOUT)
    assert out == ""
    records = [json.loads(line) for line in [*daemon.lines, *err.splitlines()] if line.strip()]
    events = [record.get("event") for record in records]
    assert events.index("listening") < events.index("daemon_start") < events.index("cycle")
    (cycle,) = [record for record in records if record.get("event") == "cycle"][:1]
    assert cycle["instance"] == "hr-mail" and cycle["ok"] is True
    assert events[-1] == "daemon_stop"


#: A request for HR, as a colleague's mail client would leave it in the shared Maildir.
_REQUEST = b"""\
From: Ada Lovelace <ada@staff.example>
To: servicedesk@hr.example
Subject: New starter on Monday needs a badge
Message-ID: <compose-workers-1@staff.example>
Date: Sun, 06 Dec 2026 09:00:00 +0000
Content-Type: text/plain; charset=utf-8

Please prepare a badge and a desk for our new starter.
"""


def _service_argv(installed: Installed, service: str) -> list[str]:
    """A compose service's command as the image runs it: the ENTRYPOINT (the installed
    ``usm-bridge``) followed by the service's ``command``."""
    command = compose()["services"][service]["command"]
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return [str(installed.usm_bridge), *command]


def _stop_as_the_engine_does(process: subprocess.Popen[str], service: str) -> str:
    """``docker stop``: SIGTERM to the container's first process only (the entrypoint, here
    ``usm-bridge``; the image has no init that would pass it on to a process group), then,
    once compose's ``stop_grace_period`` for the service is over, SIGKILL to every process
    left. Returns what the service wrote to standard error.

    Signalling the whole group instead would hit a Celery pool process mid-task before its
    parent could finish the task, a stop no container engine makes."""
    grace = compose()["services"][service].get("stop_grace_period", "10s")
    assert isinstance(grace, str) and grace.endswith("s"), grace
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=float(grace[:-1]))[1]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate(timeout=STEP_TIMEOUT)[1]


def _stored_calls(store_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM calls")).scalar_one())
    finally:
        engine.dispose()


def test_the_workers_profile_runs_migrate_scheduler_and_worker_from_the_image(
    installed: Installed, tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The compose ``workers`` profile without a container engine: ``migrate``, ``scheduler``
    and ``worker`` run with the commands compose.yaml gives them, from the image's wheels, on
    one PostgreSQL store and a Redis broker (loopback here, ``redis`` on the compose network),
    and a mail that lands in the mailbox is stored by a worker's cycle."""
    from kombu import Connection

    broker = os.environ.get("USM_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        with Connection(broker, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # whatever the transport raises: the reason is shown
        machine_cannot(f"the Redis broker at {broker} does not answer: {exc}")
    etc = tmp_path / "etc"
    config = mailbox_config(etc, fresh_postgres_url)
    queue_prefix = f"t{os.getpid()}x{_free_port()}.tool."
    with config.open("a", encoding="utf-8") as file:  # the container config's [workers] shape
        file.write(f'\n[workers]\nbroker_url = "{broker}"\nqueue_prefix = "{queue_prefix}"\n')
    env = {
        **os.environ,
        "USM_BRIDGE_CONFIG": str(config),
        "USM_BRIDGE_TEST_MAPPINGS": str(_shipped_mappings(installed)),
        "USM_BRIDGE_TEST_LISTEN": f"127.0.0.1:{_free_port()}",
    }
    state = tmp_path / "state"
    state.mkdir()
    migrate = subprocess.run(
        _service_argv(installed, "migrate"),
        cwd=state, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    worker_argv = _service_argv(installed, "worker")
    assert worker_argv[-2:] == ["--concurrency", "4"]
    started: list[subprocess.Popen[str]] = []
    try:
        for argv in (_service_argv(installed, "scheduler"), [*worker_argv[:-1], "1"]):
            started.append(
                subprocess.Popen(
                    argv,
                    cwd=state,
                    env=env,
                    text=True,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        (etc / "mail" / "new" / "1733475600.M1P1.compose").write_bytes(_REQUEST)
        deadline = time.monotonic() + 60
        while _stored_calls(fresh_postgres_url) == 0:
            for process in started:
                assert process.poll() is None, f"{process.args} exited {process.returncode}"
            assert time.monotonic() < deadline, "no worker stored the mail within 60 s"
            time.sleep(0.5)
        assert _stored_calls(fresh_postgres_url) == 1
    finally:
        logs = [
            _stop_as_the_engine_does(process, service)
            for process, service in zip(started, ("scheduler", "worker"), strict=False)
        ]
    scheduler_log, worker_log = logs
    assert started[0].returncode == 0, scheduler_log
    assert started[1].returncode == 0, worker_log
    cycles = [
        record
        for record in map(json.loads, filter(str.strip, worker_log.splitlines()))
        if record.get("event") == "cycle"
    ]
    assert cycles and all(record["instance"] == "hr-mail" for record in cycles), worker_log
    assert "Traceback" not in scheduler_log + worker_log


def test_the_workers_profile_events_service_serves_from_the_image(
    installed: Installed, tmp_path: Path
) -> None:
    """compose.yaml's ``events`` service without a container engine: ``usm-bridge serve``
    from the image's wheels, with the service's own command, answers /healthz while Redis
    does, enqueues the cycle of a signed Jira delivery, logs JSON and exits 0 on SIGTERM.
    The Jira token is left unset: serve never reads it."""
    import hashlib
    import hmac
    import urllib.request

    from kombu import Connection, Exchange, Queue

    broker = os.environ.get("USM_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        with Connection(broker, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # whatever the transport raises: the reason is shown
        machine_cannot(f"the Redis broker at {broker} does not answer: {exc}")
    secret = "compose-events-secret-0123456789"
    (tmp_path / "jira-webhook-secret").write_text(secret + "\n", encoding="utf-8")
    port = _free_port()
    prefix = f"t{os.getpid()}e{port}.tool."
    config = tmp_path / "usm-bridge.toml"
    config.write_text(
        f"""\
[store]
url = "sqlite:///never-opened.db"

[units.facilities]

[instances.facilities-jira]
unit = "facilities"
kind = "jira"
mapping = "mappings/jira-service-management.yaml"
webhook_secret = {{ file = "jira-webhook-secret" }}

[instances.facilities-jira.settings]
base_url = "https://example.atlassian.net"
email = "usm-bridge@example.com"
api_token = "${{JIRA_TOKEN_NEVER_SET}}"
projects = ["FAC"]

[daemon]
listen = "127.0.0.1:{port}"
log_format = "json"

[workers]
broker_url = "{broker}"
queue_prefix = "{prefix}"
""",
        encoding="utf-8",
    )
    env = {**os.environ, "USM_BRIDGE_CONFIG": str(config)}
    env.pop("JIRA_TOKEN_NEVER_SET", None)
    argv = _service_argv(installed, "events")
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, text=True, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    queue = f"{prefix}facilities-jira"
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, timeout=30)
        body = b'{"webhookEvent":"jira:issue_updated","issue":{"id":"1","key":"FAC-1"}}'
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature": f"sha256={digest}", "X-Atlassian-Webhook-Identifier": "1"}
        request = urllib.request.Request(
            f"{url}/events/jira/facilities-jira", body, headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
        with Connection(broker, connect_timeout=2) as conn:
            declared = conn.default_channel.queue_declare(queue, passive=True)
            assert declared.message_count == 1
    finally:
        log = _stop_as_the_engine_does(process, "events")
        with Connection(broker, connect_timeout=2) as conn:
            # Declared first, as Celery declares it: kombu's Redis transport deletes only the
            # queues it has bound.
            Queue(queue, Exchange(queue), routing_key=queue).bind(conn.default_channel).declare()
            conn.default_channel.queue_delete(queue)
    assert process.returncode == 0, log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert {"listening", "webhooks", "serve_stop"} <= {r.get("event") for r in records}, log
    assert secret not in log and "Traceback" not in log
