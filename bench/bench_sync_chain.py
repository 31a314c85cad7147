"""The sync chain measured against the simulators: lag, two-way throughput, writes, memory.

Run: ``.venv/bin/python bench/bench_sync_chain.py [--calls 200] [--interval 1] [--changes 30]``

Facilities (Jira Service Management on the Jira simulator) and IT (requested items on the
ServiceNow simulator) are linked by a route, as in ``examples/enterprise`` (the same mappings);
HR's mailbox is configured too (an idle Maildir). Both simulators run in this process, behind a
counter of the write requests they serve (anything but GET and the search sent as POST).

(a) **Lag** under the daemon's schedule: the daemon (``usm_bridge.sync.daemon.Daemon``, every
    instance every ``--interval`` seconds with its ±10 % jitter) runs in a thread while a person
    comments alternately in Jira (the mirror is a journal entry on the linked ServiceNow item)
    and in ServiceNow (the mirror is a Jira comment), at random moments; the lag is the time
    from the person's change to the mirror written in the other tool, polled every 10 ms.
    Target: p95 below the poll interval plus 1 s.
(b) **Records per second of a full two-way cycle**, engine cycles back to back (no sleeping):
    ``--calls`` Facilities requests are made in Jira; a Facilities cycle opens as many IT items
    in ServiceNow (and makes the Facilities issues wait); an IT cycle reads them back; IT
    closes every item; an IT cycle carries the closes up (Facilities resumes); a Facilities
    cycle reads those back. Rate: calls / wall time of the four cycles.
(c) **HTTP writes per synced change** in (b), per phase, with what they were: a real change
    needs exactly one write (opening a supplier makes two: the IT item, and the Facilities
    issue's move to waiting; a close makes one: Facilities resumes); reading back the bridge's
    own writes (echoes) and a cycle with nothing new need none.
(d) **Peak memory**: tracemalloc's peak during (b) (simulators included: they hold every record
    in this process), and the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.demo import EXAMPLE_DIR, Tools, render_config, start_tools
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.engine import CycleSummary, SyncEngine

FAC, IT = "facilities-jira", "it-requests"


def config_for(tools: Tools, folder: Path, interval: float) -> BridgeConfig:
    """The example enterprise, with every instance at ``interval``, without the incident
    instance and with a route Facilities -> IT for every service request (no label needed)."""
    text = render_config(
        (EXAMPLE_DIR / "usm-bridge.toml").read_text(encoding="utf-8"),
        tools.variables(),
        mappings_base=EXAMPLE_DIR,
        secrets_dir=folder / "secrets",
        interval=interval,
    )
    text = text.replace('"attributes.jira.labels" = "needs-it"', "")
    text = text.replace(
        'when = { call_type = ["service_request"],  }', 'when = { call_type = ["service_request"] }'
    )
    start = text.index("[instances.it-incidents]")
    end = text.index("[daemon]")
    text = text[:start] + text[end:]
    path = folder / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def new_requests(tools: Tools, count: int, prefix: str) -> list[str]:
    site = tools.jira.site
    return [
        site.add_issue(f"{prefix} {n}: a chair for room {n % 40}", description="Please.").key
        for n in range(count)
    ]


def cycle(engine: SyncEngine, instance: str) -> CycleSummary:
    summary = engine.run_cycle(instance)
    if summary.error:
        raise SystemExit(f"cycle of {instance} failed: {summary.error}")
    return summary


def it_items(tools: Tools) -> dict[str, dict[str, str]]:
    with tools.snow.lock:
        return {k: dict(v) for k, v in tools.snow.tables["sc_req_item"].records.items()}


# --- (b) and (c) --------------------------------------------------------------------------------


def two_way(engine: SyncEngine, tools: Tools, calls: int) -> dict[str, Any]:
    """One full two-way cycle of ``calls`` records; rates, writes per phase, memory."""
    keys = new_requests(tools, calls, "Bench")
    before = set(it_items(tools))
    phases: list[tuple[str, int, int, int, float]] = []  # name, changes, jira, snow, seconds
    kinds: dict[str, Counter[str]] = {}

    def phase(name: str, changes: int, work: Callable[[], object]) -> None:
        jira0, snow0 = tools.jira_writes.count, tools.snow_writes.count
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        jira, snow = tools.jira_writes.count - jira0, tools.snow_writes.count - snow0
        phases.append((name, changes, jira, snow, seconds))
        made = tools.jira_writes.writes[jira0:] + tools.snow_writes.writes[snow0:]
        kinds[name] = Counter(f"{method} {_shape(path)}" for _, method, path in made)

    tracemalloc.start()
    begun = time.perf_counter()
    # Two real changes a call: the IT item created, the Facilities issue made to wait.
    opened = f"Facilities reads {calls} new requests, opens IT items"
    phase(opened, 2 * calls, lambda: cycle(engine, FAC))
    phase("IT reads its new items back (echoes)", 0, lambda: cycle(engine, IT))
    phase("Facilities reads its waiting issues back (echoes)", 0, lambda: cycle(engine, FAC))
    items = {k: v for k, v in it_items(tools).items() if k not in before}
    down = time.perf_counter() - begun
    for sys_id in items:
        tools.snow.update("sc_req_item", sys_id, {"state": "3"}, user="ian.it")
    begun = time.perf_counter()
    phase(
        f"IT reads {len(items)} closes, Facilities resumes", len(items), lambda: cycle(engine, IT)
    )
    phase("Facilities reads its resumed issues back (echoes)", 0, lambda: cycle(engine, FAC))
    up = time.perf_counter() - begun
    phase("a quiet round of both (nothing new)", 0, lambda: (cycle(engine, FAC), cycle(engine, IT)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    resumed = sum(1 for k in keys if tools.jira.site.issue(k).status_id == "3")
    return {
        "calls": calls,
        "items": len(items),
        "resumed": resumed,
        "down": down,
        "up": up,
        "phases": phases,
        "peak": peak,
        "kinds": kinds,
    }


def _shape(path: str) -> str:
    """``/rest/api/3/issue/10001/transitions`` -> ``/rest/api/3/issue/{id}/transitions``."""
    return "/".join(
        "{id}" if part.isdigit() or len(part) == 32 else part for part in path.split("/")
    )


# --- (a) --------------------------------------------------------------------------------------


def lag(config: BridgeConfig, store: Store, tools: Tools, changes: int, seed: int) -> list[float]:
    """Lags of ``changes`` comments made alternately in Jira and ServiceNow, under the daemon."""
    stop = threading.Event()
    engine = SyncEngine(config, store, PluginHost(), stop=stop)
    adf_text = __import__("usm_bridge_jira.simulator.state", fromlist=["adf_text"]).adf_text
    try:
        (key,) = new_requests(tools, 1, "Lag")
        cycle(engine, FAC)
        cycle(engine, IT)
        issue = tools.jira.site.issue(key)
        with store.begin(readonly=True) as tx:
            fac = tx.find_call(FAC, str(issue.id))
            assert fac is not None
            supplier = tx.get_call(fac.call.chain.suppliers[0])
            assert supplier is not None and supplier.call.source is not None
            sys_id = supplier.call.source.remote_id
        daemon = Daemon(config, engine, stop=stop, rng=random.Random(seed))  # noqa: S311 - jitter
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        rng = random.Random(seed)  # noqa: S311 - when people act, not secrets
        lags: list[float] = []
        try:
            time.sleep(config.instances[FAC].interval * 1.5)
            for n in range(changes):
                time.sleep(rng.uniform(0.2, 1.5) * config.instances[FAC].interval)
                text = f"lag probe {n} {rng.random():.6f}"
                if n % 2 == 0:
                    with tools.jira.site.lock:
                        tools.jira.site.add_comment(issue, text)

                    def mirrored(text: str = text) -> bool:
                        return any(text in e["value"] for e in tools.snow.journal(sys_id))

                else:
                    tools.snow.update("sc_req_item", sys_id, {"comments": text}, user="ian.it")

                    def mirrored(text: str = text) -> bool:
                        with tools.jira.site.lock:
                            return any(text in adf_text(c.body) for c in issue.comments)

                made = time.monotonic()
                while not mirrored():
                    if time.monotonic() - made > 30:
                        raise SystemExit(f"change {n} was not mirrored within 30 s")
                    time.sleep(0.01)
                lags.append(time.monotonic() - made)
        finally:
            daemon.stop()
            thread.join(timeout=30)
        return lags
    finally:
        engine.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="records of the two-way cycle")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval for the lag")
    parser.add_argument("--changes", type=int, default=30, help="changes timed for the lag")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        folder = Path(tmp)
        tools = start_tools(folder / "mail", seed=False)
        try:
            config = config_for(tools, folder, args.interval)
            with Store.open(config.store.url) as store:
                engine = SyncEngine(config, store, PluginHost())
                try:
                    small = two_way(engine, tools, max(args.calls // 4, 10))
                    big = two_way(engine, tools, args.calls)
                finally:
                    engine.close()
                lags = lag(config, store, tools, args.changes, args.seed)
        finally:
            tools.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"Sync chain benchmark (Facilities on Jira <-> IT on ServiceNow, SQLite, {sys.platform})")
    print()
    p50, p95 = statistics.median(lags), percentile(lags, 0.95)
    target = args.interval + 1.0
    print(
        f"(a) lag, {len(lags)} changes under the daemon, "
        f"interval {args.interval:g} s (+-10 % jitter)"
    )
    print(f"    p50 {p50:.2f} s   p95 {p95:.2f} s   max {max(lags):.2f} s   "
          f"target p95 < {target:g} s: {'met' if p95 < target else 'NOT met'}")  # fmt: skip
    print()
    for run in (small, big):
        rate = run["calls"] / (run["down"] + run["up"])
        print(
            f"(b) two-way cycle, {run['calls']} calls: {rate:.0f} calls/s "
            f"(down {run['down']:.2f} s: Jira -> ServiceNow; up {run['up']:.2f} s: closes -> "
            f"Jira); {run['items']} IT items opened, {run['resumed']} Facilities issues resumed"
        )
    print()
    print(f"(c) HTTP writes per synced change ({big['calls']} calls)")
    header = f"    {'phase':<58} {'changes':>8} {'jira':>6} {'snow':>6} {'per change':>11}"
    print(header)
    for name, changes, jira, snow, _seconds in big["phases"]:
        per = (
            f"{(jira + snow) / changes:.2f}"
            if changes
            else ("0 (ok)" if jira + snow == 0 else "echo writes!")
        )
        print(f"    {name:<58} {changes:>8} {jira:>6} {snow:>6} {per:>11}")
        for kind, count in sorted(big["kinds"][name].items()):
            print(f"        {count:>5} x {kind}")
    print()
    print(
        f"(d) peak traced memory: {small['peak'] / 2**20:.1f} MiB for {small['calls']} calls, "
        f"{big['peak'] / 2**20:.1f} MiB for {big['calls']} (simulators included); "
        f"max RSS {rss:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
