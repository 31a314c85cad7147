"""A chain ending at an outside supplier reached by e-mail: the unit's tool is a mailbox whose
``supplier_address`` is the supplier's order desk. A route to that unit mails the supplier the
call (never the mailbox itself), and the supplier's ``Status: done`` in the thread resumes the
call upstream. Through the real SyncEngine, with a Maildir per unit and aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from email_harness import ADDRESS, MailBridge, MaildirHarness, connect, customer_mail, maildir_desk
from email_servers import SmtpServer
from pydantic import ValidationError
from usm_bridge.connector import RemoteDraft
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.model import Status

from usm_bridge_email import EmailSettings

DESK = "suppliers@facilities.example"  # Facilities' mailbox for its outside suppliers
SUPPLIER = "orders@chairs-supplier.example"
ANN = "ann@customer.example"


def relayed(smtp: SmtpServer, since: int) -> list[tuple[list[str], EmailMessage]]:
    return [
        (rcpts, email.message_from_bytes(raw, policy=email.policy.default))
        for _, rcpts, raw in smtp.messages[since:]
    ]


def facilities_bridge(root: Path, smtp: SmtpServer, supplier: str | None) -> MailBridge:
    """HR's desk, whose service requests go to Facilities' desk for its outside suppliers,
    which mails them to ``supplier`` (its ``supplier_address``; none if ``None``)."""
    setting = {"supplier_address": supplier} if supplier else {}
    return MailBridge(
        root,
        maildir_desk(root, smtp, "hr-mail", "hr", address=ADDRESS, reference_prefix="HR"),
        maildir_desk(
            root, smtp, "supplier-mail", "facilities", address=DESK, reference_prefix="SUP",
            # Mail from outside is held: the supplier's command counts all the same in its
            # own thread (its From taken as the relay delivered it: trust_relay).
            allowed_domains=["facilities.example"], max_attempts=1, trust_relay=True, **setting,
        ),
        route=("hr", "facilities"),
    )  # fmt: skip


@pytest.fixture
def bridge(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[MailBridge]:
    made = facilities_bridge(tmp_path, smtp_server, SUPPLIER)
    try:
        yield made
    finally:
        made.close()


def test_the_supplier_gets_the_call_and_its_done_resumes_the_chain(
    bridge: MailBridge, smtp_server: SmtpServer
) -> None:
    _, raw = customer_mail("[request] A chair for desk 4.12", "Mine is broken.")
    bridge.boxes["hr-mail"].add(raw)
    start = len(smtp_server.messages)
    bridge.run_clean("hr-mail", "supplier-mail", "hr-mail")
    calls = bridge.calls()
    assert calls["hr"].status is Status.WAITING
    facilities = calls["facilities"]
    assert facilities.source is not None and facilities.source.instance == "supplier-mail"

    # The supplier got the call, from the desk, under the call's own Message-ID; nothing went
    # to the desk's own address.
    mails = relayed(smtp_server, start)
    [(rcpts, order)] = [(r, m) for r, m in mails if m["X-USM-Kind"] == "create"]
    assert rcpts == [SUPPLIER] and order["From"] == DESK
    assert order["Message-ID"] == facilities.source.remote_id
    assert "[SUP-1]" in str(order["Subject"]) and "Mine is broken." in order.get_content()
    assert all(DESK not in r for r, _ in mails), [r for r, _ in mails]

    # The supplier answers the mail it got: done. Facilities' call is fulfilled, HR's resumes.
    _, answer = customer_mail(
        "Re: " + str(order["Subject"]),
        "Status: done\n\nThe new chair is delivered to desk 4.12.",
        sender=f"Chairs Orders <{SUPPLIER}>",
        in_reply_to=str(order["Message-ID"]),
    )
    bridge.boxes["supplier-mail"].add(answer)
    before = len(smtp_server.messages)
    bridge.run_clean("supplier-mail", "hr-mail", "supplier-mail", "hr-mail")
    calls = bridge.calls()
    assert calls["facilities"].status is Status.FULFILLED
    assert calls["hr"].status is Status.IN_PROGRESS and calls["hr"].waiting_on is None
    with bridge.store.begin(readonly=True) as tx:
        [record] = [s for s in tx.list_calls(unit="facilities")]
        commands: Any = record.call.attributes["email"]["commands"]
        assert [(c["by"], c["status"]) for c in commands] == [("supplier", "fulfilled")]
    # Nobody asks the supplier to confirm its own work; HR's requester hears of the progress,
    # and gets the supplier's words (a public comment travels one link).
    mails = relayed(smtp_server, before)
    assert all(SUPPLIER not in r and DESK not in r for r, _ in mails), mails
    told = sorted((str(m["X-USM-Kind"]), m.get_content()) for r, m in mails if ANN in r)
    assert [kind for kind, _ in told] == ["comment", "status"]
    assert "The new chair is delivered" in told[0][1] and "Status:" not in told[0][1]
    assert "in progress" in told[1][1]
    # Quiet from now on: nothing echoes between the two mailboxes.
    before = len(smtp_server.messages)
    bridge.cycle("supplier-mail", "hr-mail", "supplier-mail", "hr-mail")
    assert len(smtp_server.messages) == before


def test_without_a_supplier_address_the_create_is_dead_lettered_naming_the_setting(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    bridge = facilities_bridge(tmp_path, smtp_server, None)
    try:
        _, raw = customer_mail("[request] A chair for desk 4.12", "Mine is broken.")
        bridge.boxes["hr-mail"].add(raw)
        start = len(smtp_server.messages)
        bridge.cycle("hr-mail", "supplier-mail")
        with bridge.store.begin(readonly=True) as tx:
            [letter] = tx.list_dead_letters()
            assert tx.list_outbox(status="pending") == []
        assert "supplier_address" in letter.reason and "supplier-mail" in letter.reason
        assert "facilities" not in bridge.calls() or bridge.calls()["facilities"].source is None
        assert all(DESK not in r for r, _ in relayed(smtp_server, start))
        assert list((tmp_path / "supplier-mail" / ".Sent" / "cur").glob("*")) == []
    finally:
        bridge.close()


# -- the connector and its setting -------------------------------------------------------------


def test_supplier_address_is_somebody_elses_address() -> None:
    base: dict[str, Any] = {"address": DESK, "maildir": {"path": "/tmp/unused"}}
    settings = EmailSettings.model_validate({**base, "supplier_address": f" {SUPPLIER} "})
    assert settings.supplier_address == SUPPLIER
    assert EmailSettings.model_validate(base).supplier_address is None
    for wrong in ("orders", "Orders <orders@x.example>", "a@b", "a@@b.example", "a@b.example, c"):
        with pytest.raises(ValidationError, match="is not an address"):
            EmailSettings.model_validate({**base, "supplier_address": wrong})
    with pytest.raises(ValidationError, match="mailbox's own address"):
        EmailSettings.model_validate({**base, "supplier_address": DESK.upper()})


def test_a_create_naming_nobody_is_refused_without_mailing_anybody(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    harness = MaildirHarness(tmp_path)
    connector = connect(harness, smtp_server, supplier_address=None)
    start = len(smtp_server.messages)
    draft = RemoteDraft(fields={"subject": "Replace reader 3", "body": "It is broken."})
    with pytest.raises(PermanentRemoteError, match="supplier_address") as refused:
        connector.create(draft, "usm-bridge:call-10")
    assert "no recipient" in (refused.value.remote_message or "")
    own = RemoteDraft(fields={"to": f"Desk <{ADDRESS}>", "subject": "Reader"})
    with pytest.raises(PermanentRemoteError, match="its own address"):
        connector.create(own, "usm-bridge:call-11")
    assert harness.everything() == [] and len(smtp_server.messages) == start
    # A recipient the draft names needs no setting.
    named = RemoteDraft(fields={"to": "parts@vendor.example", "subject": "Reader"})
    ref = connector.create(named, "usm-bridge:call-12")
    [(rcpts, mail)] = relayed(smtp_server, start)
    assert rcpts == ["parts@vendor.example"] and mail["Message-ID"] == ref.remote_id
