"""SASL XOAUTH2 with OAuth2 tokens, for mailboxes that refuse passwords (issue 12, item 7).

Everything here runs against servers that check the token: a token endpoint on loopback
(client credentials and refresh-token grants, rotation, introspection), an aiosmtpd relay
whose AUTH XOAUTH2 accepts only a token that endpoint says is active, and Dovecot with its
``oauth2`` passdb asking the endpoint about every token. One clock, moved by the test, decides
when tokens expire for the endpoint, the servers and the connector alike: no test waits.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from email_harness import ADDRESS, MAPPING, customer_mail, read, watching
from email_servers import DovecotServer, FaultPlan, dovecot_for_fixture, serving
from oauth_servers import (
    CLIENT_SECRET,
    MAILBOX,
    REFRESH_TOKEN,
    Clock,
    OAuthSmtpServer,
    TokenEndpoint,
    xoauth2_client,
)
from pydantic import ValidationError
from usm_bridge.checks import check_config
from usm_bridge.config import load_config
from usm_bridge.connector import settings_key, settings_problems
from usm_bridge.errors import ConfigurationError, PermanentRemoteError, RetriableRemoteError

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.oauth import TokenSource
from usm_bridge_email.settings import OAuthSettings, SmtpSettings
from usm_bridge_email.smtp import RelayRefusedBridge, SmtpSender

MAIL = b"From: servicedesk@hr.example\r\nTo: ann@customer.example\r\nSubject: hi\r\n\r\nHello\r\n"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(clock: Clock) -> Iterator[TokenEndpoint]:
    yield from serving(TokenEndpoint(clock))


@pytest.fixture
def relay(endpoint: TokenEndpoint) -> Iterator[OAuthSmtpServer]:
    yield from serving(OAuthSmtpServer(FaultPlan(), endpoint))


@pytest.fixture
def dovecot(endpoint: TokenEndpoint) -> Iterator[DovecotServer]:
    """Dovecot whose oauth2 passdb asks ``endpoint`` about every XOAUTH2 token."""
    yield from dovecot_for_fixture(oauth2_introspection_url=endpoint.introspection_url)


def source(endpoint: TokenEndpoint, clock: Clock, **overrides: Any) -> TokenSource:
    settings = OAuthSettings.model_validate(endpoint.settings(**overrides))
    return TokenSource(settings, now=clock.now, sleep=lambda _: None)


def sender(relay: OAuthSmtpServer, tokens: TokenSource) -> SmtpSender:
    settings = SmtpSettings(host="127.0.0.1", port=relay.port, security="plain", timeout=10)
    return SmtpSender(settings, helo_name="hr.example", oauth=tokens, oauth_user=MAILBOX)


def secrets_of(endpoint: TokenEndpoint) -> list[str]:
    """Every secret the test's endpoint knows: none may show in a log, error or repr."""
    return [CLIENT_SECRET, REFRESH_TOKEN, endpoint.refresh_token, *endpoint.issued]


def assert_no_secret(text: str, endpoint: TokenEndpoint, also: Sequence[str] = ()) -> None:
    for secret in [*secrets_of(endpoint), *also]:
        assert secret not in text


# -- settings ------------------------------------------------------------------------------------


def _email(**values: Any) -> EmailSettings:
    imap = {"host": "imap.example", "username": ADDRESS, **values.pop("imap", {})}
    return EmailSettings.model_validate({"address": ADDRESS, "imap": imap, **values})


GOOD = {
    "token_url": "https://login.example/token",
    "client_id": "app",
    "client_secret": "given-secret-value",
}


@pytest.mark.parametrize(
    ("imap", "shared", "field_named"),
    [
        ({}, None, "imap: give 'password', or 'oauth'"),
        ({"password": "p", "oauth": GOOD}, None, "either 'password' or 'oauth'"),
        ({"oauth": {**GOOD, "token_url": "http://login.example/t"}}, None, "token_url"),
        ({"oauth": {**GOOD, "token_url": "login.example"}}, None, "token_url"),
        ({"oauth": {**GOOD, "client_secret": None}}, None, "client_secret is required"),
        ({"oauth": {**GOOD, "flow": "refresh_token"}}, None, "refresh_token is required"),
        ({"oauth": {**GOOD, "refresh_token": "r"}}, None, "flow = 'refresh_token'"),
        ({"oauth": {**GOOD, "scopes": ["a b"]}}, None, "scopes"),
        ({"oauth": {**GOOD, "flow": "password"}}, None, "oauth.flow"),
        ({}, {**GOOD, "client_id": ""}, "oauth.client_id"),
        ({"oauth": {**GOOD, "tenant": "x"}}, None, "oauth.tenant"),
    ],
)
def test_oauth_settings_refused_name_the_field(
    imap: dict[str, Any], shared: dict[str, Any] | None, field_named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _email(imap=imap, **({"oauth": shared} if shared else {}))
    # As `usm-bridge check` words it: the key and the problem, never the value given.
    text = "; ".join(f"{settings_key(loc)}: {msg}" for loc, msg in settings_problems(caught.value))
    assert field_named in text
    assert "given-secret-value" not in text


def test_shared_oauth_serves_both_servers_unless_one_has_a_password() -> None:
    settings = _email(oauth=GOOD, smtp={"host": "smtp.example", "username": "u", "password": "p"})
    assert settings.imap is not None and settings.smtp is not None
    assert settings.oauth_for(settings.imap) is settings.oauth
    assert settings.oauth_for(settings.smtp) is None  # its own password wins
    assert settings.oauth_user(settings.imap) == ADDRESS
    own = _email(imap={"oauth": {**GOOD, "user": "desk@hr.example"}})
    assert own.imap is not None and own.oauth_user(own.imap) == "desk@hr.example"
    assert "given-secret-value" not in repr(own) + str(own.model_dump())


def _config_file(root: Path, oauth_lines: str) -> Path:
    path = root / "usm-bridge.toml"
    path.write_text(
        f"""[store]
url = "sqlite:///{root}/bridge.db"

[units.hr]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "{MAPPING}"

[instances.hr-mail.settings]
address = "{ADDRESS}"
imap = {{ host = "outlook.office365.com", username = "{ADDRESS}" }}

[instances.hr-mail.settings.oauth]
token_url = "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token"
client_id = "app"
{oauth_lines}
""",
        encoding="utf-8",
    )
    return path


def test_config_file_takes_oauth_secrets_from_env_and_file_and_check_names_the_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "refresh.txt").write_text("refresh-from-a-file-value\n")
    good = _config_file(
        tmp_path,
        'client_secret = "${HR_MAIL_SECRET}"\nflow = "refresh_token"\n'
        'refresh_token = { file = "refresh.txt" }',
    )
    config = load_config(good, environ={"HR_MAIL_SECRET": "secret-from-the-env-value"})
    assert any("instance hr-mail (email" in line for line in check_config(config))
    settings = EmailSettings.model_validate(config.instances["hr-mail"].settings)
    assert settings.oauth is not None and settings.oauth.client_secret is not None
    assert settings.oauth.client_secret.get_secret_value() == "secret-from-the-env-value"
    assert settings.oauth.refresh_token is not None
    assert settings.oauth.refresh_token.get_secret_value() == "refresh-from-a-file-value"

    bad = _config_file(tmp_path, 'client_secret = "${HR_MAIL_SECRET}"\nflow = "refresh_token"')
    config = load_config(bad, environ={"HR_MAIL_SECRET": "secret-from-the-env-value"})
    with pytest.raises(ConfigurationError) as caught:
        check_config(config)
    assert "instances.hr-mail.settings.oauth" in str(caught.value)
    assert "refresh_token is required" in str(caught.value)
    assert "secret-from-the-env-value" not in str(caught.value)


# -- the token source against the loopback endpoint ---------------------------------------------


def test_client_credentials_token_is_fetched_once_and_cached(
    endpoint: TokenEndpoint, clock: Clock
) -> None:
    tokens = source(endpoint, clock)
    first = tokens.token()
    assert tokens.token() == first
    assert endpoint.active(first, MAILBOX)
    assert endpoint.requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "usm-bridge-test",
            "client_secret": CLIENT_SECRET,
            "scope": "https://outlook.office365.com/.default",
        }
    ]


def test_token_is_renewed_a_margin_before_it_expires(endpoint: TokenEndpoint, clock: Clock) -> None:
    tokens = source(endpoint, clock, refresh_margin=300)
    first = tokens.token()
    clock.advance(3600 - 301)  # still valid beyond the margin
    assert tokens.token() == first
    clock.advance(2)  # within the margin: still valid at the endpoint, but renewed now
    assert endpoint.active(first)
    second = tokens.token()
    assert second != first and endpoint.active(second)
    assert len(endpoint.requests) == 2


def test_short_lived_tokens_are_kept_for_half_their_life(
    endpoint: TokenEndpoint, clock: Clock
) -> None:
    endpoint.lifetime = 200  # shorter than the margin: renewing a margin early would mean always
    tokens = source(endpoint, clock, refresh_margin=300)
    first = tokens.token()
    clock.advance(99)
    assert tokens.token() == first
    clock.advance(2)
    assert tokens.token() != first
    assert len(endpoint.requests) == 2


def test_refresh_token_rotation_is_kept_for_the_process(
    endpoint: TokenEndpoint, clock: Clock
) -> None:
    endpoint.rotate = True
    tokens = source(endpoint, clock, flow="refresh_token", refresh_token=REFRESH_TOKEN, scopes=[])
    tokens.token()
    rotated = endpoint.refresh_token
    assert rotated != REFRESH_TOKEN
    clock.advance(3600)
    tokens.token()  # refused (invalid_grant) if the first refresh token were sent again
    clock.advance(3600)
    tokens.token()
    sent = [form["refresh_token"] for form in endpoint.requests]
    assert sent[0] == REFRESH_TOKEN and sent[1] == rotated and len(set(sent)) == 3
    assert all(form["grant_type"] == "refresh_token" for form in endpoint.requests)
    assert "scope" not in endpoint.requests[0]
    assert_no_secret(repr(tokens), endpoint)


@pytest.mark.parametrize(
    ("status", "body", "kind", "expected"),
    [
        (400, {"error": "invalid_client"}, PermanentRemoteError, "OAuth error invalid_client"),
        (401, {"error": "unauthorized_client"}, PermanentRemoteError, "unauthorized_client"),
        (400, {"error": "invalid_grant"}, PermanentRemoteError, "OAuth error invalid_grant"),
        (503, "upstream down", RetriableRemoteError, "failed for now (server error"),
        (200, "<html>proxy login</html>", PermanentRemoteError, "not a JSON object"),
        (200, {"token_type": "Bearer"}, PermanentRemoteError, "without an access_token"),
        (200, {"access_token": "abc", "token_type": "mac"}, PermanentRemoteError, "Bearer"),
    ],
)
def test_endpoint_errors_are_clear_and_carry_no_secret(
    endpoint: TokenEndpoint,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any] | str,
    kind: type[Exception],
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    text = body if isinstance(body, str) else json.dumps({**body, "echo": CLIENT_SECRET})
    endpoint.faults.extend([(status, text)] * 3)  # a 503 is retried: every attempt fails
    tokens = source(endpoint, clock)
    with pytest.raises(kind) as caught:
        tokens.token()
    message = str(caught.value)
    assert expected in message
    assert endpoint.token_url in message
    assert_no_secret(message + caplog.text, endpoint)
    assert len(endpoint.requests) == (3 if status == 503 else 1)


def test_endpoint_down_or_silent_is_temporary(endpoint: TokenEndpoint, clock: Clock) -> None:
    endpoint.stop()
    tokens = source(endpoint, clock)
    with pytest.raises(RetriableRemoteError) as down:
        tokens.token()
    assert "connection failed" in str(down.value) and endpoint.token_url in str(down.value)
    # A listener that never answers: the request times out (1 s, three attempts).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/token"
        quiet = source(endpoint, clock, token_url=url, timeout=1)
        with pytest.raises(RetriableRemoteError) as timed_out:
            quiet.token()
    assert "timeout" in str(timed_out.value) and url in str(timed_out.value)
    endpoint.start()
    assert endpoint.active(tokens.token())  # up again: the same source works


# -- SMTP: AUTH XOAUTH2 at a relay that checks the token ---------------------------------------


def test_smtp_signs_in_with_xoauth2_and_reuses_the_token(
    endpoint: TokenEndpoint, clock: Clock, relay: OAuthSmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = source(endpoint, clock)
    smtp = sender(relay, tokens)
    smtp.check()
    smtp.send(MAIL, ADDRESS, ["ann@customer.example"])
    smtp.send(MAIL, ADDRESS, ["bob@customer.example"])
    assert [m[1] for m in relay.messages] == [["ann@customer.example"], ["bob@customer.example"]]
    assert len(endpoint.requests) == 1 and len(relay.oauth.accepted) == 3
    assert relay.oauth.refused == []
    assert_no_secret(caplog.text, endpoint)


def test_smtp_expired_token_is_renewed_before_use(
    endpoint: TokenEndpoint, clock: Clock, relay: OAuthSmtpServer
) -> None:
    smtp = sender(relay, source(endpoint, clock))
    smtp.send(MAIL, ADDRESS, ["ann@customer.example"])
    first = relay.oauth.accepted[-1]
    clock.advance(3600)  # the first token is dead at the endpoint and the relay
    assert not endpoint.active(first)
    smtp.send(MAIL, ADDRESS, ["bob@customer.example"])
    assert relay.oauth.refused == []  # never offered the expired one
    assert len(relay.messages) == 2 and len(endpoint.requests) == 2


def test_smtp_refused_token_is_replaced_once(
    endpoint: TokenEndpoint, clock: Clock, relay: OAuthSmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp = sender(relay, source(endpoint, clock))
    smtp.send(MAIL, ADDRESS, ["ann@customer.example"])
    endpoint.revoke_all()  # valid by its expiry, yet the relay refuses it now
    smtp.send(MAIL, ADDRESS, ["bob@customer.example"])
    assert len(relay.oauth.refused) == 1 and len(relay.oauth.accepted) == 2
    assert len(relay.messages) == 2 and len(endpoint.requests) == 2
    assert_no_secret(caplog.text, endpoint, relay.oauth.refused)


def test_smtp_refusing_every_token_or_endpoint_refusing_is_the_bridges_problem(
    endpoint: TokenEndpoint, clock: Clock, relay: OAuthSmtpServer
) -> None:
    # The relay knows the mailbox under another name: every token is refused, twice, no more.
    smtp = sender(relay, source(endpoint, clock))
    smtp._oauth_user = "someone-else@hr.example"
    with pytest.raises(RelayRefusedBridge) as refused:
        smtp.send(MAIL, ADDRESS, ["ann@customer.example"])
    assert "535" in str(refused.value) and len(relay.oauth.refused) == 2
    # The endpoint refuses the client: no message is to blame either.
    wrong = sender(relay, source(endpoint, clock, client_secret="wrong-secret-value"))
    with pytest.raises(RelayRefusedBridge) as invalid:
        wrong.send(MAIL, ADDRESS, ["ann@customer.example"])
    assert "invalid_client" in str(invalid.value)
    assert "wrong-secret-value" not in str(invalid.value)
    assert relay.messages == []


# -- IMAP: AUTHENTICATE XOAUTH2 at Dovecot, whose oauth2 passdb asks the endpoint ---------------


def oauth_connector(
    dovecot: DovecotServer,
    endpoint: TokenEndpoint,
    clock: Clock,
    relay: OAuthSmtpServer | None = None,
    **extra: Any,
) -> EmailConnector:
    values: dict[str, Any] = {
        "address": ADDRESS,
        "reference_prefix": "HR",
        "imap": {
            "host": "127.0.0.1",
            "port": dovecot.port,
            "security": "plain",
            "username": MAILBOX,
            "timeout": 10,
        },
        "oauth": endpoint.settings(),
        "backoff_initial": 0.0,
        "max_attempts": 2,
        **extra,
    }
    if relay is not None:
        values["smtp"] = {"host": "127.0.0.1", "port": relay.port, "security": "plain"}
    settings = EmailSettings.model_validate(values)
    return EmailConnector("hr-mail", settings, sleep=lambda _: None, now=clock.now)


def deliver(dovecot: DovecotServer, endpoint: TokenEndpoint, *subjects: str) -> None:
    client = xoauth2_client(dovecot, endpoint)
    try:
        for subject in subjects:
            _, raw = customer_mail(subject, f"{subject}, please help.")
            assert client.append("INBOX", None, None, raw)[0] == "OK"
    finally:
        client.logout()


def subjects(records: list[Any]) -> list[str]:
    return sorted(str(r.data["subject"]) for r in records)


def test_imap_reads_with_xoauth2_and_check_signs_in(
    dovecot: DovecotServer,
    endpoint: TokenEndpoint,
    clock: Clock,
    relay: OAuthSmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    deliver(dovecot, endpoint, "Printer jam", "Badge broken")
    connector = oauth_connector(dovecot, endpoint, clock, relay, acknowledge=True)
    try:
        result = connector.check()
        assert result.ok, result.detail
        records, _ = read(connector)
    finally:
        connector.close()
    assert subjects(records) == ["Badge broken", "Printer jam"]
    # One token for both servers: IMAP and SMTP share the connector-wide oauth block.
    assert endpoint.grants() == ["client_credentials"]
    assert len(relay.messages) == 2  # both acknowledged through the XOAUTH2 relay
    assert f"user={MAILBOX}" in dovecot.log() or "Login: user=<" + MAILBOX in dovecot.log()
    assert_no_secret(caplog.text + repr(connector.config), endpoint)


@pytest.mark.parametrize("between", ["expiry", "revocation"])
def test_imap_next_sign_in_gets_a_valid_token(
    dovecot: DovecotServer, endpoint: TokenEndpoint, clock: Clock, between: str
) -> None:
    """An expired token is renewed before it is offered (Dovecot refuses nothing); a revoked
    one is refused by Dovecot once, replaced, and the sign-in goes through."""
    deliver(dovecot, endpoint, "First")
    connector = oauth_connector(dovecot, endpoint, clock, acknowledge=False)
    try:
        records, cursor = read(connector)
        connector.close()  # the next cycle signs in again
        if between == "expiry":
            clock.advance(3600)
        else:
            endpoint.revoke_all()  # Dovecot's introspection now says inactive
        deliver(dovecot, endpoint, "Second")
        later, _ = read(connector, cursor)
    finally:
        connector.close()
    assert subjects(records) == ["First"] and subjects(later) == ["Second"]
    assert len(endpoint.requests) == 2
    refusals = dovecot.log().count("oauth2 failed: Introspection failed")
    assert refusals == (0 if between == "expiry" else 1)


def test_imap_with_a_rotating_refresh_token_across_cycles(
    dovecot: DovecotServer, endpoint: TokenEndpoint, clock: Clock
) -> None:
    """Google-style: the refresh-token flow; the endpoint rotates the refresh token at every
    use and accepts only the newest, so each cycle's sign-in proves the rotated one was kept."""
    endpoint.rotate = True
    oauth = endpoint.settings(
        flow="refresh_token", refresh_token=REFRESH_TOKEN, scopes=["https://mail.google.com/"]
    )
    connector = oauth_connector(dovecot, endpoint, clock, oauth=oauth, acknowledge=False)
    cursor = None
    seen: list[str] = []
    try:
        for cycle in range(3):
            deliver(dovecot, endpoint, f"Cycle {cycle}")
            records, cursor = read(connector, cursor)
            seen += subjects(records)
            connector.close()
            clock.advance(3600)
    finally:
        connector.close()
    assert seen == ["Cycle 0", "Cycle 1", "Cycle 2"]
    sent = [form["refresh_token"] for form in endpoint.requests]
    assert len(sent) == 3 and len(set(sent)) == 3 and sent[0] == REFRESH_TOKEN
    assert "oauth2 failed" not in dovecot.log()


def test_imap_refusing_every_token_is_permanent_and_check_says_so(
    dovecot: DovecotServer, endpoint: TokenEndpoint, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens for another mailbox than the one named: Dovecot refuses both the cached token and
    the fresh one; no third try, and the error names the server and the mailbox, no token."""
    caplog.set_level(logging.DEBUG)
    connector = oauth_connector(
        dovecot, endpoint, clock, oauth={**endpoint.settings(), "user": "payroll@hr.example"}
    )
    try:
        check = connector.check()
        with pytest.raises(PermanentRemoteError) as refused:
            list(connector.read_changes(None))
    finally:
        connector.close()
    assert not check.ok and "login as 'payroll@hr.example'" in check.detail
    assert f"imap://127.0.0.1:{dovecot.port}" in str(refused.value)
    assert dovecot.log().count("oauth2 failed") == 4  # two sign-ins, each with two tokens
    # The token refused on the second try stays cached (the mailbox is wrong, not the token):
    # the read starts with it, then fetches one more.
    assert len(endpoint.requests) == 3
    assert_no_secret(check.detail + str(refused.value) + caplog.text, endpoint)


def test_imap_endpoint_down_fails_the_cycle_and_the_next_one_reads_everything(
    dovecot: DovecotServer, endpoint: TokenEndpoint, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deliver(dovecot, endpoint, "First")
    connector = oauth_connector(dovecot, endpoint, clock, acknowledge=False)
    try:
        _, cursor = read(connector)
        connector.close()
        deliver(dovecot, endpoint, "Second", "Third")
        clock.advance(3600)  # the cached token is dead: a new one is needed ...
        endpoint.stop()  # ... and the endpoint is down
        with pytest.raises(RetriableRemoteError) as down:
            list(connector.read_changes(cursor))
        assert endpoint.token_url in str(down.value)
        check = connector.check()
        assert not check.ok and endpoint.token_url in check.detail
        endpoint.start()
        later, _ = read(connector, cursor)  # from the same checkpoint: nothing was lost
    finally:
        connector.close()
    assert subjects(later) == ["Second", "Third"]
    assert_no_secret(caplog.text, endpoint)


def test_owed_mail_waits_while_the_endpoint_is_down_and_intake_goes_on(
    dovecot: DovecotServer, endpoint: TokenEndpoint, clock: Clock, relay: OAuthSmtpServer
) -> None:
    """IMAP holds a session; the relay needs a token per message: with the endpoint down the
    acknowledgement waits in Sent (pending), the call is made, and the next cycle sends it."""
    connector = oauth_connector(dovecot, endpoint, clock, relay, acknowledge=True)
    try:
        assert connector.check().ok  # IMAP signed in and kept open, token cached
        deliver(dovecot, endpoint, "Laptop dead")
        clock.advance(3600 - 200)  # the cached token is within the renewal margin
        endpoint.stop()
        records, cursor = read(connector)
        assert subjects(records) == ["Laptop dead"] and relay.messages == []
        endpoint.start()
        clock.advance(3600)  # past the relay backoff
        again, _ = read(connector, cursor)
    finally:
        connector.close()
    assert len(relay.messages) == 1  # the acknowledgement, exactly once
    assert "Laptop dead" in relay.messages[0][2].decode()
    assert again == [] or all(r.data["subject"] == "Laptop dead" for r in again)


def test_idle_signs_in_with_xoauth2_and_wakes_on_new_mail(
    dovecot: DovecotServer,
    endpoint: TokenEndpoint,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = oauth_connector(dovecot, endpoint, clock)
    try:
        with watching(connector.watch) as (wakes, _):
            seen = wakes.beyond(0)  # signed in with a token, idling
            deliver(dovecot, endpoint, "Printer jam")
            wakes.beyond(seen)
    finally:
        connector.close()
    assert "method=XOAUTH2" in dovecot.log()
    assert_no_secret(caplog.text, endpoint)
