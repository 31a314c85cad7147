"""The CPU each check and view of a conformance report spends per call, once a page is read.

    .venv/bin/python bench/bench_conformance_feeds.py --store sqlite:///confcpu-20k.db
    .venv/bin/python bench/bench_conformance_feeds.py --store URL --reps 5

A report reads the calls page by page and feeds each page to every built-in data check, the
process views and the chain view (:mod:`usm_bridge.conformance.call_feeds`). This reads the
pages of a filled store once (``bench/fill_store.py``), then feeds them to a fresh set of those
feeds ``--reps`` times, timing each feed's ``feed`` with a CPU clock, and prints the least CPU
of the runs per call of each feed (the evidence each spools included), and their sum: the
report's CPU per call beyond reading the calls (issue #17). CPU, not wall time, and the least
of several runs: on a machine shared with other jobs the figures still compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from usm_bridge.conformance.call_feeds import CallFeed, FedCheck
from usm_bridge.conformance.call_stream import CallPage
from usm_bridge.conformance.chain_feed import ChainFeed
from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.context import ReportContext, build_context
from usm_bridge.conformance.evidence_spool import EvidenceSpool
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.process_views import ProcessViews
from usm_bridge.plugins import PluginHost
from usm_bridge.store import SchemaPolicy, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_conformance_scale import _config  # the report's config, beside this file

#: The report's clock: findings that depend on it (ages) are the same in every run.
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def _name(feed: CallFeed) -> str:
    return str(getattr(feed, "id", type(feed).__name__))


def _replay(context: ReportContext, pages: list[CallPage]) -> dict[str, float]:
    """One pass of fresh feeds over the pages read before: CPU seconds by feed."""
    context.spool = EvidenceSpool()
    feeds: list[CallFeed] = [c for c in BUILTIN_CHECKS() if isinstance(c, FedCheck)]
    feeds += [ProcessViews(), ChainFeed()]
    for feed in feeds:
        feed.start(context)
    spent: dict[str, float] = defaultdict(float)
    for page in pages:
        context._set_page(page)  # as the report's pass sets each page
        for feed in feeds:
            started = time.process_time()
            feed.feed(context)
            spent[_name(feed)] += time.process_time() - started
    context.spool.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", metavar="URL", required=True, help="a filled store")
    parser.add_argument("--reps", type=int, default=5, help="passes of the feeds (least kept)")
    args = parser.parse_args()
    with Store.open(args.store, schema=SchemaPolicy.INSPECT) as store:
        context = build_context(
            store, _config(args.store), Period(), host=PluginHost(), vocabularies={}, now=NOW
        )
        assert context.source is not None  # a store on disk is read page by page
        pages = list(context.source.pages())
    calls = sum(len(page.calls) for page in pages)
    least: dict[str, float] = {}
    for _ in range(args.reps):
        spent = _replay(context, pages)
        spent["all feeds"] = sum(spent.values())
        for name, seconds in spent.items():
            least[name] = min(least.get(name, seconds), seconds)
    print(f"{calls} calls, least CPU of {args.reps} passes, per call:")
    for name, seconds in sorted(least.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {seconds * 1e6 / calls:6.1f} us")


if __name__ == "__main__":
    main()
