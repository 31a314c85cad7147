"""Fixtures of the e-mail connector tests: real IMAP and SMTP servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from email_servers import FaultPlan, FaultyProxy, PymapServer, SmtpServer


@pytest.fixture(scope="session")
def fault_plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture(scope="session")
def pymap_server() -> Iterator[PymapServer]:
    """One pymap for the session; each harness works in folders of its own."""
    server = PymapServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def imap_proxy(pymap_server: PymapServer, fault_plan: FaultPlan) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(pymap_server, fault_plan)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def smtp_server(fault_plan: FaultPlan) -> Iterator[SmtpServer]:
    server = SmtpServer(fault_plan)
    server.start()
    try:
        yield server
    finally:
        server.stop()
