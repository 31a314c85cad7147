"""Micro-benchmark of the state store's hot path: storing calls, nothing else.

Run: ``.venv/bin/python bench/bench_store_upsert.py [--calls 5000] [--url URL] [--profile]``

No connector, no mapping: calls shaped like a mapped Jira issue (a description, comments,
tool attributes, a source record) are built up front, then stored in units of work of
``--batch`` calls, the way a backfill does. Phases, each over every call:

- ``ingest create``: :func:`usm_bridge.sync.ingest.store_mapped_call` of records never seen (a
  backfill);
- ``ingest unchanged``: the same records read again, mapped to fresh canonical ids (a re-read);
- ``ingest changed``: the same records with a new title and one more comment (an update);
- ``upsert create`` / ``upsert unchanged`` / ``upsert changed``: the same through
  :meth:`usm_bridge.store.Transaction.upsert_call` with canonical ids (the router's path).

Then ``--records`` raw Jira issues (``--records 0`` leaves this out), fetched once from the Jira
simulator (a child process; not timed), are ingested through the real
:class:`~usm_bridge.sync.ingest.IngestStage` with the shipped Jira Service Management mapping
and a router, in pages of ``--batch``, as a sync cycle does: ``page backfill`` (records never
seen), ``page unchanged`` (the same read again), ``page changed`` (every summary edited). Each
phase runs twice, side by side: ``ingest_page`` (a page in one unit of work, its reads and
writes batched) and ``by record`` (each record in its own unit of work, as before batching,
which ``ingest_page`` still falls back to when a page fails). Then the three phases again by
``ingest_page`` on a unit with a route that gives every call a supplier call (``page chained``):
its backfill opens the supplier calls, and its ``changed`` phase copies each edited summary
down to the supplier call and queues the supplier's update.

Reported per phase: calls per second, the benchmark process's CPU time per call (steadier than
the rate on a loaded machine; PostgreSQL's own CPU is not in it) and SQL statements per call
(every statement the driver ran, ``BEGIN`` excluded, and each ``COPY`` that
:mod:`usm_bridge.store.copy_rows` hands to psycopg past SQLAlchemy). The default store is a
SQLite file in a temporary folder; ``--url`` takes any store URL (a PostgreSQL database is
left with the benchmark's rows in it; the page phases use instance names of their own each
run, so they always backfill).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from usm_bridge.config import BridgeConfig
from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, Comment, Person, SourceRef
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store, Transaction
from usm_bridge.sync.ingest import IngestStage, RecordOutcome, store_mapped_call
from usm_bridge.sync.router import Router

INSTANCE = "facilities-jira"
JSM = SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml"


def make_calls(count: int, *, tag: str) -> list[Call]:
    """Calls as a Jira mapping would produce them (fresh canonical ids every time)."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    calls = []
    for n in range(count):
        created = base + timedelta(minutes=n)
        calls.append(
            Call(
                unit="facilities",
                source=SourceRef(
                    instance=INSTANCE,
                    remote_id=str(10_000 + n),
                    remote_key=f"IT-{n + 1}",
                    url=f"https://jira.example.com/browse/IT-{n + 1}",
                ),
                title=f"Broken chair in room {n % 500} {tag}".strip(),
                description="The chair wobbles and one wheel is missing. " * 4,
                requester=Person(name=f"Person {n % 97}", email=f"p{n % 97}@example.com"),
                assignee=Person(name="Facilities desk", ref="acc-42"),
                priority="P3",
                created=created,
                updated=created + timedelta(hours=1),
                comments=[
                    Comment(
                        id=f"c-{n}-{k}",
                        author=Person(name="Agent", ref="acc-7"),
                        body=f"Comment {k} on issue {n}: looking into it.",
                        created=created + timedelta(minutes=10 * (k + 1)),
                        origin=INSTANCE,
                        remote_id=str(k),
                    )
                    for k in range(3 if tag != "changed" else 4)
                ],
                attributes={
                    "jira": {
                        "labels": ["furniture", f"floor-{n % 7}"],
                        "components": ["Office"],
                        "issuetype": "Service Request",
                    }
                },
            )
        )
    return calls


@contextmanager
def counting(store: Store) -> Iterator[list[int]]:
    """Count the statements the driver runs (BEGIN excluded) while the block runs, the
    ``COPY`` statements psycopg runs for :mod:`usm_bridge.store.copy_rows` included (they go
    past SQLAlchemy's events)."""
    counter = [0]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            counter[0] += 1

    copy = _psycopg_copy()
    if copy is not None:
        cursor_class, real_copy = copy

        def counted_copy(self: Any, *args: Any, **kwargs: Any) -> Any:
            counter[0] += 1
            return real_copy(self, *args, **kwargs)

        cursor_class.copy = counted_copy
    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
        if copy is not None:
            cursor_class.copy = real_copy


def _psycopg_copy() -> tuple[Any, Any] | None:
    """psycopg's cursor class and its ``copy`` method (``None`` without psycopg)."""
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg.Cursor, psycopg.Cursor.copy


#: A phase's name, calls per second, CPU milliseconds per call and statements per call.
Result = tuple[str, float, float, float]


def phase(
    store: Store,
    calls: list[Call],
    batch: int,
    step: Callable[[Transaction, Call], Any],
) -> tuple[float, float, float]:
    """Store every call in units of work of ``batch``; (calls per second, CPU ms/call,
    statements/call)."""
    with counting(store) as counter:
        began, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(calls), batch):
            with store.begin() as tx:
                for call in calls[start : start + batch]:
                    step(tx, call)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return len(calls) / elapsed, 1000 * cpu / len(calls), counter[0] / len(calls)


def run(url: str, count: int, batch: int, records: int = 0) -> list[Result]:
    first = make_calls(count, tag="")
    again = make_calls(count, tag="")
    changed = make_calls(count, tag="changed")
    direct_ids = [f"bench_{n}" for n in range(count)]

    def ingest(tx: Transaction, call: Call) -> None:
        store_mapped_call(tx, call, instance=INSTANCE)

    def upsert(tx: Transaction, call: Call) -> None:
        tx.upsert_call(call, instance=INSTANCE)

    def direct(calls: list[Call]) -> list[Call]:
        # Same content under fixed ids, without a source (the router's supplier calls).
        return [
            call.model_copy(update={"id": call_id, "source": None})
            for call_id, call in zip(direct_ids, calls, strict=True)
        ]

    results = []
    with Store.open(url) as store:
        for name, calls, step in (
            ("ingest create", first, ingest),
            ("ingest unchanged", again, ingest),
            ("ingest changed", changed, ingest),
            ("upsert create", direct(first), upsert),
            ("upsert unchanged", direct(again), upsert),
            ("upsert changed", direct(changed), upsert),
        ):
            results.append((name, *phase(store, calls, batch, step)))
        if records:
            results.extend(page_phases(store, jira_records(records), batch))
    return results


def jira_records(count: int) -> list[RawRecord]:
    """``count`` issues as the Jira connector reads them from the simulator (pages of 100)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from sim_processes import JiraSimulatorProcess
    from usm_bridge_jira import JiraConnector

    sim = JiraSimulatorProcess(count)
    try:
        connector = JiraConnector.from_config(INSTANCE, sim.settings())
        records = [i for i in connector.read_changes(None) if isinstance(i, RawRecord)]
        connector.close()
    finally:
        sim.close()
    return records


def edited(record: RawRecord) -> RawRecord:
    """The record with its summary edited in the tool."""
    fields = dict(record.data["fields"])  # type: ignore[call-overload]
    fields["summary"] = f"{fields['summary']} (edited)"
    return record.model_copy(update={"data": {**record.data, "fields": fields}})


def ingest_stage(store: Store, instance: str, *, chained: bool = False) -> IngestStage:
    """The sync engine's ingest stage for one Jira instance of unit facilities: no routes, or
    (``chained``) one route opening a supplier call at unit it for every call."""
    from usm_bridge_jira.transforms import TRANSFORMS as TOOL

    instances: dict[str, Any] = {
        instance: {"name": instance, "unit": "facilities", "kind": "jira", "mapping": str(JSM)},
    }
    units: dict[str, Any] = {"facilities": {"name": "facilities"}}
    routes: list[dict[str, Any]] = []
    if chained:
        # The supplier calls' tool is never read: their creates and updates are only queued.
        instances[f"{instance}-it"] = {"name": f"{instance}-it", "unit": "it", "kind": "jira",
                                       "mapping": str(JSM)}  # fmt: skip
        units["it"] = {"name": "it"}
        # Every classified call (an unclassified one cannot wait on a supplier).
        classified = ["wish", "rfc", "service_request", "incident", "risk"]
        routes.append({"name": "facilities-to-it", "from": "facilities", "to": "it",
                       "when": {"call_type": classified}})  # fmt: skip
    config = BridgeConfig.model_validate({"units": units, "instances": instances, "routes": routes})
    mapping = load_mapping(JSM)
    context = MappingContext(unit="facilities", instance=instance, transforms={**CORE, **TOOL})
    return IngestStage(
        store, PluginHost(), Router(config), mapping=lambda _: mapping, context=lambda _: context
    )


def page_phases(store: Store, records: list[RawRecord], batch: int) -> list[Result]:
    """The page phases, by ``ingest_page`` and by record, each on an instance of its own;
    then, by ``ingest_page``, the same on an instance whose every call gets a supplier call
    (``chained``): the re-read of a changed page carries each change down to its supplier."""
    changed = [edited(record) for record in records]
    pages = [records[n : n + batch] for n in range(0, len(records), batch)]
    changed_pages = [changed[n : n + batch] for n in range(0, len(changed), batch)]
    results = []
    for together, chained in ((True, False), (False, False), (True, True)):
        ingest = paged(store, together=together, chained=chained)
        mode = "ingest_page" if together else "by record"
        label = " chained" if chained else ""
        for name, phase_pages in (
            ("backfill", pages), ("unchanged", pages), ("changed", changed_pages)
        ):  # fmt: skip
            with counting(store) as counter:
                began, cpu = time.perf_counter(), time.process_time()
                outcomes = [o for page in phase_pages for o in ingest(page)]
                elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
            dead = [o.reason for o in outcomes if o.reason]
            assert len(outcomes) == len(records) and not dead, dead[:3]
            count = len(records)
            results.append(
                (f"page{label} {name} ({mode})", count / elapsed, 1000 * cpu / count,
                 counter[0] / count)
            )  # fmt: skip
    return results


def paged(
    store: Store, *, together: bool, chained: bool = False
) -> Callable[[list[RawRecord]], list[RecordOutcome]]:
    """Ingest a page into an instance of its own: ``ingest_page``, or each record in a unit of
    work of its own (what ``ingest_page`` did before pages were stored together)."""
    instance = f"{INSTANCE}-{secrets.token_hex(3)}"
    stage = ingest_stage(store, instance, chained=chained)

    def by_record(page: list[RawRecord]) -> list[RecordOutcome]:
        outcomes = [stage.ingest(instance, record) for record in page]
        stage._backfill_forks(instance, outcomes)
        return outcomes

    return (lambda page: stage.ingest_page(instance, page)) if together else by_record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=100, help="calls per unit of work")
    parser.add_argument("--records", type=int, default=2_000, help="Jira issues for the pages")
    parser.add_argument("--url", help="store URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        results = run(url, args.calls, args.batch, args.records)
        if profiler is not None:
            profiler.disable()
    backend = sa.engine.make_url(url).get_backend_name()
    print(f"store upsert, {args.calls:,} calls, {args.batch} per unit of work, {backend}")
    for name, rate, cpu_ms, statements in results:
        print(f"  {name:<37} {rate:>6,.0f} calls/s  {cpu_ms:6.2f} ms CPU/call  "
              f"{statements:5.2f} statements/call")  # fmt: skip
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
