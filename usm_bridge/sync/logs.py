"""Logs of the sync daemon: one line per event, as text for people or JSON for collectors.

A cycle is logged as one line carrying its counters. In JSON each line is one object::

    {"ts": "2026-03-01T12:00:00.123Z", "level": "info", "logger": "usm_bridge.sync.daemon",
     "msg": "cycle hr-mail ok in 0.84s: read=3 stored=2 ...", "event": "cycle",
     "instance": "hr-mail", "ok": true, "duration_s": 0.84, "read": 3, "stored": 2, ...}

Fields come from ``extra=`` of the logging call; only what the bridge passes there is written,
never the config's settings, so secrets cannot reach a log through this formatter. Messages of
remote errors are already redacted where they are made (:mod:`usm_bridge.http`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "log_to_stream"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's extras, and exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # default=str: a datetime or a Path in extras must never break a log line.
        return json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``2026-03-01T12:00:00.123Z INFO usm_bridge.sync.daemon: message`` (UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _plugin_packages() -> list[str]:
    """The top-level packages of the installed plugins (entry point group ``usm_bridge``).

    Plugins are imported after logging is set up (``daemon`` loads them as it opens the
    runtime), so their loggers may not exist yet when it is: found by the loggers that did,
    a connector's INFO lines (the e-mail connector's "idling") were dropped.
    """
    from importlib.metadata import entry_points

    try:
        found = entry_points(group="usm_bridge")
    except Exception:  # a broken distribution's metadata must not stop logging
        return []
    return sorted({ep.module.split(".", 1)[0] for ep in found} - {"usm_bridge"})


@contextmanager
def log_to_stream(
    fmt: LogFormat = "text",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> Iterator[logging.Handler]:
    """Write every log line to ``stream`` (standard error by default) in ``fmt`` while the block
    runs, the bridge's own (``usm_bridge``, connectors' ``usm_bridge_*``) from ``level`` up;
    undone afterwards.

    The handler replaces the root logger's, so libraries' warnings come out in the same format
    and nothing is printed twice; the root's level is left alone (``--debug`` lowers it).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    old_handlers = root.handlers[:]
    names = ["usm_bridge", *_plugin_packages()] + [
        # Connector distributions log under their own package names (usm_bridge_jira, ...).
        name
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("usm_bridge_") and "." not in name
    ]
    saved = [(logger, logger.level) for logger in map(logging.getLogger, names)]
    root.handlers = [handler]
    for logger, _ in saved:
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    # Python warnings (a library's SecurityWarning, a DeprecationWarning) go through the same
    # handler, so that with ``json`` every line on the stream is one JSON object a log
    # shipper can read, not a bare multi-line warning text among them.
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.handlers = old_handlers
        for logger, old_level in saved:
            logger.setLevel(old_level)
        handler.close()
