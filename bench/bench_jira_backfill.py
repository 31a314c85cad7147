"""Backfill benchmark: issues from the Jira simulator into the store, through the whole bridge.

Run: ``.venv/bin/python bench/bench_jira_backfill.py [--issues 20000]``

The simulator runs in its own process (its memory holds every issue and must not count as the
bridge's), serving Jira Cloud over HTTP on loopback. The bridge reads with the Jira connector
(``/search/jql``, 100 issues a page, ``fields=*all``), maps each issue with the shipped Jira
Service Management mapping, and stores it in SQLite, one transaction and one cursor per page,
as the sync engine does. Reported:

- issues per second through the bridge, and for a bare page-fetch loop (``requests`` and
  ``json`` only) against the same simulator, so a reader sees how much is the server;
- HTTP requests the connector made against the minimum possible (one per page of 100);
- the connector alone (read, no mapping or store), to separate it from the store's cost;
- peak Python memory (tracemalloc) of one traced backfill after ``--small`` issues and at the
  end: flat means streamed.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sim_processes import JIRA_PAGE, JiraSimulatorProcess, jira_bare_loop
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.transforms import TRANSFORMS as TOOL

from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.store import Store
from usm_bridge.sync.ingest import store_mapped_call

ROOT = Path(__file__).resolve().parents[1]
PAGE = JIRA_PAGE


def connector_only(sim: JiraSimulatorProcess) -> tuple[int, float]:
    """Read every issue through the connector alone (no mapping, no store)."""
    connector = JiraConnector.from_config("facilities-jira", sim.settings())
    began = time.perf_counter()
    count = sum(isinstance(item, RawRecord) for item in connector.read_changes(None))
    connector.close()
    return count, time.perf_counter() - began


def backfill(sim: JiraSimulatorProcess, database: Path, checkpoint_at: int = 0) -> dict[str, Any]:
    """Read every issue through the connector, map it, store it; one transaction per page."""
    connector = JiraConnector.from_config("facilities-jira", sim.settings())
    assert isinstance(connector, JiraConnector)
    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")
    context = MappingContext(
        unit="facilities", instance="facilities-jira", transforms={**CORE, **TOOL}
    )
    stored = dead = 0
    peak_at_checkpoint = 0.0
    began = time.perf_counter()
    with Store.open(f"sqlite:///{database}") as store:
        batch: list[RawRecord] = []
        for item in connector.read_changes(None):
            if isinstance(item, RawRecord):
                batch.append(item)
                continue
            assert isinstance(item, Checkpoint)
            with store.begin() as tx:
                for record in batch:
                    try:
                        call = apply_inbound(mapping, record, context)
                    except Exception:
                        dead += 1
                        continue
                    store_mapped_call(tx, call, instance="facilities-jira")
                    stored += 1
                    if stored == checkpoint_at and tracemalloc.is_tracing():
                        peak_at_checkpoint = tracemalloc.get_traced_memory()[1] / 2**20
                tx.set_cursor("facilities-jira", item.cursor)
            batch = []
    elapsed = time.perf_counter() - began
    connector.close()
    return {
        "stored": stored,
        "dead": dead,
        "seconds": elapsed,
        "requests": connector.requests_made,
        "peak_at_checkpoint_mib": peak_at_checkpoint,
    }


def run(issues: int, *, measure_memory: bool, small: int = 0) -> dict[str, Any]:
    sim = JiraSimulatorProcess(issues)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if measure_memory:
                tracemalloc.start()
            result = backfill(sim, Path(tmp) / "bench.db", checkpoint_at=small)
            if measure_memory:
                result["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
        if not measure_memory:
            bare = jira_bare_loop(sim)
            result["bare_count"], result["bare_seconds"] = bare.records, bare.seconds
            result["read_count"], result["read_seconds"] = connector_only(sim)
    finally:
        sim.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument(
        "--small",
        type=int,
        default=5_000,
        help="the point of the same run that peak memory is compared at",
    )
    args = parser.parse_args()

    main_run = run(args.issues, measure_memory=False)
    minimum = math.ceil(args.issues / PAGE)
    overhead = round(main_run["requests"] / minimum - 1, 4)
    rate = main_run["stored"] / main_run["seconds"]
    bare = main_run["bare_count"] / main_run["bare_seconds"]
    traced = run(args.issues, measure_memory=True, small=args.small)
    small_peak, large_peak = traced["peak_at_checkpoint_mib"], traced["peak_mib"]
    growth = large_peak / small_peak
    read_rate = main_run["read_count"] / main_run["read_seconds"]

    print(f"Jira backfill, {args.issues:,} issues (Cloud simulator, pages of {PAGE}, SQLite)")
    print(
        f"  bridge (connector + mapping + store): {rate:,.0f} issues/s "
        f"({main_run['seconds']:.1f} s, {main_run['stored']:,} stored, "
        f"{main_run['dead']} dead letters)"
    )
    print(
        f"  bare page-fetch loop, same simulator: {bare:,.0f} issues/s "
        f"({main_run['bare_seconds']:.1f} s)"
    )
    print(f"  connector alone (read, no mapping/store): {read_rate:,.0f} issues/s")
    print(
        f"  HTTP requests: {main_run['requests']} against a minimum of {minimum} "
        f"({overhead:+.1%}; target within 5 %)"
    )
    print(
        f"  peak memory (tracemalloc, one run): {small_peak:.1f} MiB after {args.small:,} "
        f"issues, {large_peak:.1f} MiB after {args.issues:,} ({growth:.2f}x for "
        f"{args.issues / args.small:.0f}x the issues)"
    )
    ok = overhead <= 0.05 and growth < 1.5 and main_run["dead"] == 0
    print("  targets:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
