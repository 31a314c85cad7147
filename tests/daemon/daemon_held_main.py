"""``usm-bridge`` whose connectors' reads wait while a file exists (run as a subprocess):

    python daemon_held_main.py STATE_DIR usm-bridge-arguments...

The real engine, store and connectors; only each read first creates ``STATE_DIR/reading-PID``
(the process is inside a cycle, holding its instance's locks) and then waits for as long as
``STATE_DIR/hold`` exists: a test catches the process mid-cycle without guessing how long a
cycle takes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from usm_bridge import cli
from usm_bridge.connector import Checkpoint, Connector, RawRecord
from usm_bridge.sync.instances import InstanceRegistry

STATE = Path(sys.argv[1])
_connector = InstanceRegistry.connector


class HeldConnector:
    """The real connector, with reads held while STATE/hold exists."""

    def __init__(self, real: Connector) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        (STATE / f"reading-{os.getpid()}").touch()
        while (STATE / "hold").exists():
            time.sleep(0.02)
        yield from self._real.read_changes(cursor)


def connector(self: InstanceRegistry, name: str) -> Any:
    return HeldConnector(_connector(self, name))


InstanceRegistry.connector = connector  # type: ignore[method-assign]
cli.main(sys.argv[2:])
