"""Folder names beyond ASCII, as mailboxes in French, German or Dutch have them: IMAP spells
them in modified UTF-7 (RFC 3501 section 5.1.3). Found on Dovecot: a Sent folder named
"Éléments envoyés" made every read fail (imaplib cannot send the name as it is)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import closing

import pytest
from email_harness import ImapHarness, read, relay
from email_servers import PASSWORD, FaultPlan, ImapServer, SmtpServer

from usm_bridge_email import EmailConnector

SENT = "Éléments envoyés"
#: The same name on the wire, as RFC 3501's modified UTF-7 spells it.
SENT_ON_THE_WIRE = "&AMk-l&AOk-ments envoy&AOk-s"


@pytest.fixture(params=["dovecot_server", "pymap_server"])
def harness(request: pytest.FixtureRequest, smtp_server: SmtpServer) -> Iterator[ImapHarness]:
    server: ImapServer = request.getfixturevalue(request.param)
    with closing(ImapHarness(server, server.port, smtp_server, FaultPlan())) as made:
        yield made


def test_a_sent_folder_named_beyond_ascii_is_created_and_used(
    harness: ImapHarness, smtp_server: SmtpServer
) -> None:
    imap = harness.settings().imap
    assert imap is not None
    sent = f"{harness.inbox}/{SENT}"
    connector = harness.make_connector(
        smtp=relay(smtp_server),
        imap={**imap.model_dump(), "password": PASSWORD, "sent": sent},
    )
    assert isinstance(connector, EmailConnector)
    try:
        roots = harness.seed(2)
        records, cursor = read(connector)  # the folder is missing: the store creates it
        assert sorted(r.remote_id for r in records) == sorted(roots)
        # Another client finds it under its wire name, holding the two acknowledgements.
        status, listed = harness.client.list(f'"{harness.inbox}/"', "*")
        assert status == "OK"
        assert any(SENT_ON_THE_WIRE.encode() in line for line in listed if isinstance(line, bytes))
        status, _ = harness.client.select(f'"{harness.inbox}/{SENT_ON_THE_WIRE}"')
        assert status == "OK"
        _, data = harness.client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        copies = [
            email.message_from_bytes(item[1], policy=email.policy.default)
            for item in data
            if isinstance(item, tuple)
        ]
        assert [str(m["X-USM-Kind"]) for m in copies] == ["ack", "ack"]
        assert read(connector, cursor)[0] == []  # and a quiet read goes through it too
    finally:
        connector.close()
