"""Counts statements and requests of a benchmarked ``usm-bridge`` process (see ``call_counts``).

``bench_sync_backfill.py`` puts this folder and ``bench/`` first on ``PYTHONPATH`` of the
``usm-bridge sync --once`` subprocess it times, so the real console script runs unchanged and
Python imports this module at start-up; without ``USM_BRIDGE_BENCH_COUNTS`` it does nothing.
"""

import os
from pathlib import Path

_target = os.environ.get("USM_BRIDGE_BENCH_COUNTS")
if _target:
    from call_counts import count_until_exit

    count_until_exit(Path(_target))
