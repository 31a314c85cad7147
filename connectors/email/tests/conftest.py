"""Fixtures of the e-mail connector tests: real IMAP and SMTP servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from email_harness import ImapHarness, MaildirHarness
from email_servers import (
    DovecotServer,
    FaultPlan,
    FaultyProxy,
    ImapServer,
    PymapServer,
    SmtpServer,
    dovecot_for_fixture,
    serving,
)


@pytest.fixture(scope="session")
def fault_plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture(scope="session")
def pymap_server() -> Iterator[PymapServer]:
    """One pymap for the session; each harness works in folders of its own."""
    yield from serving(PymapServer())


@pytest.fixture
def own_pymap() -> Iterator[PymapServer]:
    """A pymap of the test's own, which it may restart (a "new server")."""
    yield from serving(PymapServer())


@pytest.fixture(params=["pymap", "dovecot"])
def moving_server(request: pytest.FixtureRequest) -> ImapServer:
    """A server the test may move to a new UIDVALIDITY: a pymap of its own, or the Dovecot."""
    server: ImapServer = request.getfixturevalue(
        "own_pymap" if request.param == "pymap" else "dovecot_server"
    )
    return server


@pytest.fixture(scope="session")
def imap_proxy(pymap_server: PymapServer, fault_plan: FaultPlan) -> Iterator[FaultyProxy]:
    yield from serving(FaultyProxy(pymap_server, fault_plan))


@pytest.fixture(scope="session")
def smtp_server(fault_plan: FaultPlan) -> Iterator[SmtpServer]:
    yield from serving(SmtpServer(fault_plan))


def _proxied_harness(
    server: ImapServer, proxy: FaultyProxy, smtp: SmtpServer, plan: FaultPlan
) -> Iterator[ImapHarness]:
    plan.clear()
    with closing(ImapHarness(server, proxy.port, smtp, plan)) as harness:
        yield harness  # closing it clears the plan


@pytest.fixture
def imap_harness(
    pymap_server: PymapServer,
    imap_proxy: FaultyProxy,
    smtp_server: SmtpServer,
    fault_plan: FaultPlan,
) -> Iterator[ImapHarness]:
    """A mailbox of its own on pymap, reached through the fault proxy; no fault left over."""
    yield from _proxied_harness(pymap_server, imap_proxy, smtp_server, fault_plan)


@pytest.fixture
def desk(
    tmp_path: Path, smtp_server: SmtpServer, fault_plan: FaultPlan
) -> Iterator[tuple[MaildirHarness, SmtpServer]]:
    """A Maildir desk and its relay, whose SMTP faults come from the shared plan."""
    harness = MaildirHarness(tmp_path)
    harness.plan = fault_plan
    try:
        yield harness, smtp_server
    finally:
        fault_plan.clear()
        harness.close()


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """One real Dovecot for the session; each harness works in folders of its own. Missing,
    it skips the test saying what to install, or fails it when ``CI=true``."""
    yield from dovecot_for_fixture()


@pytest.fixture(scope="session")
def dovecot_proxy(dovecot_server: DovecotServer, fault_plan: FaultPlan) -> Iterator[FaultyProxy]:
    yield from serving(FaultyProxy(dovecot_server, fault_plan))


@pytest.fixture
def dovecot_harness(
    dovecot_server: DovecotServer,
    dovecot_proxy: FaultyProxy,
    smtp_server: SmtpServer,
    fault_plan: FaultPlan,
) -> Iterator[ImapHarness]:
    """A mailbox of its own on Dovecot, reached through the fault proxy; no fault left over."""
    yield from _proxied_harness(dovecot_server, dovecot_proxy, smtp_server, fault_plan)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test that ran on Dovecot shows the end of Dovecot's log in its report."""
    report = yield
    if report.failed:
        for server in getattr(item, "funcargs", {}).values():
            if isinstance(server, DovecotServer):  # the session's, or an OAuth test's own
                report.sections.append(("Dovecot's log (its end)", server.log()[-8000:]))
    return report
