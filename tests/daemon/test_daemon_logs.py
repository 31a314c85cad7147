"""Structured logs: one line per cycle with its counters; JSON lines parse; no secrets."""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import warnings
from importlib.metadata import EntryPoint

import pytest
from daemon_fakes import START, FakeClock, FakeEngine, make_config, simulate

from usm_bridge.sync.logs import JsonFormatter, TextFormatter, log_to_stream

SECRET = "hunter2-very-secret"


def run_logged(fmt: str) -> list[str]:
    stream = io.StringIO()
    clock = FakeClock(horizon=START + 200)
    engine = FakeEngine(clock, failing={"bad"})
    config = make_config({"good": 60.0, "bad": 60.0})
    config.instances["good"].settings["password"] = SECRET
    with log_to_stream(fmt, stream=stream):  # type: ignore[arg-type]
        simulate(config, engine, seed=2)
    return stream.getvalue().splitlines()


def test_json_logs_are_one_object_per_line_with_the_counters() -> None:
    lines = run_logged("json")
    entries = [json.loads(line) for line in lines]  # every line parses
    cycles = [e for e in entries if e.get("event") == "cycle"]
    good = [e for e in cycles if e["instance"] == "good"]
    assert len(good) >= 3
    first = good[0]
    assert first["ok"] is True and first["level"] == "info"
    for key in ("read", "stored", "unchanged", "echoes", "routed", "pushed", "dead_letters"):
        assert isinstance(first[key], int), key
    assert (first["read"], first["stored"], first["pushed"]) == (3, 2, 1)
    assert {"ts", "logger", "msg", "duration_s", "next_in_s"} <= set(first)
    bad = next(e for e in cycles if e["instance"] == "bad")
    assert bad["ok"] is False and bad["level"] == "warning"
    assert bad["error"] == "remote said 503" and bad["consecutive_failures"] == 1
    assert {e.get("event") for e in entries} >= {"daemon_start", "cycle", "daemon_stop"}
    assert SECRET not in "\n".join(lines)


def test_text_logs_say_it_in_one_line_per_cycle() -> None:
    lines = run_logged("text")
    good = [line for line in lines if "cycle good ok" in line]
    assert good and "read=3 stored=2" in good[0] and "next in" in good[0]
    bad = [line for line in lines if "cycle bad failed" in line]
    assert bad and "remote said 503" in bad[0] and "retry in" in bad[0]
    assert all(line[:4].isdigit() and line[19:20] == "." for line in lines)
    assert SECRET not in "\n".join(lines)


def test_formatters_keep_exceptions_and_odd_extras() -> None:
    logger = logging.getLogger("usm_bridge.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "usm_bridge.test", logging.ERROR, __file__, 1, "failed %s", ("x",),
            exc_info=__import__("sys").exc_info(), extra={"when": START, "obj": object()},
        )  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "failed x" and "ValueError: boom" in entry["exc"]
    assert entry["when"] == START and entry["obj"].startswith("<object")
    assert "ValueError: boom" in TextFormatter().format(record)


def test_log_to_stream_is_undone_afterwards() -> None:
    root = logging.getLogger()
    before = (root.handlers[:], logging.getLogger("usm_bridge").level)
    with log_to_stream("json", stream=io.StringIO()):
        assert len(root.handlers) == 1
    assert (root.handlers, logging.getLogger("usm_bridge").level) == before


def test_a_libraries_warning_is_one_json_line_too() -> None:
    # Celery warns with warnings.warn (a worker run as root, say): a multi-line bare text among
    # JSON lines would break a log shipper that reads one object per line.
    stream = io.StringIO()
    with log_to_stream("json", stream=stream), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("running as root\nis not recommended", UserWarning, stacklevel=1)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert "running as root\nis not recommended" in entry["msg"]
    # Undone afterwards: outside the block a warning is Python's again, not a log record.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("after", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after"]
    assert "after" not in stream.getvalue()


def test_a_plugin_imported_after_logging_is_set_up_logs_its_info_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon sets logging up, then loads the plugins: their loggers did not exist yet.
    found = [EntryPoint(name="late", value="usm_bridge_late.plugin", group="usm_bridge")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: found)
    assert "usm_bridge_late" not in logging.root.manager.loggerDict
    stream = io.StringIO()
    with log_to_stream("text", stream=stream):
        logging.getLogger("usm_bridge_late.idle").info("idling on the inbox")
    assert "INFO usm_bridge_late.idle: idling on the inbox" in stream.getvalue()
    assert logging.getLogger("usm_bridge_late").level == logging.NOTSET  # undone afterwards
