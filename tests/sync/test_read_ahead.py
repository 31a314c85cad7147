"""The read-ahead (:mod:`usm_bridge.sync.read_ahead`): the connector's next page is read while
the engine stores the one before it, one page at most, and a cycle stores, commits and reports
exactly what it did reading on its own thread (``read_ahead = false``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import (
    Bridge,
    BuggyInbound,
    MemoryConnector,
    MemoryTool,
    make_config,
    running_bridge,
)
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.store import Store
from usm_bridge.store.cursors_and_runs import CursorsAndRuns
from usm_bridge.sync.instances import InstanceRegistry
from usm_bridge.sync.read_ahead import ReadAhead

HR = "hr-tool"
PAGE = 2
#: A guard against a hang, never a measure: a correct run sets the events it waits for at once.
GUARD_S = 10.0


class PagedConnector(MemoryConnector):
    """The memory tool read in pages of ``PAGE`` tickets, telling who asks for each page and
    on which thread, with an optional fault in place of one page."""

    def __init__(self, tool: MemoryTool) -> None:
        super().__init__(tool, page=PAGE)
        #: (page number from 1, thread name) of every page asked for.
        self.asked: list[tuple[int, str]] = []
        #: Set when page n (from 1) is asked for.
        self.asked_for: dict[int, threading.Event] = {n: threading.Event() for n in range(1, 20)}
        #: Raised instead of reading this page (number from 1).
        self.fail_page: tuple[int, BaseException] | None = None
        #: Page (number from 1) that waits for the event before it is read: a hung tool.
        self.hang_page: tuple[int, threading.Event] | None = None
        #: Set once the read's generator is closed or done (its ``finally`` ran).
        self.finished = threading.Event()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        after = int(cursor or 0)
        changed = self.changed_since(after)
        try:
            for number, start in enumerate(range(0, len(changed), PAGE), start=1):
                self.asked.append((number, threading.current_thread().name))
                self.asked_for[number].set()
                if self.hang_page is not None and self.hang_page[0] == number:
                    self.hang_page[1].wait(GUARD_S)
                    self.asked.append((number, "answered"))
                if self.fail_page is not None and self.fail_page[0] == number:
                    raise self.fail_page[1]
                for ticket in changed[start : start + PAGE]:
                    data = {k: v for k, v in ticket.items() if k not in ("version", "correlation")}
                    yield RawRecord(remote_id=ticket["id"], data=data)
                yield Checkpoint(cursor=str(changed[start : start + PAGE][-1]["version"]))
            yield Checkpoint(cursor=str(max([after, *(t["version"] for t in changed)])))
        finally:
            self.finished.set()


def _paged(bridge: Bridge, *, read_ahead: bool, tickets: int = 7) -> PagedConnector:
    """hr's tool with ``tickets`` tickets, read through a :class:`PagedConnector`."""
    hr = bridge.tools[HR]
    for n in range(tickets):
        hr.add(title=f"Desk {n}", kind="incident")
    connector = PagedConnector(hr)
    bridge.connectors[HR] = connector
    bridge.config.instances[HR].read_ahead = read_ahead
    bridge.restart()
    return connector


def _watch(
    bridge: Bridge,
    monkeypatch: pytest.MonkeyPatch,
    during_page: Callable[[int], None] | None = None,
) -> list[tuple[str, Any]]:
    """Every page the engine stores (its remote ids) and every cursor it commits, in order;
    ``during_page(n)`` runs while page n (from 1) is being stored."""
    events: list[tuple[str, Any]] = []
    ingest_page = bridge.engine.ingest.ingest_page
    set_cursor = CursorsAndRuns.set_cursor

    def watched_ingest(instance: str, page: list[RawRecord], **kwargs: Any) -> Any:
        events.append(("page", [record.remote_id for record in page]))
        if during_page is not None:
            during_page(sum(1 for kind, _ in events if kind == "page"))
        return ingest_page(instance, page, **kwargs)

    def watched_cursor(self: CursorsAndRuns, instance: str, cursor: str) -> Any:
        events.append(("cursor", cursor))
        return set_cursor(self, instance, cursor)

    monkeypatch.setattr(bridge.engine.ingest, "ingest_page", watched_ingest)
    monkeypatch.setattr(CursorsAndRuns, "set_cursor", watched_cursor)
    return events


def _outcome(bridge: Bridge) -> dict[str, Any]:
    """What the store holds of hr after a cycle."""
    with bridge.store.begin(readonly=True) as tx:
        return {
            "cursor": tx.get_cursor(HR),
            "titles": sorted(stored.call.title for stored in tx.list_calls(unit="hr")),
            "letters": [(d.stage, d.reason) for d in tx.list_dead_letters()],
        }


@pytest.mark.parametrize("read_ahead", [True, False], ids=["ahead", "not-ahead"])
def test_pages_and_cursor_commits_come_in_the_same_order_either_way(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, read_ahead: bool
) -> None:
    _paged(bridge, read_ahead=read_ahead)
    events = _watch(bridge, monkeypatch)
    summary = bridge.engine.run_cycle(HR)
    assert summary.ok, summary.error
    assert (summary.read, summary.stored) == (7, 7)
    ids = [f"{HR}-{n}" for n in range(1, 8)]
    # Each page stored, then its cursor; the last checkpoint after the last page.
    assert events == [
        ("page", ids[0:2]), ("cursor", "2"), ("page", ids[2:4]), ("cursor", "4"),
        ("page", ids[4:6]), ("cursor", "6"), ("page", ids[6:7]), ("cursor", "7"),
        ("cursor", "7"),
    ]  # fmt: skip
    assert _outcome(bridge)["cursor"] == "7"


def test_the_next_page_is_read_while_this_one_is_stored_and_no_further(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = _paged(bridge, read_ahead=True)
    seen: dict[str, bool] = {}

    def during(page: int) -> None:
        if page == 1:
            seen["page 2 asked while page 1 is stored"] = connector.asked_for[2].wait(GUARD_S)
            # Page 2 is read ahead; page 3 waits until page 1 is stored and its cursor too.
            seen["page 3 asked while page 1 is stored"] = connector.asked_for[3].wait(0.5)

    _watch(bridge, monkeypatch, during)
    summary = bridge.engine.run_cycle(HR)
    assert summary.ok and summary.read == 7
    assert seen == {
        "page 2 asked while page 1 is stored": True,
        "page 3 asked while page 1 is stored": False,
    }
    # On a thread of its own, never the engine's.
    assert {thread for _, thread in connector.asked} == {f"read-ahead {HR}"}
    assert connector.finished.is_set()


def test_read_ahead_off_reads_each_page_on_the_cycles_thread_after_the_one_before(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = _paged(bridge, read_ahead=False)
    asked_during: dict[int, list[int]] = {}

    def during(page: int) -> None:
        asked_during[page] = [number for number, _ in connector.asked]

    _watch(bridge, monkeypatch, during)
    summary = bridge.engine.run_cycle(HR)
    assert summary.ok and summary.read == 7
    assert asked_during == {1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [1, 2, 3, 4]}
    assert {thread for _, thread in connector.asked} == {threading.current_thread().name}


@pytest.mark.parametrize(
    "fault",
    [RetriableRemoteError("jira answered 503 four times"), ValueError("malformed page")],
    ids=["remote-error", "malformed"],
)
def test_a_fault_on_the_page_read_ahead_ends_the_read_where_it_did_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception
) -> None:
    outcomes = []
    for read_ahead in (True, False):
        folder = tmp_path / str(read_ahead)
        folder.mkdir()
        store = Store.open(f"sqlite:///{folder}/store.db")
        try:
            with running_bridge(store, make_config(folder)) as bridge:
                connector = _paged(bridge, read_ahead=read_ahead)
                connector.fail_page = (3, fault)
                with monkeypatch.context() as patch:
                    events = _watch(bridge, patch)
                    summary = bridge.engine.run_cycle(HR)
                outcomes.append(
                    (summary.read, summary.stored, summary.error, events, _outcome(bridge))
                )
                assert connector.finished.is_set()
        finally:
            store.close()
    ahead, not_ahead = outcomes
    assert ahead == not_ahead
    read, stored, error, events, outcome = ahead
    assert (read, stored) == (4, 4)
    assert error == f"reading {HR} failed after 4 records: {fault}"
    assert events[-1] == ("cursor", "4") and outcome["cursor"] == "4"


def test_a_stop_while_a_page_is_stored_keeps_what_it_did_without_read_ahead(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = _paged(bridge, read_ahead=True)

    def during(page: int) -> None:
        if page == 2:
            connector.asked_for[3].wait(GUARD_S)  # page 3 read ahead, then dropped
            bridge.stop.set()

    events = _watch(bridge, monkeypatch, during)
    summary = bridge.engine.run_cycle(HR)
    bridge.stop.clear()
    assert summary.ok
    # Page 2 ends after the record in flight; its cursor is not stored.
    assert events == [("page", [f"{HR}-1", f"{HR}-2"]), ("cursor", "2"),
                      ("page", [f"{HR}-3", f"{HR}-4"])]  # fmt: skip
    # A stop does not wait for the page read ahead: the thread ends the read on its own.
    assert connector.finished.wait(GUARD_S)
    assert summary.read == 3 and _outcome(bridge)["cursor"] == "2"
    # The next cycle reads from the stored cursor: nothing lost, nothing twice.
    again = bridge.engine.run_cycle(HR)
    assert again.ok and _outcome(bridge)["titles"] == sorted(f"Desk {n}" for n in range(7))


def test_the_connectors_own_exception_is_raised_where_the_caller_reads() -> None:
    error = RetriableRemoteError("429 four times")

    def items() -> Iterator[RawRecord | Checkpoint]:
        yield Checkpoint(cursor="1")
        raise error

    with ReadAhead(items(), name="x") as ahead:
        assert next(ahead) == Checkpoint(cursor="1")
        with pytest.raises(RetriableRemoteError) as raised:
            next(ahead)
        assert raised.value is error
        assert next(ahead, None) is None


def test_records_waiting_are_bounded_when_checkpoints_are_far_apart() -> None:
    produced: list[int] = []
    waiting = threading.Event()

    def items() -> Iterator[RawRecord | Checkpoint]:
        for n in range(50):
            produced.append(n)
            if n == 10:
                waiting.set()
            yield RawRecord(remote_id=str(n), data={})
        yield Checkpoint(cursor="end")

    with ReadAhead(items(), name="x", max_records=5) as ahead:
        first = next(ahead)
        assert first.remote_id == "0"  # type: ignore[union-attr]
        # The batch of 5 taken, 5 more waiting: the eleventh (index 10) is not asked for.
        assert not waiting.wait(0.3)
        assert len(produced) <= 10
        rest = list(ahead)
    assert len(rest) == 50


def test_an_exception_in_the_caller_does_not_wait_for_a_request_in_flight() -> None:
    # A worker's time limit while the tool hangs: the read ends at once, the thread on its own.
    order: list[str] = []
    release = threading.Event()
    asked = threading.Event()

    def items() -> Iterator[RawRecord | Checkpoint]:
        yield Checkpoint(cursor="1")
        asked.set()
        release.wait(GUARD_S)  # the hung tool
        order.append("request ended")
        yield Checkpoint(cursor="2")

    with pytest.raises(TimeoutError), ReadAhead(items(), name="x") as ahead:
        next(ahead)
        assert asked.wait(GUARD_S)
        raise TimeoutError("soft time limit")
    order.append("read ended")
    release.set()
    ahead._thread.join(GUARD_S)
    assert order == ["read ended", "request ended"]


def test_a_normal_end_waits_until_the_thread_is_done_with_the_connector() -> None:
    closed = threading.Event()

    def items() -> Iterator[RawRecord | Checkpoint]:
        try:
            yield Checkpoint(cursor="1")
            yield Checkpoint(cursor="2")
            yield Checkpoint(cursor="3")
        finally:
            closed.set()

    with ReadAhead(items(), name="x") as ahead:
        assert next(ahead) == Checkpoint(cursor="1")
    assert closed.is_set()  # the generator closed on its thread before close() returned


def test_a_read_ended_by_the_engine_does_not_wait_for_a_hung_page_read_ahead(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mapping plugin's remote error that may pass ends the read (as a worker's time limit
    # does) while the tool hangs on the page read ahead: the cycle ends, the thread later.
    connector = _paged(bridge, read_ahead=True)
    bridge.host.register(BuggyInbound("Desk 1", RetriableRemoteError("lookup timed out")))
    answer = threading.Event()
    connector.hang_page = (2, answer)
    retired: list[str] = []
    monkeypatch.setattr(bridge.engine.instances, "retire", lambda name: not retired.append(name))
    summary = bridge.engine.run_cycle(HR)
    # The thread still holds the connector: the next to ask for it gets a new one.
    assert retired == [HR]
    connector.asked.append((0, "cycle ended"))
    answer.set()
    assert connector.finished.wait(GUARD_S)
    assert summary.error is not None and "lookup timed out" in summary.error
    assert connector.asked.index((0, "cycle ended")) < connector.asked.index((2, "answered"))
    assert _outcome(bridge)["cursor"] is None  # page 1 never finished: nothing committed


def test_a_read_that_ends_normally_keeps_its_connector(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    _paged(bridge, read_ahead=True)
    retired: list[str] = []
    monkeypatch.setattr(bridge.engine.instances, "retire", lambda name: not retired.append(name))
    assert bridge.engine.run_cycle(HR).error is None
    assert retired == []


class _Built:
    """A connector as the registry builds one from the config (only what it asks of it)."""

    closed = 0

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_config(cls, name: str, settings: dict[str, Any], *, base_dir: Path | None) -> _Built:
        return cls(name)

    def close(self) -> None:
        _Built.closed += 1


def test_a_retired_connector_is_built_afresh_for_the_next_user_and_still_closed(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge.host, "connector_type", lambda kind: _Built)
    registry = InstanceRegistry(bridge.config, bridge.host)
    first = registry.connector(HR)
    assert registry.connector(HR) is first
    assert registry.retire(HR)
    second = registry.connector(HR)
    assert second is not first  # the thread that holds the first keeps it alone
    assert not registry.retire("fac-tool")  # never built
    _Built.closed = 0
    registry.close()
    assert _Built.closed == 2  # the retired one too


def test_an_injected_connector_is_never_retired(bridge: Bridge) -> None:
    injected = bridge.engine.instances.connector(HR)
    assert not bridge.engine.instances.retire(HR)
    assert bridge.engine.instances.connector(HR) is injected
