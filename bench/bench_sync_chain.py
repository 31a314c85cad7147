"""The sync chain measured against the simulators: lag, two-way throughput, writes, memory.

Run: ``.venv/bin/python bench/bench_sync_chain.py [--calls 200] [--interval 1] [--changes 30]``

Facilities (Jira Service Management on the Jira simulator) and IT (requested items on the
ServiceNow simulator) are linked by a route, as in the sample enterprise (the same mappings);
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
    cycle reads those back. Rate: calls / wall time of these five cycles, and calls / CPU
    time of this process during them (less sensitive to other work on the machine than the
    wall time, though not immune). tracemalloc runs meanwhile, for (d): it slows allocation,
    so both rates are lower than without it.
(c) **HTTP writes per synced change** in (b), per phase, with what they were, beside the
    **minimum the tools require** for what the phase changed in them, and the **surplus**
    (writes beyond that minimum). The minimum is counted from each tool's state before and
    after the phase: in Jira, a new issue is one create plus one transition per workflow hop
    from its initial status, a status change one transition per hop of the shortest path in
    the site's workflow, changed fields one edit unless they can ride on the last transition
    (its screen holds them), a comment or remote link one each; in ServiceNow, a new record
    one create, a changed record one PATCH, one per journal entry when more were added. A real
    change needs exactly one write where the workflow takes it in one hop (opening a supplier
    makes two changes: the IT item, and the Facilities issue's move to waiting; a close makes
    one: Facilities resumes); reading back the bridge's own writes (echoes) and a cycle with
    nothing new need none. ``--direct-pending`` gives the Jira workflow a direct transition
    from Open to Pending, as a site's admin may (one hop instead of two). The reads of both
    tools (GETs, searches) are shown too: with the writes, the round trips that bound (b).
(d) **Peak memory**: tracemalloc's peak during (b) (simulators included: they hold every record
    in this process; so are the benchmark's own snapshots for (c), a few kB), and the
    process's maximum resident set size.

The load average is printed at the start and the end: the figures of (a) and (b) are wall
times, and other work on the machine lengthens them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
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
from typing import Any, NamedTuple

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.demo import EXAMPLE_DIR, FACILITIES_PROJECT, Tools, render_config, start_tools
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
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
        site.add_issue(
            f"{prefix} {n}: a chair for room {n % 40}",
            project=FACILITIES_PROJECT,
            description="Please.",
        ).key
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


class Phase(NamedTuple):
    name: str
    changes: int
    jira: int
    snow: int
    jira_min: int
    snow_min: int
    seconds: float
    cpu: float  # CPU seconds of this process (the bridge and both simulators)
    reads: int  # the other requests, both tools (GETs, searches sent as POST)

    @property
    def surplus(self) -> int:
        return self.jira + self.snow - self.jira_min - self.snow_min


def two_way(engine: SyncEngine, tools: Tools, calls: int) -> dict[str, Any]:
    """One full two-way cycle of ``calls`` records; rates, writes per phase, memory."""
    keys = new_requests(tools, calls, "Bench")
    before = set(it_items(tools))
    phases: list[Phase] = []
    kinds: dict[str, Counter[str]] = {}

    def phase(name: str, changes: int, work: Callable[[], object]) -> None:
        jira_was, snow_was = jira_state(tools), snow_state(tools)
        jira0, snow0 = tools.jira_writes.count, tools.snow_writes.count
        requests0 = tools.jira_writes.requests + tools.snow_writes.requests
        started, cpu_started = time.perf_counter(), time.process_time()
        work()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        jira, snow = tools.jira_writes.count - jira0, tools.snow_writes.count - snow0
        requests = tools.jira_writes.requests + tools.snow_writes.requests - requests0
        jira_min = jira_minimum(tools, jira_was, jira_state(tools))
        snow_min = snow_minimum(snow_was, snow_state(tools))
        phases.append(
            Phase(
                name, changes, jira, snow, jira_min, snow_min, seconds, cpu, requests - jira - snow
            )
        )
        made = tools.jira_writes.writes[jira0:] + tools.snow_writes.writes[snow0:]
        kinds[name] = Counter(f"{method} {_shape(path)}" for _, method, path in made)

    tracemalloc.start()
    # Two real changes a call: the IT item created, the Facilities issue made to wait.
    opened = f"Facilities reads {calls} new requests, opens IT items"
    phase(opened, 2 * calls, lambda: cycle(engine, FAC))
    phase("IT reads its new items back (echoes)", 0, lambda: cycle(engine, IT))
    phase("Facilities reads its waiting issues back (echoes)", 0, lambda: cycle(engine, FAC))
    items = {k: v for k, v in it_items(tools).items() if k not in before}
    for sys_id in items:
        tools.snow.update("sc_req_item", sys_id, {"state": "3"}, user="ian.it")
    phase(
        f"IT reads {len(items)} closes, Facilities resumes", len(items), lambda: cycle(engine, IT)
    )
    phase("Facilities reads its resumed issues back (echoes)", 0, lambda: cycle(engine, FAC))
    phase("a quiet round of both (nothing new)", 0, lambda: (cycle(engine, FAC), cycle(engine, IT)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    resumed = sum(1 for k in keys if tools.jira.site.issue(k).status_id == "3")
    # The phases' own times: the snapshots taken for (c) are left out.
    down, up = sum(p.seconds for p in phases[:3]), sum(p.seconds for p in phases[3:5])
    return {
        "calls": calls,
        "items": len(items),
        "resumed": resumed,
        "down": down,
        "up": up,
        "cpu": sum(p.cpu for p in phases[:5]),
        "phases": phases,
        "peak": peak,
        "kinds": kinds,
    }


def _shape(path: str) -> str:
    """``/rest/api/3/issue/10001/transitions`` -> ``/rest/api/3/issue/{id}/transitions``."""
    parts = path.split("/")
    # The part after "api" is the API's version (3, v2), never an id.
    return "/".join(
        "{id}" if (part.isdigit() or len(part) == 32) and parts[n - 1] != "api" else part
        for n, part in enumerate(parts)
    )


# --- what the tools require: the minimum writes of a phase -------------------------------------

#: The status every issue is created in, in the simulator's workflow (Open).
_CREATED_STATUS = "1"
#: Issue attributes a person or the bridge edits, by the field id an edit or screen names.
_JIRA_FIELDS = {
    "summary": "summary",
    "description": "description",
    "environment": "environment",
    "issuetype": "type_id",
    "priority": "priority_id",
    "labels": "labels",
    "assignee": "assignee",
}


class IssueState(NamedTuple):
    status: str
    fields: dict[str, int]  # field id -> a digest of its value
    extras: int  # comments and remote links: a write each


def _digest(value: object) -> int:
    return hash(json.dumps(value, sort_keys=True, default=str))


def jira_state(tools: Tools) -> dict[int, IssueState]:
    site = tools.jira.site
    with site.lock:
        return {
            issue.id: IssueState(
                issue.status_id,
                {
                    **{fid: _digest(getattr(issue, attr)) for fid, attr in _JIRA_FIELDS.items()},
                    **{fid: _digest(value) for fid, value in issue.custom.items()},
                },
                len(issue.comments) + len(issue.remote_links),
            )
            for issue in site.issues.values()
        }


def workflow_hops(transitions: list[Any], start: str, goal: str) -> int:
    """Transitions on the shortest path from status ``start`` to ``goal`` in the workflow."""
    frontier, seen, hops = {start}, {start}, 0
    while goal not in frontier:
        reached = {
            t.to for t in transitions for s in frontier if not t.sources or s in t.sources
        } - seen
        if not reached:
            raise SystemExit(f"the workflow has no path from status {start} to {goal}")
        frontier, seen, hops = reached, seen | reached, hops + 1
    return hops


def jira_minimum(tools: Tools, before: dict[int, IssueState], after: dict[int, IssueState]) -> int:
    """The fewest writes Jira's API takes to go from ``before`` to ``after``."""
    transitions = tools.jira.site.transitions
    total = 0
    for issue_id, now in after.items():
        was = before.get(issue_id)
        if was is None:  # a create carries the fields; the status takes the workflow's hops
            total += 1 + workflow_hops(transitions, _CREATED_STATUS, now.status) + now.extras
            continue
        moves = workflow_hops(transitions, was.status, now.status)
        names = now.fields.keys() | was.fields.keys()
        changed = {f for f in names if now.fields.get(f) != was.fields.get(f)}
        rides = moves > 0 and any(
            t.to == now.status and changed <= set(t.screen_fields) for t in transitions
        )
        total += moves + (1 if changed and not rides else 0) + now.extras - was.extras
    return total


def snow_state(tools: Tools) -> dict[str, tuple[int, int]]:
    """Requested items: sys_id -> (a digest of the record, its journal entries)."""
    with tools.snow.lock:
        journal = Counter(
            e["element_id"] for e in tools.snow.tables["sys_journal_field"].records.values()
        )
        return {
            sys_id: (_digest(record), journal[sys_id])
            for sys_id, record in tools.snow.tables["sc_req_item"].records.items()
        }


def snow_minimum(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    """The fewest writes the Table API takes: a POST or PATCH carries one journal entry."""
    total = 0
    for sys_id, (record, entries) in after.items():
        was = before.get(sys_id)
        if was is None:
            total += max(1, entries)
        else:
            total += max(1 if record != was[0] else 0, entries - was[1])
    return total


# --- (a) --------------------------------------------------------------------------------------


def lag(config: BridgeConfig, store: Store, tools: Tools, changes: int, seed: int) -> list[float]:
    """Lags of ``changes`` comments made alternately in Jira and ServiceNow, under the daemon."""
    stop = threading.Event()
    engine = build_runtime(config, store, host=PluginHost(), stop=stop).engine
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


def direct_pending(tools: Tools) -> None:
    """Give the simulated workflow a transition from Open straight to Pending."""
    transition = importlib.import_module("usm_bridge_jira.simulator.state").Transition
    site = tools.jira.site
    with site.lock:
        site.transitions.append(transition("32", "Pending", ("1",), "10002"))


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="records of the two-way cycle")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval for the lag")
    parser.add_argument("--changes", type=int, default=30, help="changes timed for the lag")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--direct-pending",
        action="store_true",
        help="a Jira workflow with a transition from Open straight to Pending",
    )
    args = parser.parse_args(argv)

    load_before = _load()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        folder = Path(tmp)
        tools = start_tools(folder / "mail", seed=False)
        try:
            if args.direct_pending:
                direct_pending(tools)
            config = config_for(tools, folder, args.interval)
            with Store.open(config.store.url) as store:
                engine = build_runtime(config, store, host=PluginHost()).engine
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
    workflow = "direct Open -> Pending" if args.direct_pending else "Open -> In Progress -> Pending"
    print(f"Jira workflow: {workflow}; load average {load_before} before, {_load()} after; "
          f"{time.monotonic() - began:.0f} s in all")  # fmt: skip
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
            f"(b) two-way cycle, {run['calls']} calls: {rate:.1f} calls/s "
            f"(down {run['down']:.2f} s: Jira -> ServiceNow; up {run['up']:.2f} s: closes -> "
            f"Jira); {run['calls'] / run['cpu']:.1f} calls per CPU second "
            f"({run['cpu']:.2f} s of CPU); {run['items']} IT items opened, "
            f"{run['resumed']} Facilities issues resumed"
        )
    print()
    print(
        f"(c) HTTP writes per synced change ({big['calls']} calls): made / the minimum the tools "
        "require for what changed in them"
    )
    print(f"    {'phase':<56} {'changes':>7} {'jira':>11} {'snow':>11} {'surplus':>7} "
          f"{'per change':>10} {'reads':>6}")  # fmt: skip
    phases: list[Phase] = big["phases"]
    for ph in phases:
        per = f"{(ph.jira + ph.snow) / ph.changes:.2f}" if ph.changes else str(ph.jira + ph.snow)
        print(
            f"    {ph.name:<56} {ph.changes:>7} {f'{ph.jira} / {ph.jira_min}':>11} "
            f"{f'{ph.snow} / {ph.snow_min}':>11} {ph.surplus:>7} {per:>10} {ph.reads:>6}"
        )
        for kind, count in sorted(big["kinds"][ph.name].items()):
            print(f"        {count:>5} x {kind}")
    surplus = sum(ph.surplus for run in (small, big) for ph in run["phases"])
    echoes = sum(
        ph.jira + ph.snow for run in (small, big) for ph in run["phases"] if not ph.changes
    )
    one_each = all(ph.jira + ph.snow == ph.changes for run in (small, big) for ph in run["phases"])
    print(
        f"    surplus over both runs: {surplus} "
        f"(target 0: {'met' if surplus == 0 else 'NOT met'}); "
        f"writes for echoes and quiet cycles: {echoes} "
        f"(target 0: {'met' if echoes == 0 else 'NOT met'}); "
        f"exactly 1 write per real change: {'yes' if one_each else 'no'}"
        + ("" if one_each or surplus else " (the workflow needs more than one hop)")
    )
    print()
    print(
        f"(d) peak traced memory: {small['peak'] / 2**20:.1f} MiB for {small['calls']} calls, "
        f"{big['peak'] / 2**20:.1f} MiB for {big['calls']} (simulators included); "
        f"max RSS {rss:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
