"""Prometheus metrics of the sync daemon, and the small HTTP endpoint serving them with /healthz.

Every metric carries an ``instance`` label (the connector instance's name from the config)::

    usm_bridge_cycles_total{instance,outcome}           cycles run, outcome "ok" or "error"
    usm_bridge_cycle_duration_seconds{instance}         histogram of cycle durations
    usm_bridge_records_read_total{instance}             raw records read from the tool
    usm_bridge_records_stored_total{instance}           records stored as a real change
    usm_bridge_records_unchanged_total{instance}        records read with nothing new in them
    usm_bridge_echoes_total{instance}                   echoes of the bridge's own writes
    usm_bridge_routed_total{instance}                   writes the router queued for other tools
    usm_bridge_pushed_total{instance}                   writes pushed into the tool
    usm_bridge_dead_letters_total{instance}             dead letters the cycles created
    usm_bridge_census_total{instance,outcome}           censuses of remote ids
    usm_bridge_last_success_timestamp_seconds{instance} end of the last successful cycle (Unix)
    usm_bridge_consecutive_failures{instance}           failed cycles since the last success
    usm_bridge_outbox_backlog{instance}                 pending writes waiting for this tool
    usm_bridge_dead_letters_open{instance}              open dead letters of this instance
    usm_bridge_cycle_running{instance}                  1 while a cycle of the instance runs
    usm_bridge_pushes_total{instance,outcome}           push batches into the tool, outcome
                                                        "ok", "failed", "stalled" or "busy"
    usm_bridge_push_duration_seconds{instance}          histogram of push batch durations
    usm_bridge_push_held_total{instance}                writes a push held back: deferred after
                                                        a failure that may pass, or waiting for
                                                        their record's create
    usm_bridge_time_limit_hits_total{instance,job,limit}  jobs ("cycle", "push") over their time
                                                        limit: "hung" (the daemon marks it), or
                                                        a worker's "soft" and "hard" limits

``usm_bridge_pushed_total`` and ``usm_bridge_dead_letters_total`` count what the push batches
did too (cycles push nothing themselves: :mod:`.push_jobs`). A Celery worker serves the same
metrics with a ``hostname`` label, its node name (:mod:`usm_bridge.workers.worker_metrics`).

The metrics live in their own registry (not prometheus_client's global one), so several
daemons in one process, as in tests, never collide.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from .summary import COUNTERS

if TYPE_CHECKING:
    from .summary import CycleSummary, PushSummary

__all__ = [
    "PUSH_OUTCOMES",
    "BridgeMetrics",
    "Exposing",
    "Health",
    "MetricsServer",
    "PushCounts",
    "exposition_of",
    "http_url",
    "is_loopback",
]

log = logging.getLogger(__name__)

#: Seconds: from a quick incremental poll to a long backfill.
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)


class BridgeMetrics:
    """The daemon's metrics; every method takes the instance name."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # The *_created series (one per counter and histogram) double the output and tell a
        # scraper nothing the process start time does not. This is prometheus_client's global
        # switch; the bridge is the only user of the library in its process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.cycles = Counter(
            "usm_bridge_cycles", "Sync cycles run.", ["instance", "outcome"], registry=r
        )
        self.duration = Histogram(
            "usm_bridge_cycle_duration_seconds",
            "Duration of sync cycles.",
            ["instance"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.counted = {
            attr: Counter(f"usm_bridge_{name}", text, ["instance"], registry=r)
            for attr, name, text in COUNTERS
        }
        self.census = Counter(
            "usm_bridge_census", "Censuses of remote ids.", ["instance", "outcome"], registry=r
        )
        self.last_success = Gauge(
            "usm_bridge_last_success_timestamp_seconds",
            "End of the last successful cycle, as a Unix timestamp.",
            ["instance"],
            registry=r,
        )
        self.failures = Gauge(
            "usm_bridge_consecutive_failures",
            "Failed cycles since the last successful one.",
            ["instance"],
            registry=r,
        )
        self.backlog = Gauge(
            "usm_bridge_outbox_backlog",
            "Pending remote writes waiting to be pushed into the instance's tool.",
            ["instance"],
            registry=r,
        )
        self.open_dead_letters = Gauge(
            "usm_bridge_dead_letters_open",
            "Open dead letters of the instance.",
            ["instance"],
            registry=r,
        )
        self.running = Gauge(
            "usm_bridge_cycle_running", "1 while a cycle of the instance runs.", ["instance"],
            registry=r,
        )  # fmt: skip
        self.pushes = Counter(
            "usm_bridge_pushes", "Push batches into the tool.", ["instance", "outcome"], registry=r
        )
        self.push_duration = Histogram(
            "usm_bridge_push_duration_seconds",
            "Duration of push batches.",
            ["instance"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.push_held = Counter(
            "usm_bridge_push_held",
            "Writes a push held back: deferred after a failure that may pass, or waiting for "
            "the create of their record.",
            ["instance"],
            registry=r,
        )
        self.time_limit_hits = Counter(
            "usm_bridge_time_limit_hits",
            "Jobs over their time limit: hung (daemon), soft or hard (worker).",
            ["instance", "job", "limit"],
            registry=r,
        )

        self.watch_wakes = Counter(
            "usm_bridge_watch_wakes",
            "Changes a watcher (IMAP IDLE, a Maildir's folders) saw, each waking the cycle.",
            ["instance"],
            registry=r,
        )
        self.watch_failures = Counter(
            "usm_bridge_watch_failures",
            "Watchers that failed and are started again after a backoff (polling goes on).",
            ["instance"],
            registry=r,
        )

    def declare_watch(self, instance: str) -> None:
        """Make the watcher series of ``instance`` exist (at 0): it has a watcher."""
        self.watch_wakes.labels(instance)
        self.watch_failures.labels(instance)

    def declare(self, instance: str) -> None:
        """Make every series of ``instance`` exist (at 0) before its first cycle."""
        for outcome in ("ok", "error"):
            self.cycles.labels(instance, outcome)
            self.census.labels(instance, outcome)
        self.duration.labels(instance)
        for counter in self.counted.values():
            counter.labels(instance)
        self.failures.labels(instance).set(0)
        self.running.labels(instance).set(0)
        for outcome in PUSH_OUTCOMES:
            self.pushes.labels(instance, outcome)
        self.push_duration.labels(instance)
        self.push_held.labels(instance)

    def cycle_started(self, instance: str) -> None:
        self.running.labels(instance).set(1)

    def cycle_skipped(self, instance: str) -> None:
        """A cycle that did not run: the instance's cycle runs in another process."""
        self.running.labels(instance).set(0)
        self.cycles.labels(instance, "skipped").inc()

    def cycle_finished(
        self,
        instance: str,
        *,
        ok: bool,
        duration: float,
        failures: int | None,
        summary: CycleSummary | Mapping[str, int] | None,
        finished_at: float,
    ) -> None:
        """Record one cycle; ``summary`` (or its counters) is ``None`` when the engine raised
        instead; ``failures`` ``None``: not known here (a worker: the store keeps them)."""
        self.running.labels(instance).set(0)
        self.cycles.labels(instance, "ok" if ok else "error").inc()
        self.duration.labels(instance).observe(max(duration, 0.0))
        if failures is not None:
            self.failures.labels(instance).set(failures)
        if ok:
            self.last_success.labels(instance).set(finished_at)
        if summary is not None:
            counts = summary if isinstance(summary, Mapping) else summary.counters()
            for attr, counter in self.counted.items():
                counter.labels(instance).inc(max(counts.get(attr, 0), 0))

    def push_finished(self, instance: str, done: PushCounts) -> None:
        """Record one push batch into ``instance``'s tool."""
        self.pushes.labels(instance, done.outcome).inc()
        self.push_duration.labels(instance).observe(max(done.duration, 0.0))
        self.counted["pushed"].labels(instance).inc(max(done.pushed, 0))
        self.counted["dead_letters"].labels(instance).inc(max(done.dead_letters, 0))
        self.push_held.labels(instance).inc(max(done.held, 0))

    def time_limit_hit(self, instance: str, *, job: str, limit: str) -> None:
        """A ``job`` ("cycle", "push") of ``instance`` went over its ``limit``: "hung" (the
        daemon's time limit), "soft" or "hard" (a worker's)."""
        self.time_limit_hits.labels(instance, job, limit).inc()

    def census_done(self, instance: str, *, ok: bool) -> None:
        self.census.labels(instance, "ok" if ok else "error").inc()

    def set_store_gauges(self, instance: str, *, backlog: int, open_dead_letters: int) -> None:
        self.backlog.labels(instance).set(backlog)
        self.open_dead_letters.labels(instance).set(open_dead_letters)

    def set_last_success(self, instance: str, timestamp: float) -> None:
        self.last_success.labels(instance).set(timestamp)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asked for: (body, content type)."""
        return exposition_of(self.registry, accept)


def exposition_of(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """``registry``'s metrics in the format an ``Accept`` header asks for: (body, content
    type); Prometheus' text format when it asks for none."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class Exposing(Protocol):
    """What /metrics serves: :class:`BridgeMetrics`, or a worker's (labelled) view of them."""

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]: ...


#: The outcomes of a push batch: it went through, failed, stalled (the tool did not answer),
#: or did nothing because another process pushes to the tool.
PUSH_OUTCOMES = ("ok", "failed", "stalled", "busy")


@dataclass(frozen=True)
class PushCounts:
    """What one push batch did, as the metrics count it."""

    outcome: str
    duration: float
    pushed: int = 0
    held: int = 0
    dead_letters: int = 0

    @classmethod
    def of(
        cls, summary: PushSummary | None, *, duration: float, error: str | None = None
    ) -> PushCounts:
        """From a push's summary; ``None`` (it raised, ``error`` says what): failed."""
        if summary is None:
            return cls("failed", duration)
        if summary.error is not None or error is not None:
            outcome = "failed"
        elif summary.stalled is not None:
            outcome = "stalled"
        elif summary.busy is not None:
            outcome = "busy"
        else:
            outcome = "ok"
        return cls(
            outcome,
            duration,
            pushed=summary.pushed,
            held=summary.retried + summary.waiting,
            dead_letters=summary.dead_letters,
        )


@dataclass(frozen=True)
class Health:
    """The answer of /healthz: 200 when ``ok``, else 503; ``detail`` is the JSON body."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "usm-bridge"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.server.metrics.exposition(self.headers.get("Accept"))
            self._send(HTTPStatus.OK, body, content_type)
        elif path in ("/healthz", "/health"):
            try:
                health = self.server.health()
            except Exception:  # a bug in a health check must still answer, and say so
                log.exception("the health check failed")
                health = Health(False, {"status": "error", "error": "the health check failed"})
            status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
            body = json.dumps(health.detail, indent=2, default=str).encode() + b"\n"
            self._send(status, body, "application/json")
        elif path == "/":
            body = b"usm-bridge: /healthz, /metrics\n"
            self._send(HTTPStatus.OK, body, "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # probes sometimes use HEAD
        self.do_GET()

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would drown the cycle lines: DEBUG only.
        log.debug("http %s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Exposing,
        health: Callable[[], Health],
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.health = health


class MetricsServer:
    """/metrics and /healthz over HTTP on ``host:port`` (port 0: a free one), in a thread.

    Use as a context manager, or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self, host: str, port: int, metrics: Exposing, health: Callable[[], Health]
    ) -> None:
        self._server = _Server((host, port), metrics, health)
        self._thread: threading.Thread | None = None
        if not is_loopback(host):
            log.warning(
                "serving /metrics and /healthz on %s, which is not a loopback address", host
            )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        return http_url(*self.address)

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="usm-bridge-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def http_url(host: str, port: int) -> str:
    """The base URL of a server bound to ``host:port`` (an IPv6 address in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
