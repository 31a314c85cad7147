"""A sync process for the kill test (see ``--help``): the real engine, run in a loop.

Usage: ``python sync_driver.py CONFIG [--rounds N] [--offset SECONDS] [--start K]``.

Builds the real engine through :func:`~usm_bridge.runtime.open_runtime` (connectors
from their entry points, the store from ``[store] url``) and runs a cycle of every instance in
turn, ``--rounds`` times (forever when 0), then exits 0; a failed cycle exits 3.

``--offset`` moves the engine's clock that many seconds ahead of real time. A restart after a
SIGKILL stands for a process started later (by cron or a supervisor): an outbox item the killed
process had claimed stays leased for five minutes (``DEFAULT_LEASE``), and the test, which
cannot wait that long, starts each restart further ahead instead. The test waits until the
killed process's last request has been served before the restart, as those five minutes would.

This is the kill test's own driver rather than ``usm-bridge sync --once`` because of that
clock: the CLI has (rightly) no option to move time.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta

from usm_bridge.config import load_config
from usm_bridge.model import utcnow
from usm_bridge.runtime import open_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--offset", type=float, default=0.0)
    #: Which instance goes first (rotates the order, as a daemon's schedule would).
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    offset = timedelta(seconds=args.offset)

    def clock() -> datetime:
        return utcnow() + offset

    failed = 0
    with open_runtime(config, clock=clock) as runtime:
        engine = runtime.engine
        done = 0
        while args.rounds == 0 or done < args.rounds:
            names = list(config.instances)
            shift = args.start % len(names)
            for name in names[shift:] + names[:shift]:
                summary = engine.run_cycle(name)
                print(name, summary.counters(), summary.error or "", flush=True)
                failed += summary.error is not None
            done += 1
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
