"""Status commands count only from a From the unit's receiving server vouches for, in an
``Authentication-Results`` header (RFC 8601) from a server the unit trusts, or when the unit
trusts its relay; anything else stays an ordinary reply, the refusal on record and in the log.
"""

from __future__ import annotations

import logging

import pytest
from email_harness import MaildirHarness, customer_mail, read, replies
from email_servers import SmtpServer
from pydantic import ValidationError
from test_email_commands import AGENT, commands, connect

from usm_bridge_email import EmailSettings
from usm_bridge_email.authres import parse_authentication_results, vouched

MX = "mx.hr.example"
HILDA = "hilda@hr.example"

#: (Authentication-Results headers, each with the Received headers above it) -> vouched?
CASES: list[tuple[str, list[tuple[int, str]], bool]] = [
    ("dmarc pass aligned", [(0, f"{MX}; dmarc=pass header.from=hr.example")], True),
    ("dmarc pass for another domain", [(0, f"{MX}; dmarc=pass header.from=evil.example")], False),
    ("dkim pass, d= the From domain", [(0, f"{MX}; dkim=pass header.d=hr.example")], True),
    ("dkim pass, d= a parent domain", [(0, f"{MX}; dkim=pass header.d=example")], True),
    ("dkim pass, i= the From domain", [(0, f"{MX}; dkim=pass header.i=@hr.example")], True),
    ("dkim pass unaligned", [(0, f"{MX}; dkim=pass header.d=evil.example")], False),
    (
        "dkim pass, d= a look-alike",
        [(0, f"{MX}; dkim=pass header.d=hr.example.evil.example")],
        False,
    ),
    ("spf pass aligned", [(0, f"{MX}; spf=pass smtp.mailfrom=bounces@mail.hr.example")], True),
    ("spf pass unaligned", [(0, f"{MX}; spf=pass smtp.mailfrom=evil@evil.example")], False),
    (
        "every method failed",
        [
            (
                0,
                f"{MX}; dmarc=fail header.from=hr.example; dkim=fail header.d=hr.example; "
                "spf=softfail smtp.mailfrom=hr.example",
            )
        ],
        False,
    ),
    ("nothing checked", [(0, f"{MX}; none")], False),
    (
        "pass from an untrusted server",
        [(0, "mx.evil.example; dmarc=pass header.from=hr.example")],
        False,
    ),
    (
        "several headers of the trusted server, one with an aligned pass",
        [
            (0, f"{MX}; spf=fail smtp.mailfrom=hr.example"),
            (0, f"{MX}; dkim=pass header.d=hr.example"),
        ],
        True,
    ),
    (
        "a forged header above the trusted one (another authserv-id)",
        [
            (0, "mx.hr.example.evil.example; dmarc=pass header.from=hr.example"),
            (0, f"{MX}; dmarc=fail header.from=hr.example"),
        ],
        False,
    ),
    (
        "a forged header with the trusted id, below the trusted server's hop",
        [
            (0, f"{MX}; dmarc=fail header.from=hr.example"),
            (1, f"{MX}; dmarc=pass header.from=hr.example"),
        ],
        False,
    ),
    (
        "comments, versions and quoted values",
        [
            (
                0,
                f"{MX} (Postfix) 1; dkim=pass (2048-bit key; secure) header.d=hr.example "
                'header.s=sel header.b="ab;cd"; dmarc/1=pass (p=reject) header.from=hr.example',
            )
        ],
        True,
    ),
    (
        "method and result in upper case",
        [(0, "MX.HR.EXAMPLE; DMARC=Pass header.from=HR.example")],
        True,
    ),
    ("no header at all", [], False),
]


def test_each_authentication_results_case_vouches_as_expected() -> None:
    outcomes = [vouched(headers, HILDA, [MX])[0] for _, headers, _ in CASES]
    assert dict(zip([c[0] for c in CASES], outcomes, strict=True)) == {
        name: expected for name, _, expected in CASES
    }


def test_the_reason_names_what_was_found() -> None:
    assert vouched([(0, f"{MX}; dmarc=pass header.from=hr.example")], HILDA, [MX]) == (
        True,
        f"dmarc=pass for hr.example (by {MX})",
    )
    ok, why = vouched([(0, f"{MX}; dkim=pass header.d=evil.example")], HILDA, [MX])
    assert not ok and "no aligned pass for hr.example" in why and "dkim=pass" in why
    ok, why = vouched([(0, f"{MX}; dmarc=pass header.from=hr.example")], HILDA, [])
    assert not ok and "trusted_authserv_ids" in why
    ok, why = vouched([(0, "other.example; dmarc=pass")], HILDA, [MX])
    assert not ok and f"no Authentication-Results from a trusted server ({MX})" == why


def test_a_header_naming_nobody_is_no_result() -> None:
    assert parse_authentication_results("   ") is None
    assert parse_authentication_results("(only a comment)") is None


def test_trusted_authserv_ids_are_names() -> None:
    base = {"address": "desk@hr.example", "maildir": {"path": "/tmp/x"}}
    settings = EmailSettings.model_validate({**base, "trusted_authserv_ids": [" MX.HR.example "]})
    assert settings.trusted_authserv_ids == [MX]
    assert settings.trust_relay is False  # the From is trusted for nothing by default
    for wrong in ["", "mx hr", "mx;hr"]:
        with pytest.raises(ValidationError, match="trusted_authserv_ids"):
            EmailSettings.model_validate({**base, "trusted_authserv_ids": [wrong]})


# -- through the connector ---------------------------------------------------------------------

PASS = f"{MX}; dkim=pass header.d=hr.example; dmarc=pass header.from=hr.example"


def _with_headers(raw: bytes, *lines: str) -> bytes:
    """``raw`` with header ``lines`` put on top, as receiving servers prepend them."""
    return "".join(f"{line}\r\n" for line in lines).encode() + raw


@pytest.mark.parametrize(
    ("on_top", "obeyed", "why"),
    [
        ([f"Authentication-Results: {PASS}"], True, ""),
        ([], False, "no Authentication-Results from a trusted server"),
        (
            [f"Authentication-Results: {MX}; dmarc=fail header.from=hr.example"],
            False,
            "no aligned pass for hr.example from a trusted server (dmarc=fail)",
        ),
        # The forger wrote the trusted id's header; the unit's server added its Received and
        # its own verdict above it (had it not stripped the forgery, as RFC 8601 asks).
        (
            [
                f"Authentication-Results: {MX}; dmarc=none header.from=hr.example",
                f"Received: from evil.example by {MX}",
                f"Authentication-Results: {PASS}",
            ],
            False,
            "no aligned pass for hr.example from a trusted server (dmarc=none)",
        ),
        (
            ["Authentication-Results: mx.evil.example; dmarc=pass header.from=hr.example"],
            False,
            "no Authentication-Results from a trusted server",
        ),
    ],
    ids=["pass", "no-header", "fail", "forged-below-received", "untrusted-server"],
)
def test_an_agents_command_counts_only_when_the_server_vouches_for_the_from(
    desk: tuple[MaildirHarness, SmtpServer],
    caplog: pytest.LogCaptureFixture,
    on_top: list[str],
    obeyed: bool,
    why: str,
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp, trust_relay=False, trusted_authserv_ids=[MX])
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    harness.deliver(raw)
    _, cursor = read(connector)
    command, raw = customer_mail(
        "Re: Badge broken",
        "Status: fulfilled\nNew badge at the desk.",
        sender=AGENT,
        in_reply_to=root,
    )
    harness.deliver(_with_headers(raw, *on_top))
    with caplog.at_level(logging.INFO, logger="usm_bridge_email.connector"):
        [record], _ = read(connector, cursor)
    [given] = commands(record)
    assert given["message_id"] == command
    if obeyed:
        assert (given["status"], given["by"]) == ("fulfilled", "agent")
        assert record.data["status"] == "fulfilled"
        assert "obeyed" in caplog.text
    else:
        # An ordinary comment, its text untouched; the refusal on record and in the log.
        assert (given["status"], given["by"]) == (None, None)
        assert f"the From {HILDA} is not vouched for" in given["reason"]
        assert why in given["reason"]
        assert record.data.get("status") is None
        [reply] = [r for r in replies(record) if r["message_id"] == command]
        assert reply["body"] == "Status: fulfilled\nNew badge at the desk."
        assert "ignored as a command" in caplog.text and "not vouched for" in caplog.text


def test_a_from_with_several_addresses_never_commands(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)  # trusts its relay, so only the two addresses refuse
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    harness.deliver(raw)
    _, cursor = read(connector)
    _, raw = customer_mail(
        "Re: Badge broken",
        "Status: fulfilled",
        sender=f"{HILDA}, evil@evil.example",
        in_reply_to=root,
    )
    harness.deliver(raw)
    [record], _ = read(connector, cursor)
    [given] = commands(record)
    assert given["status"] is None
    assert "several From addresses" in given["reason"]
