"""The standard suite fails, naming the broken promise, on connectors broken on purpose.

Each case subclasses the reference connector, breaks one thing, turns the suite on for it in a
fresh pytest run (pytester) and checks that exactly the promises that thing breaks fail, each
with ``BROKEN PROMISE: <promise>``; the reference connector itself passes the same run.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from usm_bridge.testing import suite

# Here rather than in conftest.py: pytest refuses ``pytest_plugins`` in a conftest below the
# rootdir that is not loaded at start-up, which is the case when the whole tree runs.
pytest_plugins = ["pytester"]

HEADER = """
from __future__ import annotations

from connector_suite.reference_connector import ReferenceConnector, ReferenceHarness
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.connector import Checkpoint, CheckResult, RemoteRef, Vocabulary
from usm_bridge.testing import connector_test_class
"""

FOOTER = """
class BrokenHarness(ReferenceHarness):
    connector_class = Broken
{harness}

TestBroken = connector_test_class(BrokenHarness)
"""

FAULTS = ["rate_limited", "rate_limited_no_retry_after", "unavailable", "server_error"]


@dataclass(frozen=True)
class Breakage:
    """A connector broken in one way, and the suite's tests that must fail because of it."""

    name: str
    code: str
    failing: dict[str, str]
    #: Methods of the harness subclass, when the breakage lies in how the connector is built.
    harness: str = ""


def _each_fault(test: str, promise: str) -> dict[str, str]:
    return {f"{test}[{fault}]": promise for fault in FAULTS}


BREAKAGES = [
    Breakage(
        "create_not_idempotent",
        """
        def create(self, draft, correlation):
            return self._post_ticket(draft, correlation)
        """,
        {"test_create_is_idempotent_by_correlation": suite.IDEMPOTENT_CREATE},
    ),
    Breakage(
        "find_by_correlation_ignores_correlation",
        """
        def find_by_correlation(self, correlation):
            tickets = self.http.get("api/tickets").json()["tickets"]
            return RemoteRef(remote_id=tickets[0]["id"]) if tickets else None
        """,
        {
            "test_find_by_correlation_answers_none_when_unknown": suite.UNKNOWN_CORRELATION,
            "test_create_is_idempotent_by_correlation": suite.IDEMPOTENT_CREATE,
        },
    ),
    Breakage(
        "read_skips_the_first_change_after_a_cursor",
        """
        def _page(self, after):
            return super()._page(after + 1 if after else after)
        """,
        {
            "test_incremental_read_yields_changed_records_only": suite.INCREMENTAL,
            "test_interrupted_read_resumes_without_loss": suite.RESUME,
            "test_update_round_trip": suite.UPDATE,
            "test_comment_round_trip": suite.COMMENT,
            "test_full_read_yields_every_record_once_and_ends_with_checkpoint": suite.FULL_READ,
        },
    ),
    Breakage(
        "read_ignores_the_cursor",
        """
        def read_changes(self, cursor):
            return super().read_changes(None)
        """,
        {"test_incremental_read_yields_changed_records_only": suite.INCREMENTAL},
    ),
    Breakage(
        "checkpoint_runs_ahead_of_the_records",
        """
        def read_changes(self, cursor):
            newest = self.http.get("api/tickets").json()["tickets"][-1]["version"]
            for item in super().read_changes(cursor):
                yield Checkpoint(cursor=str(newest)) if isinstance(item, Checkpoint) else item
        """,
        {"test_interrupted_read_resumes_without_loss": suite.RESUME},
    ),
    Breakage(
        "read_ends_without_checkpoint",
        """
        def read_changes(self, cursor):
            items = list(super().read_changes(cursor))
            return iter(items[:-1])
        """,
        {
            "test_full_read_yields_every_record_once_and_ends_with_checkpoint": suite.FULL_READ,
            "test_incremental_read_yields_changed_records_only": suite.INCREMENTAL,
            "test_interrupted_read_resumes_without_loss": suite.RESUME,
            "test_update_round_trip": suite.UPDATE,
            "test_comment_round_trip": suite.COMMENT,
            **_each_fault("test_read_retries_rate_limits_and_server_errors", suite.READ_RETRIED),
        },
    ),
    Breakage(
        "pages_overlap_and_repeat_records",
        """
        def _page(self, after):
            return super()._page(max(0, after - 1))
        """,
        {
            "test_full_read_yields_every_record_once_and_ends_with_checkpoint": suite.FULL_READ,
            "test_incremental_read_yields_changed_records_only": suite.INCREMENTAL,
        },
    ),
    Breakage(
        "never_retries",
        "",
        {
            **_each_fault("test_read_retries_rate_limits_and_server_errors", suite.READ_RETRIED),
            **_each_fault(
                "test_update_retries_rate_limits_and_server_errors", suite.UPDATE_RETRIED
            ),
        },
        harness="""
        def settings(self):
            return {**super().settings(), "max_attempts": 1}
        """,
    ),
    Breakage(
        "swallows_the_remote_message_of_a_4xx",
        """
        def update(self, remote_id, draft):
            try:
                super().update(remote_id, draft)
            except PermanentRemoteError as error:
                raise PermanentRemoteError("update failed", status=error.status) from None
        """,
        {"test_permanent_error_carries_remote_message": suite.PERMANENT},
    ),
    Breakage(
        "treats_a_4xx_as_temporary",
        """
        def update(self, remote_id, draft):
            try:
                super().update(remote_id, draft)
            except PermanentRemoteError as error:
                raise RetriableRemoteError("try later", status=error.status) from None
        """,
        {"test_permanent_error_carries_remote_message": suite.PERMANENT},
    ),
    Breakage(
        "swallows_an_outage",
        """
        def read_changes(self, cursor):
            try:
                yield from super().read_changes(cursor)
            except RetriableRemoteError:
                yield Checkpoint(cursor=cursor or "0")
        """,
        _each_fault("test_persistent_fault_surfaces_as_retriable_error", suite.GIVES_UP),
    ),
    Breakage(
        "update_drops_the_fields",
        """
        def update(self, remote_id, draft):
            super().update(remote_id, draft.model_copy(update={"fields": {}}))
        """,
        {
            "test_update_round_trip": suite.UPDATE,
            **_each_fault(
                "test_update_retries_rate_limits_and_server_errors", suite.UPDATE_RETRIED
            ),
        },
    ),
    Breakage(
        "comment_never_sent",
        """
        def add_comment(self, remote_id, comment):
            return "c1"
        """,
        {"test_comment_round_trip": suite.COMMENT},
    ),
    Breakage(
        "check_and_discover_broken",
        """
        def check(self):
            return CheckResult(ok=False, detail="cannot sign in")

        def discover(self):
            return Vocabulary()
        """,
        {"test_check_succeeds": suite.CHECK, "test_discover_returns_statuses": suite.DISCOVER},
    ),
]


def _indented(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip(), "    ")


def _module(breakage: Breakage) -> str:
    connector = _indented(breakage.code) or "    pass"
    footer = FOOTER.format(harness=_indented(breakage.harness))
    return f"{HEADER}\n\nclass Broken(ReferenceConnector):\n{connector}\n\n{footer}"


def _run(pytester: pytest.Pytester, name: str, source: str) -> pytest.HookRecorder:
    pytester.makepyfile(**{f"test_{name}": source})
    return pytester.inline_run("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "error")


def _test_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def test_the_reference_connector_passes_in_a_fresh_run(pytester: pytest.Pytester) -> None:
    recorder = _run(pytester, "reference", _module(Breakage("none", "", {})))
    passed, skipped, failed = recorder.listoutcomes()
    assert not failed and not skipped
    assert len(passed) == 22


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[breakage.name for breakage in BREAKAGES])
def test_the_suite_fails_naming_the_broken_promise(
    pytester: pytest.Pytester, breakage: Breakage
) -> None:
    recorder = _run(pytester, breakage.name, _module(breakage))
    _, _, failed = recorder.listoutcomes()
    failures = {_test_name(report.nodeid): report.longreprtext for report in failed}
    assert set(failures) == set(breakage.failing), "the suite failed other tests than expected"
    for test, promise in breakage.failing.items():
        assert f"BROKEN PROMISE: {promise}" in failures[test], failures[test]


def test_every_promise_is_caught_by_some_breakage() -> None:
    caught = {promise for breakage in BREAKAGES for promise in breakage.failing.values()}
    assert caught == set(suite.PROMISES)
