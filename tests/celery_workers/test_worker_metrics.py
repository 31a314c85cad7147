"""A worker's /metrics, in this process (no broker): what its pool processes report reaches
the main process's metrics over the socket pair, forked processes included, each sample
labelled with the worker's hostname; a report that is not understood is dropped, not fatal;
a push batch is counted by outcome as the daemon counts it."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from usm_bridge.sync.metrics import PushCounts
from usm_bridge.sync.summary import PushSummary
from usm_bridge.workers.worker_metrics import WorkerMetrics

HOST = "usm-bridge-42@host-a"


def _samples(metrics: WorkerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.exposition()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _value(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return _samples(metrics).get((name, frozenset({**labels, "hostname": HOST}.items())))


def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the report never arrived"
        time.sleep(0.01)


@pytest.fixture
def metrics() -> WorkerMetrics:
    started = WorkerMetrics(["it-snow", "hr-mail"], HOST)
    started.start()
    yield started  # type: ignore[misc]
    started.close()


def test_reports_from_a_forked_pool_process_are_counted_by_the_main_process(
    metrics: WorkerMetrics,
) -> None:
    # Declared at 0 from the start, every sample labelled with the worker's hostname.
    assert _value(metrics, "usm_bridge_cycles_total", instance="it-snow", outcome="ok") == 0
    assert all(dict(labels)["hostname"] == HOST for _, labels in _samples(metrics))
    # Not known to one worker (the store keeps them): not shown as a 0.
    assert not [name for name, _ in _samples(metrics) if name == "usm_bridge_consecutive_failures"]

    context = multiprocessing.get_context("fork")  # as Celery's prefork pool makes them
    child = context.Process(
        target=metrics.cycle_finished,
        args=("it-snow",),
        kwargs={"ok": True, "duration": 1.5, "counters": {"read": 3, "stored": 2},
                "finished_at": 1_800_000_000.0},
    )  # fmt: skip
    child.start()
    child.join(10)
    assert child.exitcode == 0
    metrics.cycle_finished("it-snow", ok=False, duration=0.2, counters=None, finished_at=1.0)
    metrics.cycle_skipped("hr-mail")
    _until(lambda: _value(metrics, "usm_bridge_cycles_total", instance="hr-mail",
                          outcome="skipped") == 1)  # fmt: skip
    assert _value(metrics, "usm_bridge_cycles_total", instance="it-snow", outcome="ok") == 1
    assert _value(metrics, "usm_bridge_cycles_total", instance="it-snow", outcome="error") == 1
    assert _value(metrics, "usm_bridge_records_read_total", instance="it-snow") == 3
    assert _value(metrics, "usm_bridge_records_stored_total", instance="it-snow") == 2
    assert _value(metrics, "usm_bridge_cycle_duration_seconds_count", instance="it-snow") == 2
    assert _value(metrics, "usm_bridge_cycle_duration_seconds_sum", instance="it-snow") == 1.7
    assert (
        _value(metrics, "usm_bridge_last_success_timestamp_seconds", instance="it-snow")
        == 1_800_000_000.0
    )


def test_push_batches_and_time_limits_are_counted_by_outcome(metrics: WorkerMetrics) -> None:
    metrics.push_finished("it-snow", PushCounts("ok", 0.5, pushed=2, held=1, dead_letters=1))
    metrics.push_finished("it-snow", PushCounts("stalled", 9.0, held=4))
    metrics.push_finished("hr-mail", PushCounts("busy", 0.01))
    metrics.time_limit_hit("it-snow", job="cycle", limit="soft")
    _until(lambda: _value(metrics, "usm_bridge_pushes_total", instance="hr-mail",
                          outcome="busy") == 1)  # fmt: skip
    assert _value(metrics, "usm_bridge_pushes_total", instance="it-snow", outcome="ok") == 1
    assert _value(metrics, "usm_bridge_pushes_total", instance="it-snow", outcome="stalled") == 1
    assert _value(metrics, "usm_bridge_pushes_total", instance="it-snow", outcome="failed") == 0
    assert _value(metrics, "usm_bridge_pushed_total", instance="it-snow") == 2
    assert _value(metrics, "usm_bridge_push_held_total", instance="it-snow") == 5
    assert _value(metrics, "usm_bridge_dead_letters_total", instance="it-snow") == 1
    assert (
        _value(metrics, "usm_bridge_time_limit_hits_total", instance="it-snow", job="cycle",
               limit="soft") == 1
    )  # fmt: skip


def test_a_report_not_understood_is_logged_and_the_next_is_still_counted(
    metrics: WorkerMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.report({"event": "cycle", "instance": "it-snow"})  # no outcome
    metrics.report({"event": "reboot", "instance": "it-snow"})
    metrics._outbox.send(b"\xff not json")
    metrics.cycle_skipped("it-snow")
    _until(lambda: _value(metrics, "usm_bridge_cycles_total", instance="it-snow",
                          outcome="skipped") == 1)  # fmt: skip
    assert _value(metrics, "usm_bridge_cycles_total", instance="it-snow", outcome="ok") == 0
    assert "a metrics report was not understood: 'ok'" in caplog.text
    assert "a metrics report was not understood: unknown event 'reboot'" in caplog.text
    assert "a metrics report was not JSON" in caplog.text


def test_a_push_summary_is_counted_as_the_outcome_it_had() -> None:
    now = datetime.now(UTC)

    def summary(**fields: object) -> PushSummary:
        return PushSummary(target="t", started=now, finished=now, **fields)  # type: ignore[arg-type]

    assert PushCounts.of(summary(pushed=3, retried=1, waiting=2, dead_letters=1), duration=1) == (
        PushCounts("ok", 1, pushed=3, held=3, dead_letters=1)
    )
    assert PushCounts.of(summary(stalled="read timeout"), duration=1).outcome == "stalled"
    assert PushCounts.of(summary(busy="pid 7"), duration=1).outcome == "busy"
    assert PushCounts.of(summary(error="store down"), duration=1).outcome == "failed"
    assert PushCounts.of(None, duration=1, error="RuntimeError: bug").outcome == "failed"


def test_a_task_over_its_soft_time_limit_is_counted_by_the_request_the_main_process_holds(
    metrics: WorkerMetrics,
) -> None:
    from usm_bridge.workers.tasks import CYCLE_TASK, _timed_request

    timed = _timed_request(metrics)
    # Celery builds it from the message; only what on_timeout reads is set here.
    request = timed.__new__(timed)
    request.name, request.id, request._args = CYCLE_TASK, "task-1", ["it-snow"]
    request.on_timeout(True, 600.0)  # what Celery's main process calls at the soft limit
    assert (
        _value(metrics, "usm_bridge_time_limit_hits_total", instance="it-snow", job="cycle",
               limit="soft") == 1
    )  # fmt: skip
