"""End-to-end backfill benchmark of the real command, ``usm-bridge sync --once`` (issue #17).

Run: ``.venv/bin/python bench/bench_sync_backfill.py`` (Jira and ServiceNow, 20,000 records
each, SQLite and PostgreSQL); ``--memory`` for the memory mode; ``--help`` for every option.

For each tool, its simulator runs in a child process, seeded with the records: the Jira Cloud
simulator with issues (one comment each) in project IT, read with the shipped Jira Service
Management mapping; the ServiceNow simulator with incidents, read with their journal (comments
and work notes) and the shipped incident mapping. For each store back end (a fresh SQLite file;
a fresh PostgreSQL database created and dropped by the benchmark) a config with that one
instance and no route is written, the way the tests and the demo write theirs. Figures:

- **bare loop, records/s**: every page fetched with ``requests`` and ``json`` alone, in the
  connector's own request shape (Jira: ``GET /rest/api/3/search/jql``, ``fields=*all``, pages
  of 100, ``nextPageToken``; ServiceNow: the Table API, pages of 1,000, and the journal of
  each page's records, 200 ids a request, as the connector reads them), in this
  process, right before the bridge's run on the same simulator: the server's and HTTP's speed.
- **bridge, records/s**: records stored by ``usm-bridge sync --once -c CONFIG`` run as a real
  subprocess, divided by its wall time minus the wall time of an idle ``sync --once`` run right
  after on the same store (nothing new: the start-up and an idle cycle), as issue #17 says.
- **ratio**: bridge records/s over bare loop records/s, both from the same run. Target at
  least 0.3 (aim 0.5) on both back ends.
- **CPU s**: user plus system CPU seconds of the backfill subprocess minus those of the idle
  one (``os.wait4`` of that very child, so the simulator's CPU is not in it); **rec/CPU s**:
  records stored per such second, steadier than the wall rate on a loaded machine.
- **SQL/record**: statements the database drivers ran (``BEGIN`` excluded; an ``executemany``
  is one), counted in the timed subprocess by a SQLAlchemy ``before_cursor_execute`` listener
  on every engine (``count_hook/sitecustomize.py``, loaded through ``PYTHONPATH``, so the
  console script runs unchanged), minus those of the idle run, divided by the records stored.
  Target on a backfill: at most 2.
- **HTTP bridge / bare**: requests the backfill sent (counted the same way, at ``requests``'
  transport adapter) against the bare loop's; **idle HTTP**: requests of the idle run (the
  1,000,000-call target of issue #17 wants 1).
- **dead**: dead letters of the backfill (should be 0: every seeded record maps).
- **peak RSS**: the backfill subprocess's ``ru_maxrss`` (see ``--memory``).

``--memory``: peak resident memory (``ru_maxrss`` of the ``sync --once`` child, from
``os.wait4``) of a backfill on each of ``--backends`` at each ``--records`` count (default 5,000
and 100,000); flat means the largest count's peak is at most 1.2 times the smallest's.

``--read-ahead off`` writes ``read_ahead = false`` into the instance: each page is asked for
only once the one before is stored, on the cycle's thread (the default reads one page ahead).

``--read-in-child off`` writes ``read_in_child = false`` into the instance: the connector
reads and the mapping maps in the command's own process (the default forks a child that does
both, ``usm_bridge/sync/child_read.py``; its CPU is in the command's, which ``os.wait4``
reports with its reaped children, and the **CPU s** column splits it as the command's own +
the child's, which the child measures as it exits; its requests are counted too).

``--profile DIR`` runs the same backfill once more, in this process (``usm_bridge.cli.main``) on a
fresh store under cProfile, and writes ``DIR/TOOL-BACKEND.prof`` and the top 30 functions by
cumulative time in ``DIR/TOOL-BACKEND.txt`` (profiled, it runs two to three times slower).

At the end a Markdown table ready to paste into the READMEs; the exit status is 1 while a
target is not met. Rates depend on the machine's load
(printed with the table); the ratio, measured side by side, much less.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from call_counts import COUNTS_FILE, child_cpu, read_counts
from sim_processes import (
    BareLoop,
    JiraSimulatorProcess,
    ServiceNowSimulatorProcess,
    jira_bare_loop,
    servicenow_bare_loop,
)

from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR

#: The command under test, from the virtualenv this benchmark runs in.
USM_BRIDGE = Path(sys.executable).with_name("usm-bridge")
#: The folder whose ``sitecustomize`` counts statements and requests in that subprocess.
HOOK = Path(__file__).resolve().parent / "count_hook"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RATIO_TARGET, RATIO_AIM = 0.3, 0.5
FLAT = 1.2


@dataclass(frozen=True)
class Tool:
    """One tool as the benchmark drives it: its simulator, bare loop and bridge instance."""

    name: str
    instance: str
    unit: str
    kind: str
    mapping: str
    simulator: Callable[[int], JiraSimulatorProcess | ServiceNowSimulatorProcess]
    bare_loop: Callable[[Any], BareLoop]


TOOLS = {
    "jira": Tool(
        "jira",
        "facilities-jira",
        "facilities",
        "jira",
        "jira-service-management.yaml",
        JiraSimulatorProcess,
        jira_bare_loop,
    ),
    "servicenow": Tool(
        "servicenow",
        "it-snow",
        "it",
        "servicenow",
        "servicenow-incident.yaml",
        ServiceNowSimulatorProcess,
        servicenow_bare_loop,
    ),
}


#: Options written into every instance of the configs (``--read-ahead off``).
INSTANCE_OPTIONS: dict[str, Any] = {}


def write_config(path: Path, tool: Tool, settings: dict[str, Any], store_url: str) -> Path:
    """A config with one unit, this tool's one instance on the simulator, no route."""
    value = json.dumps  # a JSON string, number, boolean or list of strings is valid TOML
    lines = [
        "[store]",
        f"url = {value(store_url)}",
        "",
        f"[units.{tool.unit}]",
        f"title = {value(tool.unit.title())}",
        "",
        f"[instances.{tool.instance}]",
        f"unit = {value(tool.unit)}",
        f"kind = {value(tool.kind)}",
        f"mapping = {value(str(SHIPPED_MAPPINGS_DIR / tool.mapping))}",
        *(f"{key} = {value(item)}" for key, item in INSTANCE_OPTIONS.items()),
        f"[instances.{tool.instance}.settings]",
        *(f"{key} = {value(item)}" for key, item in settings.items()),
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class CommandRun:
    """One ``sync --once`` subprocess: what it stored, its wall time and its rusage."""

    stored: int
    read: int
    dead: int
    seconds: float
    cpu: float
    max_rss_mib: float
    statements: int
    requests: Counter[str]
    #: CPU seconds of the child processes that read (``read_in_child``), part of ``cpu``.
    child_cpu: float = 0.0


def _totals(output: str) -> tuple[int, int, int]:
    """(stored, read, dead letters) over the cycles of a ``sync --once --json`` output."""
    results = json.loads(output)
    failed = [result for result in results if not result["ok"]]
    if failed:
        raise RuntimeError(f"sync --once failed: {failed}")
    counters = [result["counters"] for result in results]

    def total(key: str) -> int:
        return sum(int(c[key]) for c in counters)

    return total("stored"), total("read"), total("dead_letters")


def run_command(config: Path) -> CommandRun:
    """``usm-bridge sync --once --json -c CONFIG`` as a subprocess: timed, rusage, counts."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as folder,
    ):
        counts = Path(folder) / "counts.json"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HOOK), str(HOOK.parent)]),
            COUNTS_FILE: str(counts),
        }
        began = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            [str(USM_BRIDGE), "sync", "--once", "--json", "-c", str(config)],
            stdout=out,
            stderr=err,
            env=environment,
        )
        # wait4, not wait: the rusage of this child alone (the simulator is a child too).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
        if process.returncode != 0:
            raise RuntimeError(f"sync --once exited {process.returncode}: {errors or output}")
        statements, paths = read_counts(counts)
        children = child_cpu(counts)
    stored, read, dead = _totals(output)
    cpu = usage.ru_utime + usage.ru_stime
    return CommandRun(
        stored, read, dead, seconds, cpu, usage.ru_maxrss / 1024, statements, paths, children
    )


def profile_in_process(config: Path, profile: Path) -> None:
    """``usm-bridge sync --once --json -c CONFIG`` through the CLI's ``main``, profiled."""
    from usm_bridge.cli import main as cli_main

    profiler = cProfile.Profile()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        profiler.enable()
        try:
            cli_main(["sync", "--once", "--json", "-c", str(config)])
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                message = f"sync --once exited {exit_.code}: {output.getvalue()}"
                raise RuntimeError(message) from None
        finally:
            profiler.disable()
    profile.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(profile.with_suffix(".prof"))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
    stats.print_stats(30)
    # The cycle's own entries too: on a small backfill the start-up fills the top 30.
    stats.print_stats(r"sync[/\\]engine\.py")
    profile.with_suffix(".txt").write_text(text.getvalue(), encoding="utf-8")


@contextlib.contextmanager
def fresh_store(backend: str, folder: Path, pg_url: str) -> Iterator[str]:
    """An empty store's URL: a new SQLite file, or a new PostgreSQL database dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'store-{uuid.uuid4().hex[:8]}.db'}"
        return
    server = sa.engine.make_url(pg_url)
    name = f"usm_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def postgres_unreachable(pg_url: str) -> str | None:
    """None when the server at ``pg_url`` answers, else why not."""
    engine = sa.create_engine(pg_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


@dataclass
class Result:
    """One tool on one back end: every figure of the table's row."""

    tool: str
    backend: str
    seeded: int
    bare: BareLoop
    backfill: CommandRun
    idle: CommandRun

    @property
    def seconds(self) -> float:
        """The backfill's wall time without the start-up and an idle cycle."""
        return self.backfill.seconds - self.idle.seconds

    @property
    def rate(self) -> float:
        return self.backfill.stored / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.bare.rate

    @property
    def cpu(self) -> float:
        return self.backfill.cpu - self.idle.cpu

    @property
    def child_cpu(self) -> float:
        """Of :attr:`cpu`, the reading child's (``read_in_child``); the rest is the
        command's own process, which bounds the wall time once the child has a core."""
        return self.backfill.child_cpu - self.idle.child_cpu

    @property
    def statements_per_record(self) -> float:
        extra = self.backfill.statements - self.idle.statements
        return extra / max(self.backfill.stored, 1)

    @property
    def bridge_requests(self) -> int:
        return sum(self.backfill.requests.values())

    @property
    def idle_requests(self) -> int:
        return sum(self.idle.requests.values())


def measure(
    tool: Tool,
    sim: Any,
    seeded: int,
    backend: str,
    folder: Path,
    pg_url: str,
    profile_dir: Path | None = None,
) -> Result:
    """The bare loop, then the bridge's backfill and idle run (then the profiled run)."""
    bare = tool.bare_loop(sim)
    with fresh_store(backend, folder, pg_url) as url:
        config = write_config(folder / f"{tool.name}-{backend}.toml", tool, sim.settings(), url)
        backfill = run_command(config)
        idle = run_command(config)
    if profile_dir is not None:
        with fresh_store(backend, folder, pg_url) as url:
            config = write_config(
                folder / f"{tool.name}-{backend}-profiled.toml", tool, sim.settings(), url
            )
            profile_in_process(config, profile_dir / f"{tool.name}-{backend}")
    return Result(tool.name, backend, seeded, bare, backfill, idle)


HEADER = (
    "| tool, back end | records stored / seeded | bare loop | `sync --once` | ratio "
    "(target >= 0.3, aim 0.5) | CPU s (rec/CPU s) | SQL / record | HTTP bridge / bare | "
    "idle HTTP | dead | peak RSS |"
)


def markdown_row(result: Result) -> str:
    verdict = "met" if result.ratio >= RATIO_TARGET else "**not met**"
    return (
        f"| {result.tool}, {result.backend} "
        f"| {result.backfill.stored:,} / {result.seeded:,} "
        f"| {result.bare.rate:,.0f} rec/s "
        f"| {result.rate:,.0f} rec/s ({result.seconds:.1f} s + {result.idle.seconds:.1f} s idle) "
        f"| **{result.ratio:.3f}x** {verdict} "
        f"| {result.cpu:.1f} ({result.backfill.stored / max(result.cpu, 1e-9):,.0f})"
        f"{_split(result)} "
        f"| {result.statements_per_record:.1f} "
        f"| {result.bridge_requests:,} / {result.bare.requests:,} "
        f"| {result.idle_requests} "
        f"| {result.backfill.dead} "
        f"| {result.backfill.max_rss_mib:.0f} MiB |"
    )


def _split(result: Result) -> str:
    """The CPU seconds as the command's process + its reading child, when it had one."""
    if not result.backfill.child_cpu:
        return ""
    return f" = {result.cpu - result.child_cpu:.1f} + {result.child_cpu:.1f} child"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _backends(args: argparse.Namespace) -> list[str]:
    """The back ends asked for, PostgreSQL left out (saying so) when it does not answer."""
    backends = list(args.backends)
    if "postgresql" in backends:
        reason = postgres_unreachable(args.pg_url)
        if reason is not None:
            print(f"PostgreSQL at {args.pg_url} does not answer ({reason}): skipped")
            backends.remove("postgresql")
    return backends


def throughput(args: argparse.Namespace) -> int:
    backends = _backends(args)
    results: list[Result] = []
    started = _load()
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        for count in args.records:
            for name in args.tools:
                tool = TOOLS[name]
                print(f"{name}: seeding {count:,} records in the simulator ...", flush=True)
                with tool.simulator(count) as sim:
                    for backend in backends:
                        result = measure(
                            tool, sim, count, backend, Path(tmp), args.pg_url, args.profile
                        )
                        results.append(result)
                        print("  " + markdown_row(result), flush=True)
    print()
    print(f"Backfill through `usm-bridge sync --once` ({started} before, {_load()} after)")
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for result in results:
        print(markdown_row(result))
    if args.profile:
        print(f"\nprofiles (top 30 by cumulative time): {args.profile}/*.txt")
    return 0 if all(r.ratio >= RATIO_TARGET and r.backfill.dead == 0 for r in results) else 1


def memory(args: argparse.Namespace) -> int:
    counts = sorted(args.records)
    backends = _backends(args)
    peaks: dict[str, list[tuple[int, CommandRun]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        for name in args.tools:
            tool = TOOLS[name]
            for count in counts:
                print(f"{name}: seeding {count:,} records in the simulator ...", flush=True)
                with tool.simulator(count) as sim:
                    for backend in backends:
                        with fresh_store(backend, Path(tmp), args.pg_url) as url:
                            config = write_config(
                                Path(tmp) / f"{name}-{backend}-{count}.toml",
                                tool,
                                sim.settings(),
                                url,
                            )
                            run = run_command(config)
                        print(
                            f"  {backend}: {run.stored:,} stored in {run.seconds:.1f} s, "
                            f"peak RSS {run.max_rss_mib:.1f} MiB",
                            flush=True,
                        )
                        peaks.setdefault(f"{name}, {backend}", []).append((count, run))
    print()
    print(f"Peak RSS of `usm-bridge sync --once` backfilling ({_load()})")
    print()
    print("| tool, back end | " + " | ".join(f"{c:,} records" for c in counts) + " | growth |")
    print("|---|" + "---:|" * (len(counts) + 1))
    flat = True
    for name, runs in peaks.items():
        growth = runs[-1][1].max_rss_mib / runs[0][1].max_rss_mib
        flat = flat and growth <= FLAT
        cells = " | ".join(f"{run.max_rss_mib:.0f} MiB" for _, run in runs)
        print(f"| {name} | {cells} | {growth:.2f}x |")
    return 0 if flat else 1


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument(
        "--records",
        type=int,
        nargs="+",
        metavar="N",
        help="records seeded in each simulator (default 20000; with --memory 5000 100000)",
    )
    command.add_argument(
        "--tools",
        nargs="+",
        choices=sorted(TOOLS),
        default=sorted(TOOLS),
        help="the tools to backfill from (default: both)",
    )
    command.add_argument(
        "--backends",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"],
        help="store back ends (default: both; PostgreSQL is skipped, saying so, when it does "
        "not answer)",
    )
    command.add_argument(
        "--pg-url",
        default=os.environ.get("USM_BRIDGE_BENCH_POSTGRES_URL", DEFAULT_PG_URL),
        help="a PostgreSQL database to connect to, to create and drop the benchmark's own "
        f"databases on that server (default: {DEFAULT_PG_URL})",
    )
    command.add_argument(
        "--memory",
        action="store_true",
        help="measure peak RSS of the command at each --records count instead, on each of "
        "--backends",
    )
    command.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also run each backfill once more in this process under cProfile, into DIR "
        "(TOOL-BACKEND.prof, and .txt: top 30 by cumulative time)",
    )
    command.add_argument(
        "--read-in-child",
        choices=["on", "off"],
        default="on",
        help="the instances' read_in_child option (default: on, the default of a config): "
        "off reads and maps in the command's own process",
    )
    command.add_argument(
        "--read-ahead",
        choices=["on", "off"],
        default="on",
        help="the instances' read_ahead option (default: on, the default of a config): off "
        "reads each page only once the one before is stored",
    )
    return command


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.records is None:
        args.records = [5_000, 100_000] if args.memory else [20_000]
    if math.prod(args.records) <= 0:
        raise SystemExit("--records: counts must be positive")
    if args.read_ahead == "off":
        INSTANCE_OPTIONS["read_ahead"] = False
    if args.read_in_child == "off":
        INSTANCE_OPTIONS["read_in_child"] = False
    return memory(args) if args.memory else throughput(args)


if __name__ == "__main__":
    sys.exit(main())
