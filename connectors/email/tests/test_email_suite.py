"""The standard connector suite against real IMAP servers (pymap, and Dovecot as deployed) with
aiosmtpd, and against Maildir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from email_harness import ImapHarness, MaildirHarness
from usm_bridge.testing import ConnectorHarness, ConnectorSuite


class TestEmailConnectorOnImap(ConnectorSuite):
    @pytest.fixture
    def harness(self, imap_harness: ImapHarness) -> ConnectorHarness:
        return imap_harness


class TestEmailConnectorOnDovecot(ConnectorSuite):
    @pytest.fixture
    def harness(self, dovecot_harness: ImapHarness) -> ConnectorHarness:
        return dovecot_harness


class TestEmailConnectorOnMaildir(ConnectorSuite):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ConnectorHarness]:
        harness = MaildirHarness(tmp_path)
        try:
            yield harness
        finally:
            harness.close()
