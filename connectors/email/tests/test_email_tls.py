"""IMAP and SMTP over TLS and STARTTLS, with certificates from a throwaway CA (trustme).

* IMAP STARTTLS: pymap itself, given ``--cert``/``--key`` (it then offers STARTTLS and refuses
  LOGIN before it).
* IMAP implicit TLS (port-993 style): pymap has no such listener, so a TLS front terminates TLS
  before the plain pymap, as stunnel or a load balancer would.
* SMTP STARTTLS (with AUTH) and implicit TLS: aiosmtpd.

What must hold: ``ca_file`` is the CA trusted; a certificate from another CA, or for another
host name, is refused at once (no retries), as a sentence without a traceback or the password;
a server without STARTTLS is refused rather than spoken to in plain text.
"""

from __future__ import annotations

import imaplib
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword
from email_harness import ADDRESS, customer_mail, watching
from email_servers import PASSWORD, USER, FaultPlan, PymapServer, SmtpServer, TlsFront, serving
from pydantic import ValidationError
from usm_bridge.connector import RawRecord
from usm_bridge.errors import PermanentRemoteError

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.settings import SmtpSettings
from usm_bridge_email.smtp import SmtpSender

SMTP_SECRET = "smtp-S3cret-never-in-a-message"


@dataclass
class Pki:
    ca_file: Path  # the CA that signed the servers' certificates
    other_ca_file: Path  # a CA nobody's certificate here comes from
    cert_file: Path  # the server's certificate chain, for 127.0.0.1 and localhost
    key_file: Path
    server: ssl.SSLContext  # a server context with that certificate
    wrong_name: ssl.SSLContext  # a server context whose certificate (same CA) is for another host


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    other.cert_pem.write_to_path(str(root / "other-ca.pem"))
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(root / "server.pem"), append=True)
    leaf.private_key_pem.write_to_path(str(root / "server.key"))
    return Pki(
        ca_file=root / "ca.pem",
        other_ca_file=root / "other-ca.pem",
        cert_file=root / "server.pem",
        key_file=root / "server.key",
        server=_server_context(leaf),
        wrong_name=_server_context(ca.issue_cert("mail.example")),
    )


@pytest.fixture(scope="module")
def starttls_pymap(pki: Pki) -> Iterator[PymapServer]:
    yield from serving(PymapServer(tls=(pki.cert_file, pki.key_file)))


@pytest.fixture(scope="module")
def tls_front(pymap_server: PymapServer, pki: Pki) -> Iterator[TlsFront]:
    yield from serving(TlsFront(pymap_server, pki.server))


@pytest.fixture(scope="module")
def wrong_name_front(pymap_server: PymapServer, pki: Pki) -> Iterator[TlsFront]:
    yield from serving(TlsFront(pymap_server, pki.wrong_name))


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
        USER.encode(), SMTP_SECRET.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def starttls_relay(pki: Pki) -> Iterator[SmtpServer]:
    """A relay that takes nothing before STARTTLS, and AUTH only after it."""
    yield from serving(
        SmtpServer(
            FaultPlan(),
            tls_context=pki.server,
            require_starttls=True,
            authenticator=_authenticator,
            auth_required=True,
        )
    )


@pytest.fixture(scope="module")
def tls_relay(pki: Pki) -> Iterator[SmtpServer]:
    yield from serving(SmtpServer(FaultPlan(), ssl_context=pki.server))


# -- helpers ------------------------------------------------------------------------------------


def _admin(server: PymapServer, pki: Pki) -> imaplib.IMAP4:
    """A person's own client on the server (STARTTLS first where the server asks for it)."""
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    if server.tls:
        client.starttls(ssl_context=ssl.create_default_context(cafile=str(pki.ca_file)))
    client.login(USER, PASSWORD)
    return client


def _mailbox_with_one_mail(server: PymapServer, pki: Pki) -> tuple[str, str]:
    """A fresh folder holding one customer mail: (folder, its Message-ID)."""
    folder = f"Tls{uuid.uuid4().hex[:8]}"
    message_id, raw = customer_mail("VPN down", "The VPN does not connect.")
    client = _admin(server, pki)
    try:
        assert client.create(folder)[0] == "OK"
        assert client.append(folder, None, None, raw)[0] == "OK"
    finally:
        client.logout()
    return folder, message_id


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _connector(imap: dict[str, Any], sleeps: Sleeps | None = None) -> EmailConnector:
    settings = EmailSettings.model_validate(
        {
            "address": ADDRESS,
            "imap": {"host": "127.0.0.1", "username": USER, "password": PASSWORD, **imap},
            "acknowledge": False,
            "max_attempts": 3,
            "backoff_initial": 0.0,
        }
    )
    return EmailConnector("hr-mail", settings, sleep=sleeps if sleeps is not None else Sleeps())


def _read_ids(connector: EmailConnector) -> list[str]:
    try:
        return [r.remote_id for r in connector.read_changes(None) if isinstance(r, RawRecord)]
    finally:
        connector.close()


def _assert_clear(text: str, *secrets: str) -> None:
    assert "Traceback" not in text and 'File "' not in text
    for secret in (PASSWORD, SMTP_SECRET, *secrets):
        assert secret not in text


# -- IMAP ---------------------------------------------------------------------------------------


def test_imap_over_implicit_tls_reads_with_ca_file(
    pymap_server: PymapServer, tls_front: TlsFront, pki: Pki
) -> None:
    folder, message_id = _mailbox_with_one_mail(pymap_server, pki)
    settings = {"port": tls_front.port, "security": "tls", "ca_file": str(pki.ca_file)}
    connector = _connector({**settings, "inbox": folder, "sent": f"{folder}/Sent"})
    result = connector.check()
    assert result.ok, result.detail
    assert _read_ids(connector) == [message_id]


def test_imap_over_starttls_reads_with_ca_file(starttls_pymap: PymapServer, pki: Pki) -> None:
    folder, message_id = _mailbox_with_one_mail(starttls_pymap, pki)
    settings = {"port": starttls_pymap.port, "security": "starttls", "ca_file": str(pki.ca_file)}
    connector = _connector({**settings, "inbox": folder, "sent": f"{folder}/Sent"})
    result = connector.check()
    assert result.ok, result.detail
    assert _read_ids(connector) == [message_id]


@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("trust", ["other CA", "system store"])
def test_imap_refuses_a_certificate_from_an_unknown_ca(
    security: str,
    trust: str,
    tls_front: TlsFront,
    starttls_pymap: PymapServer,
    pki: Pki,
) -> None:
    port = tls_front.port if security == "tls" else starttls_pymap.port
    imap: dict[str, Any] = {"port": port, "security": security}
    if trust == "other CA":
        imap["ca_file"] = str(pki.other_ca_file)
    sleeps = Sleeps()
    result = _connector(imap, sleeps).check()
    assert not result.ok
    assert "TLS certificate is not trusted" in result.detail
    assert "unable to get local issuer certificate" in result.detail
    assert "set ca_file" in result.detail
    _assert_clear(result.detail)
    assert sleeps == []  # permanent: no retries against a certificate that will not change

    with pytest.raises(PermanentRemoteError, match="not trusted") as raised:
        _read_ids(_connector(imap))
    _assert_clear(str(raised.value))


def test_imap_checks_the_host_name(wrong_name_front: TlsFront, pki: Pki) -> None:
    """The right CA is not enough: the certificate must be for the host connected to."""
    imap = {"port": wrong_name_front.port, "security": "tls", "ca_file": str(pki.ca_file)}
    result = _connector(imap).check()
    assert not result.ok
    assert "not trusted" in result.detail and "127.0.0.1" in result.detail
    _assert_clear(result.detail)


def test_imap_starttls_is_never_skipped(pymap_server: PymapServer, pki: Pki) -> None:
    """A server that does not offer STARTTLS gets no password in plain text."""
    imap = {"port": pymap_server.port, "security": "starttls", "ca_file": str(pki.ca_file)}
    sleeps = Sleeps()
    result = _connector(imap, sleeps).check()
    assert not result.ok and "does not offer STARTTLS" in result.detail
    _assert_clear(result.detail)
    assert sleeps == []


def test_imap_tls_against_a_plain_port_is_a_clear_error(
    pymap_server: PymapServer, pki: Pki
) -> None:
    imap = {"port": pymap_server.port, "security": "tls", "ca_file": str(pki.ca_file)}
    result = _connector(imap).check()
    assert not result.ok and "TLS handshake failed" in result.detail
    _assert_clear(result.detail)


def test_a_missing_ca_file_is_a_clear_error(tls_front: TlsFront, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = _connector({"port": tls_front.port, "security": "tls", "ca_file": str(missing)})
    check = result.check()
    assert not check.ok and "cannot load ca_file" in check.detail and str(missing) in check.detail
    _assert_clear(check.detail)


# -- SMTP ---------------------------------------------------------------------------------------


def _sender(relay: SmtpServer, **values: Any) -> SmtpSender:
    settings = SmtpSettings.model_validate(
        {"host": "127.0.0.1", "port": relay.port, "timeout": 10, **values}
    )
    return SmtpSender(settings, helo_name="hr.example")


def test_smtp_over_starttls_with_ca_file_and_auth(starttls_relay: SmtpServer, pki: Pki) -> None:
    _, raw = customer_mail("Over STARTTLS", "Sent after STARTTLS.")
    sender = _sender(
        starttls_relay,
        security="starttls",
        ca_file=str(pki.ca_file),
        username=USER,
        password=SMTP_SECRET,
    )
    sender.check()
    sender.send(raw, ADDRESS, ["ann@customer.example"])
    assert [(m[0], m[1]) for m in starttls_relay.messages] == [(ADDRESS, ["ann@customer.example"])]


def test_smtp_over_implicit_tls_with_ca_file(tls_relay: SmtpServer, pki: Pki) -> None:
    _, raw = customer_mail("Over TLS", "Sent over implicit TLS.")
    sender = _sender(tls_relay, security="tls", ca_file=str(pki.ca_file))
    sender.send(raw, ADDRESS, ["ann@customer.example"])
    assert len(tls_relay.messages) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_smtp_refuses_a_certificate_from_an_unknown_ca(
    security: str, tls_relay: SmtpServer, starttls_relay: SmtpServer, pki: Pki
) -> None:
    relay = tls_relay if security == "tls" else starttls_relay
    before = len(relay.messages)
    sender = _sender(
        relay,
        security=security,
        ca_file=str(pki.other_ca_file),
        username=USER,
        password=SMTP_SECRET,
    )
    _, raw = customer_mail("Never sent", "This must not leave.")
    with pytest.raises(PermanentRemoteError, match="TLS certificate is not trusted") as raised:
        sender.send(raw, ADDRESS, ["ann@customer.example"])
    _assert_clear(str(raised.value))
    assert len(relay.messages) == before


def test_smtp_starttls_is_never_skipped(smtp_server: SmtpServer, pki: Pki) -> None:
    """The session's relay speaks plain text only: with security 'starttls' nothing is sent."""
    before = len(smtp_server.messages)
    sender = _sender(
        smtp_server,
        security="starttls",
        ca_file=str(pki.ca_file),
        username=USER,
        password=SMTP_SECRET,
    )
    _, raw = customer_mail("Never sent", "This must not leave.")
    with pytest.raises(PermanentRemoteError, match="does not support") as raised:
        sender.send(raw, ADDRESS, ["ann@customer.example"])
    _assert_clear(str(raised.value))
    assert len(smtp_server.messages) == before


def test_smtp_plain_text_only_on_loopback() -> None:
    with pytest.raises(ValidationError, match="only on loopback"):
        SmtpSettings.model_validate({"host": "relay.example", "security": "plain"})


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_idle_over_tls_wakes_on_new_mail(
    security: str,
    pymap_server: PymapServer,
    starttls_pymap: PymapServer,
    tls_front: TlsFront,
    pki: Pki,
) -> None:
    # The IDLE watcher reads its lines through TLS: what the TLS layer holds decrypted must
    # wake it as the socket's bytes do.
    server, port = (pymap_server, tls_front.port) if security == "tls" else (
        starttls_pymap, starttls_pymap.port)  # fmt: skip
    folder, _ = _mailbox_with_one_mail(server, pki)
    settings = {"port": port, "security": security, "ca_file": str(pki.ca_file)}
    connector = _connector({**settings, "inbox": folder, "sent": f"{folder}/Sent"})
    with watching(connector.watch) as (wakes, _):
        seen = wakes.beyond(0)  # idling
        client = _admin(server, pki)
        try:
            for n in range(3):
                _, raw = customer_mail(f"VPN down {n}", "Still.")
                assert client.append(folder, None, None, raw)[0] == "OK"
                seen = wakes.beyond(seen)
        finally:
            client.logout()
