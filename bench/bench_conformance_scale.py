"""A conformance report over a store of N calls: wall time and peak memory (issue #17).

    .venv/bin/python bench/bench_conformance_scale.py                 # 100,000 and 1,000,000
    .venv/bin/python bench/bench_conformance_scale.py --calls 10000,100000 --backends sqlite
    .venv/bin/python bench/bench_conformance_scale.py --pg-url postgresql+psycopg://127.0.0.1/test

For each back end and each size, a store is filled with N calls by ``bench/fill_store.py`` (the
sample enterprise's three units after a year: chains, identities, audit events), then a *child
process* builds the report over all of them, renders it as JSON, and prints its own figures:
the wall time of building the report (context and checks) and of rendering it, and its peak
resident memory (``ru_maxrss``: what the process ever held, the interpreter and modules
included). Flat memory means the peak does not grow with N the way the calls do; what still
grows is what the report lists (every exception's evidence). The child is a fresh process per
run, so one run's memory never counts in another's. ``--store URL`` reports over a store
filled before (read as it is found, whatever its schema revision).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.context import build_context
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.renderers import JsonRenderer
from usm_bridge.plugins import PluginHost
from usm_bridge.store import SchemaPolicy, Store

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fill_store import fill_store  # noqa: E402 - the filler beside this file

DEFAULT_PG = "postgresql+psycopg://127.0.0.1:5432/test"


def _config(url: str, registry: bool = False) -> BridgeConfig:
    """The three units; with ``registry``, the registry the conformance tests share (services,
    agreements with their own matrix, targets and implicit confirmation terms, IT's own
    matrix: ``tests/registry_toml.py``), which the filled store's calls name."""
    if not registry:
        units = {name: {"name": name} for name in ("facilities", "it", "hr")}
        return BridgeConfig.model_validate({"store": {"url": url}, "units": units})
    sys.path.insert(0, str(HERE.parent / "tests"))
    from registry_toml import REGISTRY, matrix_toml

    text = f"[store]\nurl = {json.dumps(url)}\n[units.facilities]\n[units.it]\n[units.hr]\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "usm-bridge.toml"
        path.write_text(text + matrix_toml("units.it", ("u1", "u2", "u3")) + REGISTRY)
        return load_config(path)


def child(url: str, now: datetime | None = None, registry: bool = False) -> None:
    """Build and render the report over the store at ``url``; print the figures as JSON (and
    the JSON report's SHA-256: with a fixed ``now`` two runs over one store compare by it)."""
    config = _config(url, registry)
    host = PluginHost()
    started = time.perf_counter()
    # As it finds it: a store filled by a newer branch reads the same.
    with Store.open(url, schema=SchemaPolicy.INSPECT) as store:
        context = build_context(store, config, Period(), host=host, vocabularies={}, now=now)
        report = build_report(context, host)
    built = time.perf_counter()
    # Written as the CLI writes it: streamed to a file, never one string.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        JsonRenderer().write(report, out)
        json_bytes = out.tell()
        done = time.perf_counter()
        out.seek(0)
        digest = hashlib.sha256()
        while chunk := out.read(1 << 20):
            digest.update(chunk.encode("utf-8"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "report_s": round(built - started, 1),
                "render_s": round(done - built, 1),
                # The CPU of the whole child: on a machine shared with other jobs the steadier
                # figure (the wall time also counts the waits for a core).
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024),
                "exceptions": sum(len(o.evidence) for o in report.outcomes),
                "json_mib": round(json_bytes / 2**20, 1),
                "json_sha256": digest.hexdigest(),
            }
        )
    )


def _empty_pg(url: str) -> None:
    with Store.open(url) as store, store.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))


def run(url: str, calls: int, now: str | None = None) -> dict[str, object]:
    started = time.perf_counter()
    fill_store(url, calls)
    filled = time.perf_counter() - started
    return {"calls": calls, "fill_s": round(filled, 1), **_report(url, now)}


def _report(url: str, now: str | None = None, registry: bool = False) -> dict[str, object]:
    fixed = ["--now", now] if now else []
    fixed += ["--registry"] if registry else []
    out = subprocess.run(  # noqa: S603 - this very script, by the running interpreter
        [sys.executable, __file__, "--child", url, *fixed],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"the report failed:\n{out.stderr[-3000:]}")
    figures: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--store", metavar="URL", help="report over this filled store, no fill")
    parser.add_argument(
        "--now", metavar="ISO", help="the report's clock (e.g. 2027-01-01T00:00:00+00:00)"
    )
    parser.add_argument(
        "--registry",
        action="store_true",
        help="with --store: a config that registers services and agreements (their own "
        "matrix, targets, implicit confirmation terms)",
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, datetime.fromisoformat(args.now) if args.now else None, args.registry)
        return
    if args.store:
        print(json.dumps(_report(args.store, args.now, args.registry)), flush=True)
        return
    sizes = [int(n) for n in args.calls.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            for size in sizes:
                if backend == "sqlite":
                    url = f"sqlite:///{folder}/store-{size}.db"
                else:
                    url = args.pg_url
                    _empty_pg(url)
                print(json.dumps({"backend": backend, **run(url, size, args.now)}), flush=True)
                if backend == "sqlite":
                    Path(f"{folder}/store-{size}.db").unlink()


if __name__ == "__main__":
    main()
