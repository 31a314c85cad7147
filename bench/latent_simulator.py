"""A Jira or ServiceNow simulator whose every answer comes ``--latency`` seconds late.

Run by ``bench_workers.py`` in a child process: ``python bench/latent_simulator.py jira
--latency 0.1 --seed 5``. It prints one JSON line (the connector settings that reach it), then
serves until terminated. The delay is a sleep in the request's own server thread before the
simulator answers (each connection has its own thread, so waiting requests do not queue
behind each other): a tool that takes 100 ms to answer, as a remote SaaS over a WAN does, at
almost no CPU. On SIGTERM it prints ``served N`` (the requests it answered) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from usm_bridge_jira.simulator import JiraSimulator
from usm_bridge_servicenow.simulator import ServiceNowSimulator
from usm_bridge_servicenow.simulator.__main__ import seed as seed_servicenow

#: The ServiceNow simulator's password (a throwaway loopback simulator's).
PASSWORD = "bench-password"  # noqa: S105


class _Delayed:
    """An ``answer`` that sleeps first, and counts what it answered."""

    def __init__(self, answer: Callable[..., Any], latency: float) -> None:
        self._answer = answer
        self._latency = latency
        self._lock = threading.Lock()
        self.served = 0

    def __call__(self, *args: Any) -> Any:
        time.sleep(self._latency)
        try:
            return self._answer(*args)
        finally:
            with self._lock:
                self.served += 1


def _jira(seed: int) -> tuple[Any, dict[str, Any]]:
    sim = JiraSimulator("cloud")
    project = next(iter(sim.site.projects))
    if seed:
        step = timedelta(seconds=3)
        now = sim.site.clock.now().replace(microsecond=0)
        sim.site.seed(seed, project=project, comments=1, start=now - step * seed, step=step)
    settings = {
        "base_url": sim.base_url,
        "deployment": "cloud",
        **sim.credentials(),
        "projects": [project],
    }
    return sim, settings


def _servicenow(seed: int) -> tuple[Any, dict[str, Any]]:
    sim = ServiceNowSimulator(password=PASSWORD)
    seed_servicenow(sim, seed, random.Random(4))  # noqa: S311 - sample data
    return sim, {"tables": ["incident"], "username": sim.username, "password": sim.password}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=["jira", "servicenow"])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each answer")
    parser.add_argument("--seed", type=int, default=0, help="records to start with")
    args = parser.parse_args()
    sim, settings = _jira(args.seed) if args.tool == "jira" else _servicenow(args.seed)
    delayed = _Delayed(sim.answer, args.latency)
    sim.answer = delayed
    sim.start()
    if args.tool == "servicenow":  # its address is known once it serves
        settings["instance_url"] = sim.base_url
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(json.dumps(settings), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    print(f"served {delayed.served}", flush=True)
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
