"""A fault on the page the engine reads ahead (:mod:`usm_bridge.sync.read_ahead`) ends or
delays the read exactly as it does read on the cycle's own thread: the same requests, retries,
records stored, cursor, dead letters, error and log lines, with ``read_ahead`` on and off."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jira_harness import connector_for, start_simulator
from usm_bridge_jira.simulator import JiraSimulator, Reply, SimFault

from usm_bridge.config import BridgeConfig
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store

INSTANCE = "fac-jira"
#: The time a retry took: its back-off is jittered, the one thing two runs say differently.
_TOOK = re.compile(r" in \d+(\.\d+)?s;")
ISSUES, PAGE = 7, 3  # pages of 3, 3 and 1: the second is the one read ahead

#: What the simulator does to the second search request (the page read ahead): it answers
#: it as ``fail(simulator)`` arranges, or with the reply it returns.
Fault = Callable[[JiraSimulator], Reply | None]


def _fail(fault: SimFault, times: int = 1, **options: Any) -> Fault:
    def arrange(simulator: JiraSimulator) -> None:
        simulator.fail_next(fault, times, **options)

    return arrange


def _malformed(_: JiraSimulator) -> Reply:
    return Reply(200, {"issues": "not a list of issues", "isLast": True})


FAULTS: dict[str, tuple[Fault, dict[str, Any]]] = {
    "429-then-success": (_fail(SimFault.RATE_LIMITED, retry_after="3"), {}),
    "5xx-exhausted": (_fail(SimFault.SERVER_ERROR, times=4), {}),
    "timeout-then-success": (
        _fail(SimFault.SLOW, delay=2.0),
        {"read_timeout": 1.0, "max_attempts": 2},
    ),
    "malformed-page": (_malformed, {}),
}


def _same(text: str) -> str:
    return _TOOK.sub(" in (jittered)s;", text)


class _Lines(logging.Handler):
    """Every log line of the bridge and its connector, whichever thread wrote it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: Counter[tuple[str, str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("usm_bridge"):
            self.lines[(record.name, record.levelname, _same(record.getMessage()))] += 1


def _backfill(
    simulator: JiraSimulator,
    folder: Path,
    fault: Fault,
    settings: dict[str, Any],
    *,
    read_ahead: bool,
) -> dict[str, Any]:
    """A backfill of ``simulator``'s issues into a fresh store, ``fault`` on the second page."""
    connector = connector_for(simulator, page_size=PAGE, **settings)
    store = Store.open(f"sqlite:///{folder}/store.db")
    lines = _Lines()
    searches = 0
    served: list[tuple[str, str]] = []
    answer = simulator.answer

    def answering(method: str, path: str, query: Any, headers: Any, body: bytes) -> Reply:
        nonlocal searches
        # Noted as it comes: a slow answer may end after the client gave up on it.
        served.append((method, path.split("/rest/api/", 1)[1]))
        reply = None
        if path.endswith("/search/jql"):
            searches += 1
            if searches == 2:
                reply = fault(simulator)
        return reply or answer(method, path, query, headers, body)

    config = BridgeConfig.model_validate(
        {
            "units": {"fac": {"name": "fac"}},
            "instances": {
                INSTANCE: {
                    "name": INSTANCE,
                    "unit": "fac",
                    "kind": "jira",
                    "mapping": str(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml"),
                    "read_ahead": read_ahead,
                }
            },
        }
    )
    logging.getLogger().addHandler(lines)
    try:
        simulator.answer = answering  # type: ignore[method-assign]
        engine = build_runtime(
            config, store, host=PluginHost(), connectors={INSTANCE: connector}
        ).engine
        summary = engine.run_cycle(INSTANCE)
        engine.close()
        with store.begin(readonly=True) as tx:
            stored = sorted(i.remote_id for i in tx.list_identities(INSTANCE))
            cursor = tx.get_cursor(INSTANCE)
            letters = [(d.stage, d.reason) for d in tx.list_dead_letters()]
    finally:
        logging.getLogger().removeHandler(lines)
        simulator.answer = answer  # type: ignore[method-assign]
        connector.close()
        store.close()
    return {
        "counts": (summary.read, summary.stored, summary.dead_letters),
        "error": None if summary.error is None else _same(summary.error),
        "served": served,
        "stored": stored,
        "cursor": cursor,
        "letters": letters,
        "lines": lines.lines,
    }


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_on_the_page_read_ahead_has_the_outcome_it_has_without(
    tmp_path: Path, name: str
) -> None:
    fault, settings = FAULTS[name]
    outcomes = {}
    simulator, _ = start_simulator("cloud")
    try:
        site = simulator.site
        site.seed(ISSUES, start=site.clock.now() - timedelta(hours=2), step=timedelta(minutes=10))
        for read_ahead in (True, False):
            folder = tmp_path / ("ahead" if read_ahead else "not-ahead")
            folder.mkdir()
            outcomes[read_ahead] = _backfill(
                simulator, folder, fault, settings, read_ahead=read_ahead
            )
    finally:
        simulator.stop()
    ahead, not_ahead = outcomes[True], outcomes[False]
    assert ahead == not_ahead
    searches = [path for _, path in ahead["served"] if path.endswith("search/jql")]
    if name.endswith("then-success"):
        assert ahead["error"] is None and ahead["counts"] == (ISSUES, ISSUES, 0)
        assert len(searches) == 4  # three pages, the second twice: the fault, then a retry
    else:
        # The first page is stored and its cursor kept; the read ends at the second.
        assert ahead["error"] is not None and ahead["counts"][:2] == (PAGE, PAGE)
        assert len(ahead["stored"]) == PAGE and ahead["cursor"] is not None
