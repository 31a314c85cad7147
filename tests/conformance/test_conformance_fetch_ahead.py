"""The report's pass fetches a cursor's next batch in a thread while it works on the last one
(``fetch_ahead``): every batch in order, a fetch's error raised where the caller reads, and no
thread left behind when the caller stops early or the query fails mid-stream."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from usm_bridge.conformance.call_stream import CallSource
from usm_bridge.conformance.fetch_ahead import batches, fetched_ahead
from usm_bridge.store import Store

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "usm-bridge-fetch-ahead"]


class _Batches:
    """A fetch handing out ``batches`` then empty ones, counting its calls; one of them may
    raise, and one may wait for ``release`` (a fetch still under way when the caller stops)."""

    def __init__(
        self,
        batches: list[list[int]],
        *,
        fail_at: int | None = None,
        hold_at: int | None = None,
        signal_at: int | None = None,
    ) -> None:
        self.batches, self.fail_at, self.hold_at = batches, fail_at, hold_at
        self.signal_at = signal_at
        #: Set once fetch ``signal_at`` returned.
        self.fetched = threading.Event()
        self.calls = 0
        self.running = False
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> Sequence[int]:
        self.running = True
        try:
            number, self.calls = self.calls, self.calls + 1
            if number == self.fail_at:
                raise RuntimeError(f"fetch {number} failed")
            if number == self.hold_at:
                self.held.set()
                self.release.wait()
            return self.batches[number] if number < len(self.batches) else []
        finally:
            self.running = False
            if number == self.signal_at:
                self.fetched.set()


def test_every_batch_comes_in_order_and_the_thread_ends_with_them() -> None:
    fetch = _Batches([[1, 2], [3], [4, 5, 6]])
    assert list(fetched_ahead(fetch)) == [[1, 2], [3], [4, 5, 6]]
    assert fetch.calls == 4  # the last one empty: the end
    assert not _fetch_threads()


def test_a_fetch_that_fails_raises_in_the_caller_after_the_batches_before_it() -> None:
    fetch = _Batches([[1], [2], [3]], fail_at=2)
    taken: list[Sequence[int]] = []
    with pytest.raises(RuntimeError, match="fetch 2 failed"):
        for batch in fetched_ahead(fetch):
            taken.append(batch)
    assert taken == [[1], [2]]
    assert fetch.calls == 3 and not _fetch_threads()


def test_a_caller_stopping_early_stops_the_thread_after_the_fetch_under_way() -> None:
    # Batch 1 fetched ahead is still running (held) when the caller stops after batch 0: the
    # close waits for it, so the cursor is never closed under a fetch, and nothing follows.
    fetch = _Batches([[0], [1], [2], [3]], hold_at=1)
    ahead = fetched_ahead(fetch)
    assert next(ahead) == [0]
    assert fetch.held.wait(timeout=30)
    releaser = threading.Timer(0.2, fetch.release.set)
    releaser.start()
    ahead.close()
    assert fetch.release.is_set() and not fetch.running
    assert fetch.calls == 2 and not _fetch_threads()


def test_a_caller_stopping_while_a_batch_waits_to_be_taken_ends_the_thread() -> None:
    # Batches ready ahead, none taken: the thread waits to hand one over when the caller stops.
    fetch = _Batches([[n] for n in range(10)], signal_at=2)
    ahead = fetched_ahead(fetch)
    assert next(ahead) == [0]
    # Batch 1 waits in the queue, batch 2 in the thread's hands: the thread hands it over
    # only once batch 1 is taken (the queue holds one), so it waits when the caller stops.
    assert fetch.fetched.wait(timeout=30)
    ahead.close()
    assert not _fetch_threads() and fetch.calls == 3


def test_a_generator_never_started_starts_no_thread() -> None:
    fetch = _Batches([[1]])
    fetched_ahead(fetch).close()
    assert fetch.calls == 0 and not _fetch_threads()


@pytest.fixture
def pg_connection(postgres_url: str) -> Iterator[psycopg.Connection[tuple[int]]]:
    engine = sa.create_engine(postgres_url)
    try:
        raw = engine.raw_connection()
        try:
            yield raw.driver_connection  # type: ignore[misc]
        finally:
            raw.close()
    finally:
        engine.dispose()


def test_a_query_failing_mid_stream_raises_in_the_caller(
    pg_connection: psycopg.Connection[tuple[int]],
) -> None:
    # The server computes the rows as they are fetched: the fourth fails (division by zero).
    with pg_connection.transaction():
        cursor = pg_connection.cursor(name="fetch_ahead_fails")
        taken: list[int] = []
        with closing(cursor), closing(batches(cursor, 1, ahead=True)) as fetched:
            cursor.execute("SELECT 10 / (4 - x) FROM generate_series(1, 6) AS x")
            with pytest.raises(psycopg.errors.DivisionByZero):
                for rows in fetched:
                    taken.extend(row[0] for row in rows)
        assert taken == [3, 5, 10]
    assert not _fetch_threads()
    assert pg_connection.execute("SELECT 1").fetchone() == (1,)


# The related streams' SQLAlchemy cursors are left to the collector when the pass stops early
# (closed by relrows' change); the calls' cursor and its fetches are what this test is about.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_pass_stopped_after_its_first_page_leaves_no_thread_and_its_connection_usable(
    fresh_postgres_url: str,
) -> None:
    fill_store(fresh_postgres_url, 40, seed=17)
    with Store.open(fresh_postgres_url) as store:
        pages = CallSource(store.engine, page_size=4).pages()
        first = next(pages)
        assert len(first.calls) == 4
        pages.close()
        assert not _fetch_threads()
        # The whole pass, after: every call once, in pages no larger than asked.
        source = CallSource(store.engine, page_size=4)
        ids = [stored.id for page in source.pages() for stored in page.calls]
        assert len(ids) == len(set(ids)) == 40
        assert not _fetch_threads()
