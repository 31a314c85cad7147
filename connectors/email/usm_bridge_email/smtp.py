"""Handing a message to an SMTP relay, with the relay's answer turned into the core's errors.

SMTP says itself what kind of failure it is: a 4xx reply is temporary (try again later), a 5xx
reply is permanent (the relay will never take this message). A dropped connection or a timeout
is temporary too. The relay's own text travels in ``remote_message``; the password never does.

A permanent failure before any message is offered (the relay's TLS certificate, no STARTTLS,
a refused sign-in) is :class:`RelayRefusedBridge`: no message is to blame, so a caller holding
mail keeps it for when the settings are put right instead of giving it up.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence

from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError

from .oauth import TokenSource, sign_in_with_token, xoauth2_response
from .settings import SmtpSettings
from .tls import tls_context, tls_failure

__all__ = ["RelayRefusedBridge", "SmtpSender", "smtp_error"]


class RelayRefusedBridge(PermanentRemoteError):
    """The relay refused the bridge itself (TLS, STARTTLS, sign-in), not a message."""


def _session_error(error: RemoteError) -> RemoteError:
    """``error`` met while setting up the session: a permanent one is the bridge's, not the
    message's (the text is kept as it is, ``remote_message`` too)."""
    if not isinstance(error, PermanentRemoteError) or isinstance(error, RelayRefusedBridge):
        return error
    refused = RelayRefusedBridge(str(error))
    refused.remote_message = error.remote_message
    return refused


def smtp_error(error: BaseException, where: str) -> RemoteError:
    """The core's error for what the relay answered (4xx temporary, 5xx permanent)."""
    tls = tls_failure(error, "SMTP", where)
    if tls is not None:
        return tls
    if isinstance(error, smtplib.SMTPNotSupportedError):  # no STARTTLS (or AUTH) offered
        return PermanentRemoteError(
            f"SMTP relay {where} does not support what the settings ask for ({error}); "
            "the password is never sent in plain text",
            remote_message=str(error)[:500],
        )
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())
        codes = [code for code, _ in answers]
        text = "; ".join(f"{code} {msg.decode(errors='replace')}" for code, msg in answers)
        kind = RetriableRemoteError if all(400 <= c < 500 for c in codes) else PermanentRemoteError
        return kind(f"SMTP relay {where} refused the recipients", remote_message=text[:500])
    if isinstance(error, smtplib.SMTPResponseException):
        raw = error.smtp_error
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        temporary = 400 <= error.smtp_code < 500
        kind = RetriableRemoteError if temporary else PermanentRemoteError
        return kind(
            f"SMTP relay {where} answered {error.smtp_code}",
            remote_message=f"{error.smtp_code} {text}"[:500],
        )
    if isinstance(error, smtplib.SMTPServerDisconnected | OSError):
        return RetriableRemoteError(
            f"SMTP relay {where} unreachable", remote_message=str(error)[:500]
        )
    return PermanentRemoteError(f"SMTP relay {where} failed", remote_message=str(error)[:500])


class SmtpSender:
    """One connection per message: a relay that closed an idle connection is never a problem."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        helo_name: str = "localhost",
        oauth: TokenSource | None = None,
        oauth_user: str = "",
    ) -> None:
        """``oauth`` (with the mailbox ``oauth_user``) signs in with SASL XOAUTH2 instead of
        the settings' username and password."""
        self.settings = settings
        self.helo = settings.helo_name or helo_name
        self.where = f"smtp://{settings.host}:{settings.port}"
        self._oauth = oauth
        self._oauth_user = oauth_user

    def _context(self) -> ssl.SSLContext:
        return tls_context(self.settings.ca_file, self.where)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(
                s.host, s.port, self.helo, timeout=s.timeout, context=self._context()
            )
        context = self._context() if s.security == "starttls" else None
        client = smtplib.SMTP(s.host, s.port, self.helo, timeout=s.timeout)
        if context is not None:
            try:
                client.starttls(context=context)
            except BaseException:
                client.close()
                raise
        return client

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Deliver ``raw`` as is (its headers already final).

        A permanent failure of the session (connecting, TLS, signing in) raises
        :class:`RelayRefusedBridge`; one of the message (MAIL FROM, RCPT TO, DATA) a plain
        :class:`PermanentRemoteError`.
        """
        offered = False
        try:
            with self._connect() as client:
                self._sign_in(client)
                offered = True
                client.sendmail(sender, list(recipients), raw)
        except RemoteError as error:  # the OAuth token endpoint's, before anything was offered
            raise _session_error(error) from None
        except (smtplib.SMTPException, OSError) as error:
            found = smtp_error(error, self.where)
            raise (found if offered else _session_error(found)) from None

    def _sign_in(self, client: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 with a token (once more with a fresh one after a 535), or LOGIN/PLAIN
        with the password, or nothing (a relay that takes the bridge's mail unsigned)."""
        if self._oauth is None:
            s = self.settings
            if s.username and s.password is not None:
                client.login(s.username, s.password.get_secret_value())
            return
        client.ehlo_or_helo_if_needed()
        if "XOAUTH2" not in client.esmtp_features.get("auth", "").upper().split():
            raise smtplib.SMTPNotSupportedError("AUTH XOAUTH2 is not offered")
        user = self._oauth_user

        def attempt(token: str) -> None:
            def respond(challenge: bytes | None = None) -> str:
                # Asked first without a challenge: the credentials. A challenge is the relay's
                # error (JSON), acknowledged with an empty line so that it answers 535.
                return "" if challenge else xoauth2_response(user, token).decode()

            client.auth("XOAUTH2", respond, initial_response_ok=True)

        sign_in_with_token(self._oauth, attempt, smtplib.SMTPAuthenticationError)

    def size_limit(self) -> int | None:
        """The largest message the relay takes, as its EHLO's ``SIZE`` says (RFC 1870); ``None``
        when it states none (no SIZE, or ``SIZE 0``). A relay refuses a larger one (552) at
        ``MAIL FROM`` already, since smtplib tells it the size: asked first, a file too large
        is refused before any mail is made."""
        try:
            with self._connect() as client:
                self._sign_in(client)
                client.ehlo_or_helo_if_needed()
                stated = client.esmtp_features.get("size", "").strip()
        except RemoteError as error:
            raise _session_error(error) from None
        except (smtplib.SMTPException, OSError) as error:
            raise _session_error(smtp_error(error, self.where)) from None
        return int(stated) if stated.isdigit() and int(stated) > 0 else None

    def check(self) -> None:
        """Reach the relay, say hello, and sign in as mail is sent (password or OAuth)."""
        try:
            with self._connect() as client:
                self._sign_in(client)
                client.noop()
        except (smtplib.SMTPException, OSError) as error:
            raise smtp_error(error, self.where) from None
