"""The standard connector suite against a real IMAP server (pymap) with aiosmtpd, and Maildir."""

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


class TestEmailConnectorOnMaildir(ConnectorSuite):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ConnectorHarness]:
        harness = MaildirHarness(tmp_path)
        try:
            yield harness
        finally:
            harness.close()
