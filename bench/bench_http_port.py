"""The daemon's HTTP port, before and after issue #19: the CPU it costs idle, per /metrics
scrape, and per signed webhook delivery.

Run: ``.venv/bin/python bench/bench_http_port.py [--idle 10] [--requests 300] [--rounds 3]``

"before" is :class:`usm_bridge.sync.metrics.MetricsServer` (``http.server`` in a thread), what
the daemon served on ``--listen`` until now; "after" is the Starlette app under uvicorn in a
thread (:mod:`usm_bridge.events`), what it serves now. Both hold the metrics of 10 declared
instances. The two alternate, round by round, in one process; the CPU is the process's
(``getrusage``: user + system, client included, which is the same ``urllib`` on both sides),
so the figures compare, they do not isolate the server.
"""

from __future__ import annotations

import argparse
import resource
import time
import urllib.request
from typing import Any

from usm_bridge.events.app import build_app
from usm_bridge.events.counts import EventCounts
from usm_bridge.events.kinds import JIRA
from usm_bridge.events.receiver import EventReceiver
from usm_bridge.events.server import AppServer
from usm_bridge.events.signature import sign
from usm_bridge.sync.metrics import BridgeMetrics, Health, MetricsServer

SECRET = "bench-secret"  # noqa: S105 - the bench signs its own deliveries
BODY = b'{"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"IT-1"}}' * 20


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(kind: str, idle: float, requests: int) -> dict[str, float]:
    metrics = BridgeMetrics()
    for n in range(10):
        metrics.declare(f"i{n}")

    def health() -> Health:
        return Health(True, {"status": "ok"})

    server: Any
    if kind == "before":
        server = MetricsServer("127.0.0.1", 0, metrics, health)
    else:
        counts = EventCounts(metrics.registry, ["i0"])
        jira = EventReceiver(JIRA, {"i0": SECRET}, lambda _name: None, counts, max_body=1 << 20)
        server = AppServer(build_app(metrics, health, [jira]), "127.0.0.1", 0)
    found: dict[str, float] = {}
    with server:
        start = cpu()
        time.sleep(idle)
        found["idle_cpu_ms_per_s"] = (cpu() - start) / idle * 1000
        start = cpu()
        for _ in range(requests):
            # S310 allowed below and after: the server's own loopback http:// URL.
            with urllib.request.urlopen(server.url + "/metrics") as answer:  # noqa: S310
                answer.read()
        found["scrape_cpu_ms"] = (cpu() - start) / requests * 1000
        if kind == "after":
            start = cpu()
            for n in range(requests):
                headers = {
                    "X-Hub-Signature": sign(SECRET, BODY),
                    "X-Atlassian-Webhook-Identifier": f"d-{n}",
                }
                url = server.url + "/events/jira/i0"
                request = urllib.request.Request(url, BODY, headers, method="POST")  # noqa: S310
                with urllib.request.urlopen(request) as answer:  # noqa: S310
                    assert answer.status == 202
            found["delivery_cpu_ms"] = (cpu() - start) / requests * 1000
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        for kind in ("before", "after"):
            found = measure(kind, args.idle, args.requests)
            text = ", ".join(f"{key} {value:.2f}" for key, value in found.items())
            print(f"round {round_} {kind:6s}: {text}", flush=True)


if __name__ == "__main__":
    main()
