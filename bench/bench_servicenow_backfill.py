"""Backfill benchmark of the ServiceNow connector: 20,000 incidents into the store.

Runs the simulator in a child process (so that its memory and CPU are not counted as the
bridge's), seeds it, then measures:

- the bridge's backfill: ``read_changes(None)`` -> ``servicenow-incident.yaml`` mapping ->
  ``store_mapped_call`` into a SQLite store, one transaction and a saved cursor per page;
- requests sent against the minimum (one request per page of ``page_size`` records, plus one
  per ``journal_batch`` records when comments and work notes are read);
- peak traced Python memory of the backfill at two sizes (flat memory: it must not grow with
  the number of records, since records are streamed page by page);
- a bare page-fetch loop (``requests`` + ``json``, offset paging, nothing else) against the same
  simulator, so a reader sees how much is the bridge and how much the server.

Run: ``.venv/bin/python bench/bench_servicenow_backfill.py [--records 20000] [--page-size 1000]``
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sim_processes import ServiceNowSimulatorProcess, servicenow_bare_loop
from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.transforms import TRANSFORMS as TOOL

from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.store import Store
from usm_bridge.sync.ingest import store_mapped_call

ROOT = Path(__file__).resolve().parents[1]
MAPPING = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")


def _connector(
    sim: ServiceNowSimulatorProcess, page_size: int, journal: bool
) -> ServiceNowConnector:
    settings = ServiceNowSettings.model_validate(
        {**sim.settings(page_size), "read_journal": journal}
    )
    return ServiceNowConnector("sn-bench", settings)


def backfill(
    sim: ServiceNowSimulatorProcess, page_size: int, journal: bool
) -> tuple[int, int, float]:
    """The bridge's backfill into a fresh store: (records, requests, seconds)."""
    connector = _connector(sim, page_size, journal)
    context = MappingContext(unit="it", instance="sn-bench", transforms={**CORE, **TOOL})
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{folder}/bench.db")
        count = 0
        started = time.perf_counter()
        try:
            items = connector.read_changes(None)
            pending: list[RawRecord] = []
            for item in items:
                if isinstance(item, RawRecord):
                    pending.append(item)
                    continue
                assert isinstance(item, Checkpoint)
                with store.begin() as tx:
                    for record in pending:
                        store_mapped_call(
                            tx, apply_inbound(MAPPING, record, context), instance="sn-bench"
                        )
                    tx.set_cursor("sn-bench", item.cursor)
                count += len(pending)
                pending = []
            elapsed = time.perf_counter() - started
        finally:
            connector.close()
            store.close()
    return count, connector.requests, elapsed


def read_only(
    sim: ServiceNowSimulatorProcess, page_size: int, journal: bool, mapped: bool
) -> tuple[int, int, float]:
    """The connector's read (and the mapping when ``mapped``), nothing stored."""
    connector = _connector(sim, page_size, journal)
    context = MappingContext(unit="it", instance="sn-bench", transforms={**CORE, **TOOL})
    count = 0
    started = time.perf_counter()
    try:
        for item in connector.read_changes(None):
            if isinstance(item, RawRecord):
                count += 1
                if mapped:
                    apply_inbound(MAPPING, item, context)
    finally:
        connector.close()
    return count, connector.requests, time.perf_counter() - started


def peak_memory(sim: ServiceNowSimulatorProcess, page_size: int) -> float:
    """Peak traced Python memory of a read with mapping, MiB (what streaming keeps flat)."""
    gc.collect()
    tracemalloc.start()
    try:
        read_only(sim, page_size, journal=True, mapped=True)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    n, page = args.records, args.page_size
    minimum = math.ceil(n / page)
    # Journal entries are fetched for up to ``journal_batch`` records per request (the sys_id
    # list has to fit in a URL), so reading them has its own minimum.
    with_journal = minimum + math.ceil(n / ServiceNowSettings.model_fields["journal_batch"].default)
    print(f"ServiceNow backfill: {n:,} incidents, page size {page}")
    sim = ServiceNowSimulatorProcess(n)
    try:
        bare_n, bare_req, bare_s = servicenow_bare_loop(sim, page)
        print(
            f"  bare loop (pages and journal)     : {bare_n:,} records in {bare_s:.2f}s = "
            f"{bare_n / bare_s:,.0f} records/s, {bare_req} requests"
        )
        for journal, mapped in ((False, False), (True, False), (True, True)):
            got, sent, seconds = read_only(sim, page, journal, mapped)
            assert got == n, f"read {got} of {n}"
            label = "read" + (" + journal" if journal else "") + (" + mapping" if mapped else "")
            least = with_journal if journal else minimum
            print(
                f"  connector {label:<24}: {got:,} records in {seconds:.2f}s = "
                f"{got / seconds:,.0f} records/s, {sent} requests (minimum {least})"
            )
        got, sent, seconds = backfill(sim, page, journal=True)
        assert got == n, f"backfill read {got} of {n}"
        print(
            f"  full backfill into the store      : {got:,} records in {seconds:.2f}s = "
            f"{got / seconds:,.0f} records/s, {sent} requests (minimum {with_journal})"
        )
        big = peak_memory(sim, page)
    finally:
        sim.close()
    small_n = max(page * 2, n // 4)
    small = ServiceNowSimulatorProcess(small_n)
    try:
        low = peak_memory(small, page)
    finally:
        small.close()
    print(
        f"  peak traced memory (read + map)   : "
        f"{low:.1f} MiB at {small_n:,}, {big:.1f} MiB at {n:,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
