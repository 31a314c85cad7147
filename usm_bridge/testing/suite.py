"""The standard connector suite: one test per promise of :mod:`usm_bridge.connector`.

Turn it on for a connector in one line of a test module::

    from usm_bridge.testing import connector_test_class

    TestMyConnector = connector_test_class(MyHarness)

or, when the harness needs fixtures of its own (a simulator server, say), subclass the suite and
override its ``harness`` fixture::

    class TestMyConnector(ConnectorSuite):
        @pytest.fixture
        def harness(self, my_simulator):
            harness = MyHarness(my_simulator)
            yield harness
            harness.close()

Every test is named after the promise it checks, and a test that finds the promise broken fails
with ``BROKEN PROMISE: <the promise>`` and what it saw, so a connector author reads at once which
part of the contract their connector breaks.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn

import pytest

from ..connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    RawRecord,
    RemoteRef,
    Vocabulary,
)
from ..errors import PermanentRemoteError, RetriableRemoteError
from .harness import ConnectorHarness, Fault

__all__ = ["PROMISES", "ConnectorSuite", "broken_promise", "connector_test_class"]

CHECK: Final = "check() reports the tool usable"
DISCOVER: Final = "discover() returns the tool's statuses"
FULL_READ: Final = "a full read yields every record exactly once and ends with a checkpoint"
INCREMENTAL: Final = (
    "a read from a saved cursor yields the changed record and none of the untouched ones"
)
RESUME: Final = "a read interrupted after a checkpoint and resumed from it loses nothing"
IDEMPOTENT_CREATE: Final = (
    "create is idempotent by correlation: repeated, it makes one record, "
    "which find_by_correlation finds"
)
UNKNOWN_CORRELATION: Final = "find_by_correlation answers None for a correlation never created"
UPDATE: Final = "update writes the draft into the record, and the next read shows it"
COMMENT: Final = "add_comment adds the comment to the record, and the next read shows it"
READ_RETRIED: Final = "a read retries rate limits (429) and server errors (5xx), then succeeds"
UPDATE_RETRIED: Final = "an update retries rate limits (429) and server errors (5xx), then succeeds"
GIVES_UP: Final = "a fault that does not pass surfaces as RetriableRemoteError"
PERMANENT: Final = (
    "a permanent 4xx surfaces at once as PermanentRemoteError carrying the remote's message"
)

#: Every promise the suite checks, in the order of its tests.
PROMISES: Final = (
    CHECK,
    DISCOVER,
    FULL_READ,
    INCREMENTAL,
    RESUME,
    IDEMPOTENT_CREATE,
    UNKNOWN_CORRELATION,
    UPDATE,
    COMMENT,
    READ_RETRIED,
    UPDATE_RETRIED,
    GIVES_UP,
    PERMANENT,
)

#: Faults are injected this many times in a row, so one retry is not enough to pass.
FAULT_REPEATS: Final = 2
_FAULT_IDS: Final = [fault.name.lower() for fault in Fault]


def broken_promise(promise: str, detail: str) -> NoReturn:
    """Fail the running test, naming the broken promise first and what was seen after it."""
    pytest.fail(f"BROKEN PROMISE: {promise}\n{detail}", pytrace=False)


@contextmanager
def _keeping(promise: str, doing: str) -> Iterator[None]:
    """Turn an unexpected exception from the connector into a failure naming the promise."""
    __tracebackhide__ = True
    try:
        yield
    except Exception as error:
        pytest.fail(
            f"BROKEN PROMISE: {promise}\n{doing} raised {type(error).__name__}: {error}",
            pytrace=True,
        )


def _marker(what: str) -> str:
    return f"usm-suite-{what}-{uuid.uuid4().hex[:12]}"


def _holds(record: Mapping[str, Any] | None, text: str) -> bool:
    return record is not None and text in json.dumps(record, default=str, ensure_ascii=False)


@dataclass
class _Read:
    records: list[RawRecord]
    checkpoints: list[Checkpoint]

    @property
    def ids(self) -> list[str]:
        return [record.remote_id for record in self.records]

    @property
    def cursor(self) -> str:
        return self.checkpoints[-1].cursor

    def record(self, remote_id: str) -> RawRecord | None:
        found = [record for record in self.records if record.remote_id == remote_id]
        return found[-1] if found else None


def _read(connector: Connector, cursor: str | None, promise: str) -> _Read:
    """Read to the end, checking the shape every read must have."""
    with _keeping(promise, f"read_changes({cursor!r})"):
        items = list(connector.read_changes(cursor))
    strays = [type(item).__name__ for item in items if not isinstance(item, RawRecord | Checkpoint)]
    if strays:
        broken_promise(promise, f"read_changes yielded {strays}, not RawRecord or Checkpoint")
    if not items or not isinstance(items[-1], Checkpoint):
        last = type(items[-1]).__name__ if items else "nothing"
        broken_promise(
            promise,
            f"read_changes({cursor!r}) ended with {last}, not a Checkpoint: the engine "
            "could never save how far it got",
        )
    return _Read(
        records=[item for item in items if isinstance(item, RawRecord)],
        checkpoints=[item for item in items if isinstance(item, Checkpoint)],
    )


def _listing(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids)) or "none"


class ConnectorSuite:
    """The standard tests for one connector; see the module docstring for how to turn it on.

    Set ``harness_class`` (what :func:`connector_test_class` does) or override the ``harness``
    fixture.
    """

    harness_class: ClassVar[type[ConnectorHarness] | None] = None

    @pytest.fixture
    def harness(self) -> Iterator[ConnectorHarness]:
        """A fresh harness per test, closed afterwards."""
        if self.harness_class is None:
            pytest.fail(
                f"{type(self).__name__} names no harness: use connector_test_class(MyHarness), "
                "set harness_class, or override the harness fixture",
                pytrace=False,
            )
        harness = self.harness_class()
        try:
            yield harness
        finally:
            harness.close()

    @pytest.fixture
    def connector(self, harness: ConnectorHarness) -> Iterator[Connector]:
        """The connector under test, from the harness, closed afterwards."""
        connector = harness.make_connector()
        try:
            yield connector
        finally:
            connector.close()

    # -- reaching the tool -----------------------------------------------------------------------

    def test_check_succeeds(self, connector: Connector) -> None:
        """check() reports the tool usable."""
        with _keeping(CHECK, "check()"):
            result = connector.check()
        if not isinstance(result, CheckResult):
            broken_promise(CHECK, f"check() returned {type(result).__name__}, not CheckResult")
        if not result.ok:
            broken_promise(CHECK, f"check() answered ok=False: {result.detail or '(no detail)'}")

    def test_discover_returns_statuses(self, connector: Connector) -> None:
        """discover() returns the tool's statuses (the base of the mapping conformance report)."""
        with _keeping(DISCOVER, "discover()"):
            vocabulary = connector.discover()
        if not isinstance(vocabulary, Vocabulary):
            broken_promise(DISCOVER, f"discover() returned {type(vocabulary).__name__}")
        if not vocabulary.statuses:
            broken_promise(DISCOVER, "discover() returned no statuses")
        seen = Counter((value.scope, value.value) for value in vocabulary.statuses)
        if any(not value for _, value in seen):
            broken_promise(DISCOVER, "discover() returned a status with an empty value")
        twice = [f"{value} ({scope or 'unscoped'})" for (scope, value), n in seen.items() if n > 1]
        if twice:
            broken_promise(DISCOVER, f"statuses listed more than once: {', '.join(twice)}")

    # -- reading -------------------------------------------------------------------------------

    def test_full_read_yields_every_record_once_and_ends_with_checkpoint(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """A full read yields every record exactly once and ends with a checkpoint."""
        seeded = harness.seed(harness.seed_count)
        read = _read(connector, None, FULL_READ)
        counts = Counter(read.ids)
        missing = [remote_id for remote_id in seeded if not counts[remote_id]]
        if missing:
            broken_promise(FULL_READ, f"records seeded but never yielded: {_listing(missing)}")
        repeated = {remote_id: n for remote_id, n in counts.items() if n > 1}
        if repeated:
            broken_promise(FULL_READ, f"records yielded more than once (id: times): {repeated}")

    def test_incremental_read_yields_changed_records_only(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """A read from a saved cursor yields the changed record and none of the untouched ones."""
        seeded = harness.seed(harness.seed_count)
        saved = _read(connector, None, INCREMENTAL).cursor
        harness.let_time_pass()
        quiet = _read(connector, saved, INCREMENTAL)
        again = sorted(set(quiet.ids) & set(seeded))
        if again:
            broken_promise(
                INCREMENTAL,
                f"with nothing changed, the read from cursor {saved!r} yielded old records "
                f"again: {_listing(again)}",
            )
        changed = seeded[len(seeded) // 2]
        harness.touch(changed)
        read = _read(connector, saved, INCREMENTAL)
        if changed not in read.ids:
            broken_promise(
                INCREMENTAL,
                f"record {changed} was changed after cursor {saved!r} but the read from it "
                f"did not yield it (yielded: {_listing(read.ids)})",
            )
        untouched = sorted(set(read.ids) & (set(seeded) - {changed}))
        if untouched:
            broken_promise(
                INCREMENTAL,
                f"the read from cursor {saved!r} yielded records unchanged since: "
                f"{_listing(untouched)}",
            )

    def test_interrupted_read_resumes_without_loss(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """A read interrupted after its first checkpoint and resumed from it loses nothing."""
        seeded = harness.seed(harness.seed_count)
        before: list[str] = []
        checkpoint: Checkpoint | None = None
        with _keeping(RESUME, "read_changes(None)"):
            items = connector.read_changes(None)
            for item in items:
                if isinstance(item, Checkpoint):
                    checkpoint = item
                    break
                before.append(item.remote_id)
            close = getattr(items, "close", None)
            if close is not None:  # the interruption: the engine stops consuming
                close()
        if checkpoint is None:
            broken_promise(RESUME, "read_changes(None) ended without yielding any checkpoint")
        if set(seeded) <= set(before):
            pytest.skip(
                f"the first checkpoint came after all {len(seeded)} seeded records, so there "
                "is nothing to interrupt: configure a page size below the harness's seed_count"
            )
        created_meanwhile = harness.seed(1)
        resumed = _read(connector, checkpoint.cursor, RESUME)
        lost = [
            remote_id
            for remote_id in seeded + created_meanwhile
            if remote_id not in before and remote_id not in resumed.ids
        ]
        if lost:
            broken_promise(
                RESUME,
                f"interrupted after the checkpoint {checkpoint.cursor!r} (records before it: "
                f"{_listing(before)}), the resumed read never yielded {_listing(lost)}",
            )

    # -- writing -------------------------------------------------------------------------------

    def test_create_is_idempotent_by_correlation(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """Create repeated with one correlation makes one record; find_by_correlation finds it."""
        harness.seed(2)  # other records, so that a lookup ignoring the correlation shows
        text, correlation = _marker("create"), _marker("correlation")
        with _keeping(IDEMPOTENT_CREATE, "the first create()"):
            first = connector.create(harness.make_draft(text), correlation)
        with _keeping(IDEMPOTENT_CREATE, "create() repeated with the same correlation"):
            second = connector.create(harness.make_draft(text), correlation)
        if not isinstance(first, RemoteRef) or not isinstance(second, RemoteRef):
            broken_promise(IDEMPOTENT_CREATE, "create() did not return a RemoteRef")
        holders = [rid for rid in harness.all_remote_ids() if _holds(harness.read_back(rid), text)]
        if len(holders) != 1:
            broken_promise(
                IDEMPOTENT_CREATE,
                f"after two creates with correlation {correlation!r} the backend holds "
                f"{len(holders)} records with the draft's text: {_listing(holders)}",
            )
        if first.remote_id != second.remote_id:
            broken_promise(
                IDEMPOTENT_CREATE,
                f"the repeated create returned {second.remote_id}, the first {first.remote_id}",
            )
        if first.remote_id != holders[0]:
            broken_promise(
                IDEMPOTENT_CREATE,
                f"create() returned {first.remote_id} but the record is {holders[0]}",
            )
        with _keeping(IDEMPOTENT_CREATE, "find_by_correlation()"):
            found = connector.find_by_correlation(correlation)
        if found is None or found.remote_id != first.remote_id:
            broken_promise(
                IDEMPOTENT_CREATE,
                f"find_by_correlation({correlation!r}) answered {found!r}, "
                f"not the created record {first.remote_id}",
            )

    def test_find_by_correlation_answers_none_when_unknown(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """find_by_correlation answers None for a correlation it never created."""
        harness.seed(2)
        with _keeping(UNKNOWN_CORRELATION, "create()"):
            connector.create(harness.make_draft(_marker("create")), _marker("correlation"))
        unknown = _marker("unknown")
        with _keeping(UNKNOWN_CORRELATION, "find_by_correlation()"):
            found = connector.find_by_correlation(unknown)
        if found is not None:
            broken_promise(
                UNKNOWN_CORRELATION, f"find_by_correlation({unknown!r}) answered {found!r}"
            )

    def test_update_round_trip(self, harness: ConnectorHarness, connector: Connector) -> None:
        """Update writes the draft into the record, and the next read shows it."""
        [remote_id] = harness.seed(1)
        saved = _read(connector, None, UPDATE).cursor
        harness.let_time_pass()
        text = _marker("update")
        with _keeping(UPDATE, f"update({remote_id!r}, ...)"):
            connector.update(remote_id, harness.make_update(text))
        if not _holds(harness.read_back(remote_id), text):
            broken_promise(UPDATE, f"the backend's record {remote_id} does not hold the update")
        read = _read(connector, saved, UPDATE)
        if not _holds(_data(read.record(remote_id)), text):
            broken_promise(
                UPDATE,
                f"the read from cursor {saved!r} does not show the update of {remote_id}",
            )

    def test_comment_round_trip(self, harness: ConnectorHarness, connector: Connector) -> None:
        """add_comment adds the comment to the record, and the next read shows it."""
        [remote_id] = harness.seed(1)
        saved = _read(connector, None, COMMENT).cursor
        harness.let_time_pass()
        text = _marker("comment")
        comment = CommentDraft(body=text, correlation=_marker("comment-correlation"))
        with _keeping(COMMENT, f"add_comment({remote_id!r}, ...)"):
            comment_id = connector.add_comment(remote_id, comment)
        if not isinstance(comment_id, str) or not comment_id:
            broken_promise(COMMENT, f"add_comment() returned {comment_id!r}, not the comment's id")
        if not _holds(harness.read_back(remote_id), text):
            broken_promise(COMMENT, f"the backend's record {remote_id} does not hold the comment")
        read = _read(connector, saved, COMMENT)
        if not _holds(_data(read.record(remote_id)), text):
            broken_promise(
                COMMENT,
                f"the read from cursor {saved!r} does not show the comment on {remote_id}",
            )

    # -- failures ------------------------------------------------------------------------------

    @pytest.mark.parametrize("fault", list(Fault), ids=_FAULT_IDS)
    def test_read_retries_rate_limits_and_server_errors(
        self, harness: ConnectorHarness, connector: Connector, fault: Fault
    ) -> None:
        """A read retries 429 and 5xx, then succeeds."""
        seeded = harness.seed(2)
        harness.inject_fault(fault, times=FAULT_REPEATS)
        with _keeping(READ_RETRIED, f"a read after {FAULT_REPEATS} x {fault.value}"):
            read = _read(connector, None, READ_RETRIED)
        missing = [remote_id for remote_id in seeded if remote_id not in read.ids]
        if missing:
            broken_promise(
                READ_RETRIED, f"after {fault.value}, the read missed {_listing(missing)}"
            )

    @pytest.mark.parametrize("fault", list(Fault), ids=_FAULT_IDS)
    def test_update_retries_rate_limits_and_server_errors(
        self, harness: ConnectorHarness, connector: Connector, fault: Fault
    ) -> None:
        """An update retries 429 and 5xx, then succeeds."""
        [remote_id] = harness.seed(1)
        text = _marker("update")
        harness.inject_fault(fault, times=FAULT_REPEATS)
        with _keeping(UPDATE_RETRIED, f"an update after {FAULT_REPEATS} x {fault.value}"):
            connector.update(remote_id, harness.make_update(text))
        if not _holds(harness.read_back(remote_id), text):
            broken_promise(
                UPDATE_RETRIED, f"after {fault.value}, the update of {remote_id} did not land"
            )

    @pytest.mark.parametrize("fault", list(Fault), ids=_FAULT_IDS)
    def test_persistent_fault_surfaces_as_retriable_error(
        self, harness: ConnectorHarness, connector: Connector, fault: Fault
    ) -> None:
        """A fault that does not pass surfaces as RetriableRemoteError, after bounded retries."""
        harness.seed(1)
        harness.inject_fault(fault, times=1_000)
        try:
            list(connector.read_changes(None))
        except RetriableRemoteError:
            return
        except Exception as error:
            broken_promise(
                GIVES_UP,
                f"while the backend kept answering {fault.value}, the read raised "
                f"{type(error).__name__}: {error}",
            )
        broken_promise(
            GIVES_UP, f"the backend kept answering {fault.value}, yet the read raised nothing"
        )

    def test_permanent_error_carries_remote_message(
        self, harness: ConnectorHarness, connector: Connector
    ) -> None:
        """A 4xx surfaces at once as PermanentRemoteError carrying the remote's own message."""
        [remote_id] = harness.seed(1)
        message = f"Field 'summary' is not valid ({_marker('rejection')})"
        harness.inject_rejection(message)
        try:
            connector.update(remote_id, harness.make_update(_marker("update")))
        except PermanentRemoteError as error:
            if message not in (error.remote_message or ""):
                broken_promise(
                    PERMANENT,
                    f"the error's remote_message is {error.remote_message!r}; the remote said "
                    f"{message!r}",
                )
            return
        except Exception as error:
            broken_promise(
                PERMANENT,
                f"the update raised {type(error).__name__} ({error}), not PermanentRemoteError",
            )
        broken_promise(
            PERMANENT,
            "the update raised nothing although the remote refused it with a 4xx: the error "
            "was swallowed, or the refused request was retried",
        )


def _data(record: RawRecord | None) -> dict[str, Any] | None:
    return None if record is None else dict(record.data)


def connector_test_class(
    harness_class: type[ConnectorHarness], *, name: str | None = None
) -> type[ConnectorSuite]:
    """The whole standard suite for the connector ``harness_class`` builds, as a test class.

    Assign it to a ``Test...`` name in a test module and pytest collects it::

        TestJiraConnector = connector_test_class(JiraHarness)
    """
    class_name = name or f"Test{harness_class.__name__.removesuffix('Harness')}Connector"
    namespace = {"harness_class": harness_class, "__module__": harness_class.__module__}
    return type(class_name, (ConnectorSuite,), namespace)
