"""100 connector instances on Celery workers: cycles per second and lag, by worker processes
(issue #18).

Run: ``.venv/bin/python bench/bench_workers.py [--workers 1 2 4] [--concurrency 2]
[--instances 100] [--latency 0.1] [--interval 1] [--window 40] [--warmup 60]``

Two simulators run in child processes (``latent_simulator.py``), a Jira Cloud site and a
ServiceNow instance with 5 records each, and answer every request ``--latency`` seconds late
(a sleep in the request's own server thread: waiting requests do not queue). ``--instances``
connector instances, half on each (each its own unit, no route), sync every ``--interval``
seconds. For each count of ``--workers``, on a fresh PostgreSQL database (created on
``--pg-url``'s server and dropped after) and fresh queues on ``--broker``, the benchmark starts
that many ``usm-bridge worker -n CONCURRENCY`` processes (the default prefork pool), waits
until each is ready, starts ``usm-bridge scheduler``, lets ``--warmup`` seconds pass (every
instance's first cycle, the backfill of the seeded records and each pool process opening its
runtime fall in it), then measures for ``--window`` seconds. Both commands run unchanged
through ``celery_probe.py``, which records each cycle task published (its due time) and each
cycle run (start, end, skipped or not, HTTP requests sent).

Reported per count of workers, for the cycles that started in the window:

- **cycles/s**: cycles run (a cycle that found its instance's lock held is *skipped*, counted
  apart, not here) per second of the window;
- **lag** p50 / p95 / max: a cycle's start minus the time it was due (published);
- **held/s**: turns the scheduler did not send because a task still waited in the
  instance's queue (:mod:`usm_bridge.workers.backlog`: the tool is behind its schedule);
- **expired/s**: cycles sent in the window (until one interval before its end) that never
  started: a cycle not started within its interval expires in its queue (docs/workers.md);
- **requests / cycle**: HTTP requests a cycle sent, the mean; **cycle wall**: a cycle's wall
  time, the mean (with 100 ms a request, ``requests / cycle`` tenths of a second of it are the
  tools'; the rest is the bridge's CPU, or its wait for a CPU on a loaded machine);
  **pool busy**: the share of the window the pool processes spent in cycles (near 100 %: the
  processes are the limit, and more of them bring more cycles);
- **CPU**: user and system CPU of the worker processes (every process of their process groups,
  the pool included, from ``/proc``) in the window, in cores and in milliseconds per cycle;
  the simulators' and the scheduler's beside it; and the whole machine's busy share
  (``/proc/stat``), which includes PostgreSQL, the broker and whatever else runs;
- the load average at the window's start and end: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench_sync_backfill import fresh_store

from usm_bridge.config import load_config
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.store import Store
from usm_bridge.workers.app import make_app
from usm_bridge.workers.tasks import queue_of

HERE = Path(__file__).resolve().parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
MAPPINGS = {
    "jira": SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml",
    "servicenow": SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml",
}
#: Records each simulator starts with: every instance backfills them in the warm-up.
SEED = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- processes ---------------------------------------------------------------------------------


class Simulator:
    """A latent simulator in a child process; ``settings`` reach it."""

    def __init__(self, tool: str, latency: float) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            [sys.executable, str(HERE / "latent_simulator.py"), tool,
             "--latency", str(latency), "--seed", str(SEED)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.settings: dict[str, Any] = json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _probe(events: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``usm-bridge ARGS`` through the probe, in its own process group, logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            [sys.executable, str(HERE / "celery_probe.py"), str(events), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process (a worker's warm shutdown: it stops its own pool), then SIGKILL
    to its whole process group after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15.0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10.0)


def group_cpu(
    groups: set[int], pids: frozenset[int] = frozenset(), *, leaders: bool = True
) -> float:
    """User and system CPU seconds of every live process of these process groups, and of
    these processes; without the groups' leaders (a worker's main process) if not
    ``leaders``."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        pid, group = int(entry.name), int(fields[2])
        if (
            group in groups and (leaders or pid != group)
        ) or pid in pids:  # pgrp; utime and stime are fields 14 and 15
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# -- the store and the config ------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(
    path: Path, store_url: str, broker: str, sims: dict[str, Simulator], instances: int,
    interval: float,
) -> None:  # fmt: skip
    """Half the instances on each simulator, each its own unit; queues of this run's own."""
    lines = ["[store]", f"url = {_toml(store_url)}", ""]
    tools = sorted(sims)
    for n in range(instances):
        tool = tools[n % len(tools)]
        lines += [
            f"[units.u{n:03d}]",
            f'title = "Unit {n:03d}"',
            f"[instances.b{n:03d}]",
            f'unit = "u{n:03d}"',
            f"kind = {_toml(tool)}",
            f"mapping = {_toml(str(MAPPINGS[tool]))}",
            f"interval = {interval:g}",
            f"[instances.b{n:03d}.settings]",
            *(f"{key} = {_toml(value)}" for key, value in sims[tool].settings.items()),
            "",
        ]
    prefix = f"bench{uuid.uuid4().hex[:8]}.tool."
    lines += ["[workers]", f"broker_url = {_toml(broker)}", f"queue_prefix = {_toml(prefix)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def delete_queues(config_path: Path) -> None:
    """Remove the run's queues from the broker."""
    config = load_config(config_path)
    app = make_app(config)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in config.instances:
            with contextlib.suppress(Exception):
                channel.queue_delete(queue_of(config, name))


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    workers: int
    concurrency: int
    window: float
    interval: float
    cycles: int
    skipped: int
    failed: int
    expired: int
    held: int
    lags: list[float]
    requests: list[int]
    walls: list[float]
    worker_cpu: float
    pool_cpu: float
    other_cpu: float
    machine_busy: float
    load_before: str
    load_after: str

    def row(self) -> str:
        lags = sorted(self.lags)
        p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else float("nan")
        p50 = statistics.median(lags) if lags else float("nan")
        rate = self.cycles / self.window
        per_cycle = 1000 * self.pool_cpu / self.cycles if self.cycles else float("nan")
        mean_requests = statistics.fmean(self.requests) if self.requests else float("nan")
        wall = statistics.fmean(self.walls) if self.walls else float("nan")
        # The share of the window the pool processes spent in cycles.
        busy = sum(self.walls) / (self.window * self.workers * self.concurrency)
        return (
            f"| {self.workers} x {self.concurrency} | **{rate:.1f}** | "
            f"{rate / self.workers:.1f} | "
            f"{p50:.2f} / **{p95:.2f}** / {max(lags, default=0):.2f} s | "
            f"{self.held / self.window:.1f} | {self.expired / self.window:.1f} | "
            f"{self.skipped} / {self.failed} | "
            f"{mean_requests:.2f} | {1000 * wall:.0f} ms | {100 * busy:.0f} % | "
            f"{self.worker_cpu / self.window:.2f} | "
            f"{(self.worker_cpu - self.pool_cpu) / self.window:.2f} | {per_cycle:.0f} ms | "
            f"{self.other_cpu / self.window:.2f} | {100 * self.machine_busy:.0f} % | "
            f"{self.load_before} -> {self.load_after} |"
        )


HEADER = (
    "| workers x pool | cycles/s | per worker | lag p50 / p95 / max | held/s | expired/s | "
    "skipped / failed | requests / cycle | cycle wall | pool busy | workers' CPU, cores | "
    "of it main processes | pool "
    "CPU per cycle | sims + scheduler, cores | machine busy | load 1/5/15 min before -> after |\n"
    "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def _wait_ready(logs: Sequence[Path], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(" ready." in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {timeout:.0f} s: see {logs[0].parent}")
        time.sleep(0.2)


def measure(
    args: argparse.Namespace, workers: int, sims: dict[str, Simulator], folder: Path
) -> Run:
    run_dir = folder / f"workers-{workers}"
    run_dir.mkdir()
    events = run_dir / "events.jsonl"
    config = run_dir / "usm-bridge.toml"
    with fresh_store("postgresql", folder, args.pg_url) as store_url:
        write_config(config, store_url, args.broker, sims, args.instances, args.interval)
        Store.open(store_url).close()  # migrated before the workers race to it
        started: list[subprocess.Popen[bytes]] = []
        try:
            logs = [run_dir / f"worker-{n}.log" for n in range(workers)]
            for log in logs:
                started.append(
                    _probe(events, log, "worker", "-c", str(config),
                           "-n", str(args.concurrency))
                )  # fmt: skip
            _wait_ready(logs)
            started.append(
                _probe(events, run_dir / "scheduler.log", "scheduler", "-c", str(config))
            )
            time.sleep(args.warmup)
            worker_groups = {p.pid for p in started[:-1]}
            scheduler = {started[-1].pid}
            sim_pids = frozenset(s.process.pid for s in sims.values())
            cpu0, pool0, other0, (busy0, total0), load0 = (
                group_cpu(worker_groups), group_cpu(worker_groups, leaders=False),
                group_cpu(scheduler, sim_pids), machine_ticks(), load(),
            )  # fmt: skip
            w0 = time.time()
            time.sleep(args.window)
            w1 = time.time()
            cpu1, pool1, other1, (busy1, total1), load1 = (
                group_cpu(worker_groups), group_cpu(worker_groups, leaders=False),
                group_cpu(scheduler, sim_pids), machine_ticks(), load(),
            )  # fmt: skip
        finally:
            for process in reversed(started):
                _stop(process)
            delete_queues(config)
    sent: dict[str, float] = {}
    ran: dict[str, dict[str, Any]] = {}
    held = 0
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["e"] == "sent":
            sent[event["id"]] = event["t"]
        elif event["e"] == "held":
            held += w0 <= event["t"] < w1
        else:
            ran[event["id"]] = event
    window = [e for e in ran.values() if w0 <= e["start"] < w1]
    done = [e for e in window if not e["skipped"]]
    due = [i for i, t in sent.items() if w0 <= t < w1 - args.interval]
    return Run(
        workers=workers,
        concurrency=args.concurrency,
        window=w1 - w0,
        interval=args.interval,
        cycles=len(done),
        skipped=len(window) - len(done),
        failed=sum(e["failed"] for e in done),
        expired=sum(1 for i in due if i not in ran),
        held=held,
        lags=[e["start"] - sent[e["id"]] for e in done if e["id"] in sent],
        requests=[e["requests"] for e in done],
        walls=[e["end"] - e["start"] for e in done],
        worker_cpu=cpu1 - cpu0,
        pool_cpu=pool1 - pool0,
        other_cpu=other1 - other0,
        machine_busy=(busy1 - busy0) / max(1, total1 - total0),
        load_before=load0,
        load_after=load1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    parser.add_argument("--interval", type=float, default=1.0, help="every instance's interval")
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured")
    # Each of the 8 pool processes of 4 workers meets each instance a first time (it builds
    # the connector): with less, that start-up still shows in the window.
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the window")
    parser.add_argument(
        "--broker", default=os.environ.get("USM_BRIDGE_BENCH_BROKER", DEFAULT_BROKER)
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("USM_BRIDGE_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--keep", type=Path, help="keep the logs and events in this folder")
    args = parser.parse_args(argv)
    print(
        f"{args.instances} instances (half Jira, half ServiceNow), interval {args.interval:g} s "
        f"(demand {args.instances / args.interval:.0f} cycles/s), {1000 * args.latency:.0f} ms "
        f"per request; {os.cpu_count()} CPUs; window {args.window:g} s after {args.warmup:g} s",
        flush=True,
    )
    with TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        sims = {tool: Simulator(tool, args.latency) for tool in ("jira", "servicenow")}
        try:
            runs = []
            for workers in args.workers:
                runs.append(measure(args, workers, sims, folder))
                print(runs[-1].row(), file=sys.stderr, flush=True)
        finally:
            for sim in sims.values():
                sim.close()
    print(HEADER)
    for run in runs:
        print(run.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
