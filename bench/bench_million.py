"""A million calls in the store: what an idle cycle and ``usm-bridge status`` cost (issue #17).

Run: ``.venv/bin/python bench/bench_million.py [--calls 1000000] [--url URL ...] [--profile]``

For each store (``--url``, repeatable; default: a new SQLite file in a temporary folder) the
benchmark fills it with ``--calls`` calls (:mod:`fill_store`), unless ``--reuse`` says it is
filled already, then measures:

- **an idle cycle** of one instance, ``facilities-jira`` of the sample enterprise
  (``usm_bridge/data/enterprise``), against the Jira simulator running in a child process
  (``sim_processes.JiraSimulatorProcess``, no issues) with nothing new to read:
  ``engine.run_cycle`` (the read, the closure pass over the instance's chained calls, the
  outbox drain of every target the cycle touched, the record of the run) and the daemon's
  gauges after it (``store_counts``), in this process. Reported per cycle: the HTTP requests
  the bridge sent (counted in ``requests``' adapter) and the CPU time of this process
  (``time.process_time``: on SQLite that includes the database's work, on PostgreSQL the
  server's is not in it), the first cycle apart (it builds the connector and reads the site's
  metadata), then the median of ``--cycles`` more;
- **``usm-bridge status``**: the command in a subprocess (wall time, start-up included, and its
  CPU time, which the machine's load does not inflate; the best of three), and
  ``collect_status`` in this process (wall time, median of five).

With ``--previous``, two more idle cycles run with the closure's query as it was before
revision 0010 (every chained call delivered, confirmed or closed, each loaded), side by side.

Targets (issue #17): an idle cycle costs one request and under 50 ms of CPU; status answers in
under 1 s. The load average is printed beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests.adapters
import sqlalchemy as sa
from fill_store import fill_store, validate_sample
from sim_processes import JiraSimulatorProcess as Simulator

from usm_bridge.config import load_config
from usm_bridge.runtime import open_runtime
from usm_bridge.store import SchemaPolicy, Store, Transaction, schema
from usm_bridge.sync import closure as closure_module
from usm_bridge.sync.status import collect_status, store_counts

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "usm_bridge" / "data" / "enterprise" / "usm-bridge.toml"
INSTANCE = "facilities-jira"


def environment(url: str, sim: Simulator, folder: Path) -> dict[str, str]:
    """The variables the sample enterprise's config needs, the store's URL, and the
    simulator's project (its first, ``IT``) for facilities-jira."""
    (folder / "mail" / "hr").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "USM_BRIDGE_STORE__URL": url,
        "USM_DEMO_MAIL": str(folder / "mail"),
        "USM_DEMO_SMTP_PORT": "2525",
        "USM_DEMO_JIRA_URL": sim.base_url,
        "USM_DEMO_JIRA_TOKEN": sim.token,
        "USM_BRIDGE_INSTANCES__FACILITIES_JIRA__SETTINGS__PROJECTS": '["IT"]',
        # ServiceNow is configured but never called: only facilities-jira runs cycles.
        "USM_DEMO_SNOW_URL": "http://127.0.0.1:9",
        "USM_DEMO_SNOW_USER": "admin",
        "USM_DEMO_SNOW_PASSWORD": "unused-in-this-benchmark",
    }


@contextmanager
def counted_requests() -> Iterator[list[int]]:
    """Count every HTTP request this process sends through ``requests`` (one cell)."""
    count = [0]
    original = requests.adapters.HTTPAdapter.send

    def send(self: requests.adapters.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        yield count
    finally:
        requests.adapters.HTTPAdapter.send = original  # type: ignore[method-assign]


def idle_cycles(
    env: Mapping[str, str], *, cycles: int, profile: Path | None = None
) -> dict[str, Any]:
    """The first cycle and ``cycles`` more of the instance, each with nothing new to read."""
    config = load_config(CONFIG, environ=env)
    rows: list[dict[str, Any]] = []
    with counted_requests() as sent, open_runtime(config) as runtime:
        for n in range(cycles + 1):
            before = sent[0]
            profiler = cProfile.Profile() if profile is not None and n == cycles else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            summary = runtime.engine.run_cycle(INSTANCE)
            with runtime.store.begin(readonly=True) as tx:
                store_counts(tx)  # the daemon's gauges, refreshed after every cycle
            if profiler is not None:
                profiler.disable()
            rows.append(
                {
                    "cpu_ms": (time.process_time() - cpu) * 1000,
                    "wall_ms": (time.perf_counter() - wall) * 1000,
                    "requests": sent[0] - before,
                    "read": summary.read,
                    "pushed": summary.pushed,
                    "error": summary.error,
                }
            )
            if profiler is not None and profile is not None:
                profiler.dump_stats(profile)
    steady = rows[1:]
    return {
        "first": rows[0],
        "median_cpu_ms": statistics.median(r["cpu_ms"] for r in steady),
        "median_wall_ms": statistics.median(r["wall_ms"] for r in steady),
        "max_requests": max(r["requests"] for r in steady),
        "errors": sorted({r["error"] for r in rows if r["error"]}),
        "pushed": sum(r["pushed"] for r in rows),
    }


@contextmanager
def previous_closure_query() -> Iterator[None]:
    """The closure pass with the query it had before revision 0010 (every chained call
    delivered, confirmed or closed, each then loaded; the store no longer holds it), for a
    side-by-side figure."""
    saved = closure_module.closure_candidates

    def previous(tx: Transaction, instance: str) -> list[tuple[str, str]]:
        calls, ids, links = schema.calls, schema.identities, schema.chain_links
        chained = sa.select(links.c.supplier_call_id).union(sa.select(links.c.upstream_call_id))
        suppliers = sa.select(links.c.supplier_call_id)
        query = (
            sa.select(calls.c.id, ids.c.remote_id)
            .join(ids, (ids.c.call_id == calls.c.id) & (ids.c.instance == instance))
            .where(
                (calls.c.status.in_(("fulfilled", "confirmed")) & calls.c.id.in_(chained))
                | ((calls.c.status == "closed") & calls.c.id.in_(suppliers))
            )
            .order_by(calls.c.created_at, calls.c.id)
        )
        return [(str(row.id), str(row.remote_id)) for row in tx.connection.execute(query)]

    closure_module.closure_candidates = previous
    try:
        yield
    finally:
        closure_module.closure_candidates = saved


def status_times(env: Mapping[str, str]) -> dict[str, Any]:
    """``usm-bridge status`` as a command (best of three) and in this process (median of 5)."""
    command = [str(Path(sys.executable).with_name("usm-bridge")), "status", "-c", str(CONFIG)]
    walls, cpus = [], []
    for _ in range(3):
        began = time.perf_counter()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(  # noqa: S603 - our own command, fixed arguments
            command, env=dict(env), capture_output=True, text=True, check=False
        )
        walls.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The command's own CPU time: what the load of the shared machine does not inflate.
        cpus.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"usm-bridge status failed: {done.stderr[-2000:]}")
    config = load_config(CONFIG, environ=env)
    inside = []
    with Store.open(config.store.url, schema=SchemaPolicy.READ) as store:
        for _ in range(5):
            began = time.perf_counter()
            collect_status(config, store, now=datetime.now(UTC))
            inside.append(time.perf_counter() - began)
    return {
        "command_best_s": min(walls),
        "command_all_s": walls,
        "command_cpu_best_s": min(cpus),
        "in_process_median_ms": statistics.median(inside) * 1000,
    }


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"url": url.split("@")[-1]}
    if not args.reuse:
        print(f"filling {url} with {args.calls:,} calls ({load()})", flush=True)
        summary = fill_store(url, args.calls)
        result["fill"] = {"seconds": round(summary.seconds, 1), "rows": summary.rows}
        result["validated"] = validate_sample(url)
    began = time.perf_counter()
    with Store.open(url, schema=SchemaPolicy.INSPECT) as store:
        # A reused store may be older than the code: its upgrade is measured (the indexes).
        result["upgrade"] = {
            "applied": [m.revision for m in store.upgrade()] or "none",
            "seconds": round(time.perf_counter() - began, 1),
        }
    sim = Simulator(0)
    try:
        env = environment(url, sim, folder)
        result["load_before"] = load()
        profile = folder / "idle.prof" if args.profile else None
        result["idle"] = idle_cycles(env, cycles=args.cycles, profile=profile)
        if args.previous:
            with previous_closure_query():
                result["idle_previous_closure_query"] = idle_cycles(env, cycles=1)
        result["status"] = status_times(env)
        result["load_after"] = load()
        if profile is not None:
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(30)
    finally:
        sim.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--url", action="append", help="a store URL (repeatable)")
    parser.add_argument("--reuse", action="store_true", help="the stores are filled already")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile the last idle cycle")
    parser.add_argument(
        "--previous",
        action="store_true",
        help="also an idle cycle with the closure's query before revision 0010",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="usm-million-") as tmp:
        folder = Path(tmp)
        urls = args.url or [f"sqlite:///{folder / 'million.db'}"]
        results = [measure(url, args, folder) for url in urls]
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
