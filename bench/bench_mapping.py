"""Mapping benchmark: raw records through the shipped mappings, inbound and outbound, alone.

Run: ``.venv/bin/python bench/bench_mapping.py [--records 5000] [--rounds 3] [--profile]``

The records are real simulator output: the Jira simulator's seeded issues (as
``/search/jql`` with ``fields=*all`` returns them, read by the Jira connector) and the
ServiceNow simulator's seeded incidents with their journal (read by the ServiceNow
connector). Both simulators run in child processes and are only read once, before anything is
timed. Then, for each mapping, every record is mapped inbound as the sync's ingest maps it
(the mapping plugin's hook: the file's rules, then the context's classifier), and the call it
gives is mapped outbound (the read draft ingest keeps for echo recognition). Reported per
mapping and direction: records per second and microseconds per record (wall clock), and the
CPU time per record (``time.process_time``, steadier than the wall clock on a shared
machine), each the best of ``--rounds`` rounds.
``--profile`` adds a cProfile top list of one round of each mapping.

No store and no HTTP is timed: this measures the mapping engine and the canonical model's
validation only (``bench_jira_backfill.py`` and ``bench_servicenow_backfill.py`` measure the
whole backfill).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from usm_bridge_jira import JiraConnector
from usm_bridge_jira.transforms import TRANSFORMS as JIRA
from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.transforms import TRANSFORMS as SERVICENOW

from usm_bridge.connector import RawRecord
from usm_bridge.mapping import Mapping, MappingContext, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.plugin import usm_bridge_map_inbound, usm_bridge_map_outbound
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, CallType

PASSWORD = "bench-password"  # noqa: S105 - a throwaway loopback simulator's


def _child(args: list[str], lines: int) -> tuple[subprocess.Popen[str], list[str]]:
    """A simulator in a child process, and the first ``lines`` lines it prints."""
    process = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, [process.stdout.readline() for _ in range(lines)]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def _records(items: Iterator[Any], count: int) -> list[RawRecord]:
    return [item for item in items if isinstance(item, RawRecord)][:count]


def jira_records(count: int) -> list[RawRecord]:
    """``count`` issues of the Jira simulator's seed, read by the Jira connector."""
    process, lines = _child(
        ["usm_bridge_jira.simulator", "--port", "0", "--seed-issues", str(count)], 3
    )
    try:
        connector = JiraConnector.from_config(
            "facilities-jira",
            {
                "base_url": lines[0].rsplit(" ", 1)[1].strip(),
                "deployment": "cloud",
                "email": lines[1].split(" = ", 1)[1].strip(),
                "api_token": lines[2].split(" = ", 1)[1].strip(),
                "projects": ["IT"],
                "page_size": 100,
            },
        )
        try:
            return _records(connector.read_changes(None), count)
        finally:
            connector.close()
    finally:
        _stop(process)


def servicenow_records(count: int) -> list[RawRecord]:
    """``count`` incidents of the ServiceNow simulator's seed, with their journal."""
    process, lines = _child(
        [
            "usm_bridge_servicenow.simulator",
            "--seed-records",
            str(count),
            "--password",
            PASSWORD,
        ],
        7,
    )
    try:
        settings = ServiceNowSettings(
            instance_url=lines[0].rsplit(" ", 1)[-1].strip(),
            username="admin",
            password=PASSWORD,  # type: ignore[arg-type]
            page_size=1000,
            read_journal=True,
        )
        connector = ServiceNowConnector("it-servicenow", settings)
        try:
            return _records(connector.read_changes(None), count)
        finally:
            connector.close()
    finally:
        _stop(process)


def _classifier(call: Call, record: RawRecord) -> CallType | None:
    # What a unit's classifier plugin costs at least: asked, answers nothing.
    return None


@dataclass
class Case:
    label: str
    mapping: Mapping
    context: MappingContext
    records: list[RawRecord]


def round_inbound(case: Case) -> list[Call]:
    return [usm_bridge_map_inbound(case.mapping, r, case.context) for r in case.records]


def round_outbound(case: Case, calls: list[Call]) -> None:
    for call in calls:
        usm_bridge_map_outbound(case.mapping, call, case.context)


def best(rounds: int, work: Callable[[], Any]) -> tuple[float, float]:
    """The shortest wall and CPU times (seconds) of ``rounds`` runs of ``work``."""
    walls, cpus = [], []
    for _ in range(rounds):
        began, began_cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    return min(walls), min(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=5_000, help="records of each tool")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile top list")
    parser.add_argument("--top", type=int, default=25, help="entries of the profile shown")
    args = parser.parse_args()

    transforms = {**CORE, **JIRA, **SERVICENOW}
    jira, servicenow = jira_records(args.records), servicenow_records(args.records)
    cases = [
        Case(
            "jira-service-management",
            load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml"),
            MappingContext("facilities", "facilities-jira", transforms, classifier=_classifier),
            jira,
        ),
        Case(
            "servicenow-incident",
            load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml"),
            MappingContext("it", "it-servicenow", transforms, classifier=_classifier),
            servicenow,
        ),
    ]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    print(
        f"{'mapping':<26} {'direction':<9} {'records':>8} {'records/s':>10} {'us/record':>10} "
        f"{'CPU us/record':>14}"
    )
    for case in cases:
        calls = round_inbound(case)  # warm: imports, caches, a mapping compiled on first use
        n = len(case.records)
        for direction, work in (
            ("inbound", lambda c=case: round_inbound(c)),
            ("outbound", lambda c=case, k=calls: round_outbound(c, k)),
        ):
            seconds, cpu = best(args.rounds, work)
            print(
                f"{case.label:<26} {direction:<9} {n:>8} {n / seconds:>10.0f} "
                f"{seconds / n * 1e6:>10.1f} {cpu / n * 1e6:>14.1f}"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.profile:
        for case in cases:
            profile = cProfile.Profile()
            profile.enable()
            round_outbound(case, round_inbound(case))
            profile.disable()
            print(f"\n-- profile: {case.label}, inbound and outbound, one round --")
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
