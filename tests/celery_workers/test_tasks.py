"""The tasks as a worker runs them, in this process (no broker needed): each takes its lock
and skips, saying who holds it, when another process runs that cycle or pushes to that tool;
the app's delivery settings; the queues; the ``[workers]`` config."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.e2e_env import Tools
from pydantic import ValidationError

from celery_workers.conftest import workers_config
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.store import Store
from usm_bridge.sync.exclusion import cycle_lock, push_lock
from usm_bridge.workers.app import make_app, safe_broker_url
from usm_bridge.workers.send_log import ENQUEUED_AT
from usm_bridge.workers.tasks import (
    CYCLE_TASK,
    PUSH_TASK,
    WorkerRuntime,
    bind_tasks,
    enqueue_cycle,
    enqueue_push,
)

BROKER = "amqp://bridge:s3cret@127.0.0.1:5672//"


def test_the_hard_time_limit_must_be_longer_than_the_soft_one() -> None:
    with pytest.raises(ValidationError, match=r"time_limit \(60 s\) must be longer"):
        BridgeConfig.model_validate({"workers": {"soft_time_limit": "1m", "time_limit": 60}})


def test_the_app_acknowledges_a_task_once_run_and_requeues_it_when_its_worker_dies() -> None:
    config = BridgeConfig.model_validate(
        {"workers": {"broker_url": BROKER, "soft_time_limit": 30, "time_limit": 45}}
    )
    conf = make_app(config).conf
    assert conf.broker_url == BROKER
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (30.0, 45.0)
    assert conf.result_backend is None and conf.task_ignore_result is True
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert "s3cret" not in safe_broker_url(config)


class _Sent:
    """Stands for the app's ``send_task``: what would go to the broker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, **options: Any) -> None:
        self.calls.append((name, options))


def test_a_cycle_goes_to_its_tools_queue_and_expires_after_its_interval(
    tools: Tools, tmp_path: Path
) -> None:
    config = workers_config(tools, tmp_path / "usm-bridge.toml", "sqlite://", "redis://x")
    sent = _Sent()
    recorded: list[tuple[str, float, float]] = []
    before = time.time()
    enqueue_cycle(sent, config, "it-snow", record=lambda *send: recorded.append(send))  # type: ignore[arg-type]
    enqueue_push(sent, config, "facilities-jira")  # type: ignore[arg-type]
    prefix = config.workers.queue_prefix
    # Each carries when it was sent: what status reads the age of a queue's oldest task from.
    stamps = [options.pop("headers")[ENQUEUED_AT] for _, options in sent.calls]
    assert all(before <= stamp <= time.time() for stamp in stamps)
    assert sent.calls == [
        (CYCLE_TASK, {"args": ("it-snow",), "queue": f"{prefix}it-snow", "expires": 1.0}),
        (PUSH_TASK, {"args": ("facilities-jira",), "queue": f"{prefix}facilities-jira",
                     "expires": 300.0}),
    ]  # fmt: skip
    assert recorded == [(f"{prefix}it-snow", stamps[0], 1.0)]  # told of the send, as sent


@pytest.fixture
def runtime(tools: Tools, store_url: str, tmp_path: Path) -> Iterator[WorkerRuntime]:
    config = workers_config(tools, tmp_path / "usm-bridge.toml", store_url, "redis://unused")
    opened = WorkerRuntime(config)
    try:
        yield opened
    finally:
        opened.close()


def test_a_cycle_whose_lock_is_held_elsewhere_skips_and_says_by_whom(
    runtime: WorkerRuntime, tools: Tools, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(runtime.config)
    bind_tasks(app, runtime)
    sent = _Sent()
    app.send_task = sent.send_task  # type: ignore[method-assign]
    tools.mail_to_hr()
    caplog.set_level(logging.INFO, logger="usm_bridge.workers")
    with Store.open(store_url) as other, other.locks.hold(cycle_lock("hr-mail")) as busy:
        assert busy is None
        app.tasks[CYCLE_TASK]("hr-mail")
        assert f"cycle of hr-mail skipped: a cycle of hr-mail runs in pid {os.getpid()}" in (
            caplog.text
        )
        with runtime.get().store.begin(readonly=True) as tx:
            assert tx.list_calls() == [] and tx.get_instance_state("hr-mail") is None
    caplog.clear()
    assert sent.calls == []  # a skipped cycle asks for no push
    app.tasks[CYCLE_TASK]("hr-mail")  # the lock is free: it runs
    assert "cycle of hr-mail: {" in caplog.text
    with runtime.get().store.begin(readonly=True) as tx:
        assert len(tx.list_calls(unit="hr")) == 1
    # It pushed nothing itself: each target it queued writes for gets a push task.
    assert tools.jira_issues() == []
    assert {name for name, _ in sent.calls} == {PUSH_TASK}
    assert {"facilities-jira", "hr-mail"} <= {options["args"][0] for _, options in sent.calls}


def test_a_push_whose_tools_lock_is_held_elsewhere_skips_and_says_by_whom(
    runtime: WorkerRuntime, tools: Tools, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(runtime.config)
    bind_tasks(app, runtime)
    app.send_task = _Sent().send_task  # type: ignore[method-assign]
    tools.mail_to_hr()
    caplog.set_level(logging.INFO, logger="usm_bridge.workers")
    with Store.open(store_url) as other, other.locks.hold(push_lock("facilities-jira")):
        # The cycle reads the mail and routes it; its push to Jira is left to the holder.
        app.tasks[CYCLE_TASK]("hr-mail")
        with runtime.get().store.begin(readonly=True) as tx:
            waiting = tx.list_outbox(status="pending")
        # Its own acknowledgement too: a cycle pushes nothing itself, its push tasks do.
        assert {"facilities-jira", "hr-mail"} <= {i.target_instance for i in waiting}
        app.tasks[PUSH_TASK]("facilities-jira")
        assert (
            f"push to facilities-jira skipped: facilities-jira is being pushed to by pid "
            f"{os.getpid()}" in caplog.text
        )
        assert tools.jira_issues() == []
    caplog.clear()
    app.tasks[PUSH_TASK]("facilities-jira")
    assert re.search(r"push to facilities-jira: [1-9]\d* pushed, 0 dead letters", caplog.text)
    with runtime.get().store.begin(readonly=True) as tx:
        assert tx.list_outbox(status="pending", instance="facilities-jira") == []
    assert len(tools.jira_issues()) == 1


def test_a_cycle_whose_pushes_cannot_be_sent_succeeds_and_leaves_them_to_the_next_cycle(
    tools: Tools, store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A broker that refuses connections (a free port nobody listens on): the cycle did its work,
    # so the task must not fail with the broker's traceback; each push it could not send is
    # named, and the writes wait in the outbox for the target's own next cycle.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    config = workers_config(tools, tmp_path / "usm-bridge.toml", store_url, refused)
    runtime = WorkerRuntime(config)
    try:
        app = make_app(config)
        app.conf.broker_connection_timeout = 1
        app.conf.task_publish_retry_policy = {"max_retries": 0}
        bind_tasks(app, runtime)
        tools.mail_to_hr()
        caplog.set_level(logging.INFO, logger="usm_bridge.workers")
        app.tasks[CYCLE_TASK]("hr-mail")  # does not raise
        failed = sorted(
            r.instance  # type: ignore[attr-defined]
            for r in caplog.records
            if getattr(r, "event", None) == "push_enqueue_failed"
        )
        # Each target of the cycle once: its own instance and the ones it queued writes for.
        assert len(failed) == len(set(failed)) and "hr-mail" in failed, caplog.text
        assert "cycle of hr-mail: {" in caplog.text
        with runtime.get().store.begin(readonly=True) as tx:
            waiting = {i.target_instance for i in tx.list_outbox(status="pending")}
        # The mail routed to Facilities and IT, and queued HR's acknowledgement: every outbox
        # holding writes is named as not sent, and no other.
        assert {"facilities-jira", "hr-mail"} <= waiting == set(failed)
    finally:
        runtime.close()


@pytest.mark.parametrize("task", [CYCLE_TASK, PUSH_TASK])
def test_a_task_for_an_instance_this_worker_does_not_know_is_dropped_naming_it(
    runtime: WorkerRuntime, task: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent before the instance was removed from the config, or by a scheduler that runs another
    # config than this worker: dropped with one clear line, not a ConfigurationError traceback.
    app = make_app(runtime.config)
    bind_tasks(app, runtime)
    app.send_task = _Sent().send_task  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="usm_bridge.workers")
    app.tasks[task]("payroll-gone")  # does not raise
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "task_dropped"]
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.instance == "payroll-gone"  # type: ignore[attr-defined]
    assert "payroll-gone is not an instance of this worker's config" in record.getMessage()
    assert "same config" in record.getMessage()
    with runtime.get().store.begin(readonly=True) as tx:
        assert tx.get_instance_state("payroll-gone") is None


def test_a_cycle_with_news_enqueues_its_event_driven_suppliers_cycle_and_one_without_does_not(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Facilities takes Jira's webhooks, so its poll is far off: HR's news (a new call) must
    # bring its cycle (its closure pass judges by HR's call), as the daemon's hint does.
    path = tmp_path / "usm-bridge.toml"
    workers_config(tools, path, store_url, "redis://unused")
    text = path.read_text(encoding="utf-8")
    section = "[instances.facilities-jira]\n"
    assert text.count(section) == 1
    path.write_text(
        text.replace(section, f'{section}webhook_secret = "a-webhook-secret-0123456789"\n'),
        encoding="utf-8",
    )
    runtime = WorkerRuntime(load_config(path))
    try:
        app = make_app(runtime.config)
        bind_tasks(app, runtime)
        sent = _Sent()
        app.send_task = sent.send_task  # type: ignore[method-assign]
        # The queue's length is the broker's to tell: none waits here.
        monkeypatch.setattr("usm_bridge.workers.backlog.waiting", lambda *_: 0)

        def cycles_sent() -> list[str]:
            return [o["args"][0] for name, o in sent.calls if name == CYCLE_TASK]

        tools.mail_to_hr()
        app.tasks[CYCLE_TASK]("hr-mail")
        assert cycles_sent() == ["facilities-jira"]  # not IT: its instance takes no events
        sent.calls.clear()
        app.tasks[CYCLE_TASK]("hr-mail")  # nothing new in the mailbox
        assert cycles_sent() == []
    finally:
        runtime.close()


def test_a_worker_process_sweeps_the_spool_files_of_processes_gone_as_it_opens_its_runtime(
    runtime: WorkerRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process killed mid-upload (the hard time limit) leaves its spool file; the
    process that replaces it removes it before its first task, and leaves a live one's."""
    import subprocess
    import sys

    from usm_bridge.attachments.streams import spool_prefix

    monkeypatch.chdir(tmp_path)  # the spool folder is relative to the state folder
    spool = tmp_path / "attachments-spool"
    spool.mkdir()
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait(10)
    stale = spool / f"{spool_prefix(gone.pid)}x1.part"
    stale.write_bytes(b"half a form")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            live = spool / f"{spool_prefix(alive.pid)}x2.part"
            live.write_bytes(b"a form on its way")
            assert stale.exists()
            runtime.get()
            assert sorted(spool.iterdir()) == [live]
        finally:
            alive.kill()
