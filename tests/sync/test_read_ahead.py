"""A connector's read one page ahead of the ingest (``usm_bridge.sync.read_ahead``): the same
items in the same order, the connector's exception where it raised it, a page handed over at
its checkpoint, a bounded number of batches waiting, and a worker that stops, closes the
connector's generator in its own thread and is gone when the consumer closes it; and cycles
reading ahead store what cycles reading in their own thread store."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, MemoryConnector, make_config, running_bridge
from usm_bridge.connector import RawRecord
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import Mapping, MappingContext
from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.sync.read_ahead import ReadAhead

TRACE: contextvars.ContextVar[str] = contextvars.ContextVar("TRACE", default="unset")


class _Source:
    """A generator like a connector's read, recording what happened to it and where."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.threads: set[str] = set()
        self.closed_in: str | None = None
        self.traces: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        try:
            for n in range(self.count):
                self.threads.add(threading.current_thread().name)
                self.traces.add(TRACE.get())
                if n == self.fail_at:
                    raise ConnectionError(f"the tool failed at {n}")
                self.produced += 1
                yield n
        finally:
            self.closed_in = threading.current_thread().name


def test_every_item_comes_out_in_order_read_by_the_worker() -> None:
    source = _Source(2_500)
    TRACE.set("cycle-7")
    with ReadAhead(source, batch=100) as items:
        assert list(items) == list(range(2_500))
    assert source.threads == {"read-ahead"}
    assert source.closed_in == "read-ahead"
    assert source.traces == {"cycle-7"}  # the caller's context, copied
    assert next(items, "done") == "done"


def test_the_connectors_exception_comes_out_after_the_items_before_it() -> None:
    source = _Source(50, fail_at=30)
    taken: list[int] = []
    with ReadAhead(source, batch=8) as items:
        with pytest.raises(ConnectionError, match="the tool failed at 30"):
            for item in items:
                taken.append(item)
        assert next(items, "done") == "done"
    assert taken == list(range(30))


def test_an_empty_read_ends_at_once() -> None:
    with ReadAhead(_Source(0)) as items:
        assert list(items) == []


def test_a_bounded_number_of_batches_wait_and_close_stops_the_worker() -> None:
    source = _Source(10_000)
    items = ReadAhead(source, batch=5, batches=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    # Taken: the first batch. Waiting: two batches, and a fourth the worker cannot put yet.
    for _ in range(200):
        if source.produced >= 4 * 5:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    assert source.produced == 4 * 5
    items.close()
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
    assert source.closed_in == "read-ahead"  # its finally ran, in the worker
    assert source.produced == 4 * 5  # nothing was read after the close
    assert next(items, "done") == "done"


def test_a_boundary_hands_the_batch_over_before_the_next_item_is_read() -> None:
    taken = threading.Event()

    def pages() -> Iterator[str]:
        yield from ("record 1", "record 2", "checkpoint 1")
        # A connector waiting for its next page: the ingest has the first one meanwhile.
        assert taken.wait(timeout=10)
        yield from ("record 3", "checkpoint 2")

    with ReadAhead(pages(), boundary=lambda item: item.startswith("checkpoint")) as items:
        first = [next(items) for _ in range(3)]
        taken.set()
        assert first == ["record 1", "record 2", "checkpoint 1"]
        assert list(items) == ["record 3", "checkpoint 2"]


def test_batch_and_batches_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(_Source(1), batch=0)
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(_Source(1), batches=0)


# -- the cycle reading ahead: what it stores is what reading in its own thread stores ---------


@pytest.fixture
def ahead_bridge(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bridge]:
    monkeypatch.setattr(MemoryConnector, "reads_ahead", True)
    with running_bridge(store, make_config(tmp_path)) as built:
        yield built


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_a_cycle_reading_ahead_stores_every_record_and_the_last_cursor(
    ahead_bridge: Bridge,
) -> None:
    hr = ahead_bridge.tools["hr-tool"]
    for n in range(7):
        hr.add(title=f"Incident {n}", kind="incident")
    summary = ahead_bridge.engine.run_cycle("hr-tool")
    assert summary.ok and (summary.read, summary.stored, summary.dead_letters) == (7, 7, 0)
    assert _workers() == []
    with ahead_bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == str(hr.version)
        assert sorted(c.call.title for c in tx.list_calls(unit="hr")) == [
            f"Incident {n}" for n in range(7)
        ]


def test_a_read_failing_midway_ahead_keeps_what_was_stored_and_the_last_cursor(
    ahead_bridge: Bridge,
) -> None:
    hr = ahead_bridge.tools["hr-tool"]
    for n in range(5):
        hr.add(title=f"Incident {n}", kind="incident")
    ahead_bridge.connectors["hr-tool"].fail_read_after = (3, RetriableRemoteError("HTTP 503"))
    summary = ahead_bridge.engine.run_cycle("hr-tool")
    assert not summary.ok and "503" in (summary.error or "") and summary.stored == 3
    assert _workers() == []
    with ahead_bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == "2"  # the checkpoint after records 1-2
        assert len(tx.list_calls()) == 3
    summary = ahead_bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.stored == 2 and summary.unchanged == 1


def test_a_stop_while_reading_ahead_leaves_the_records_read_ahead_for_the_next_cycle(
    ahead_bridge: Bridge,
) -> None:
    hr = ahead_bridge.tools["hr-tool"]
    for n in range(6):
        hr.add(title=f"Incident {n}", kind="incident")

    class StopAtTheFirstRecord:
        armed = True

        @hookimpl(tryfirst=True)
        def usm_bridge_map_inbound(
            self, mapping: Mapping, record: RawRecord, context: MappingContext
        ) -> Call | None:
            if self.armed:
                self.armed = False
                ahead_bridge.stop.set()
            return None  # the built-in mapping answers

    ahead_bridge.host.register(StopAtTheFirstRecord())
    first = ahead_bridge.engine.run_cycle("hr-tool")
    assert first.stored == 1
    assert _workers() == []
    with ahead_bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") is None  # no checkpoint was reached
    ahead_bridge.stop.clear()
    second = ahead_bridge.engine.run_cycle("hr-tool")
    assert second.ok and second.stored == 5 and second.unchanged == 1
    with ahead_bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == str(hr.version)
        assert len(tx.list_calls(unit="hr")) == 6
