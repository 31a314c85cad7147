"""The standard connector suite against a real IMAP server (pymap) with aiosmtpd, and Maildir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from email_harness import ImapHarness, MaildirHarness
from email_servers import FaultPlan, FaultyProxy, PymapServer, SmtpServer
from usm_bridge.testing import ConnectorHarness, ConnectorSuite


class TestEmailConnectorOnImap(ConnectorSuite):
    @pytest.fixture
    def harness(
        self,
        pymap_server: PymapServer,
        imap_proxy: FaultyProxy,
        smtp_server: SmtpServer,
        fault_plan: FaultPlan,
    ) -> Iterator[ConnectorHarness]:
        harness = ImapHarness(pymap_server, imap_proxy.port, smtp_server, fault_plan)
        try:
            yield harness
        finally:
            harness.close()


class TestEmailConnectorOnMaildir(ConnectorSuite):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ConnectorHarness]:
        harness = MaildirHarness(tmp_path)
        try:
            yield harness
        finally:
            harness.close()
