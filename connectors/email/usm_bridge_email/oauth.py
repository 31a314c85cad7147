"""OAuth2 access tokens for SASL XOAUTH2: fetched, cached, renewed before they expire.

Microsoft 365 and Google Workspace refuse passwords over IMAP and SMTP; they take an OAuth2
access token in the SASL ``XOAUTH2`` mechanism instead (the base64 of
``user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01``). :class:`TokenSource` gets those tokens from
the provider's token endpoint (RFC 6749 section 4.4, client credentials, or section 6, a refresh
token), keeps one until ``refresh_margin`` before it expires, and forgets it when a mail server
refuses it, so that the caller signs in once more with a fresh one (:func:`sign_in_with_token`).

A refresh token the endpoint rotates (a new ``refresh_token`` in its answer) replaces the
configured one for the rest of the process: the old one may already be dead. It is not written
back to the config (the config is the admin's; a restart uses the configured one again, which
providers that rotate keep valid for a while).

What goes wrong at the endpoint becomes a connector error naming the endpoint and the OAuth
``error`` code (RFC 6749 section 5.2): ``invalid_client`` and other refusals are permanent (a
person must fix the registration or the secret), 5xx, timeouts and unreachable endpoints
temporary. The HTTP goes through the core's :class:`~usm_bridge.http.HttpClient` (timeouts,
bounded retries, redaction); the client secret, the refresh token and every access token are
in its list of values to mask, and no ``repr`` here shows them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError
from usm_bridge.http import HttpClient, RetryPolicy, Timeouts, redact_text

from .settings import OAuthSettings

__all__ = ["TokenSource", "sign_in_with_token", "xoauth2_response"]

logger = logging.getLogger(__name__)

#: Lifetime assumed when the endpoint says none (``expires_in`` is only RECOMMENDED).
_DEFAULT_LIFETIME: Final = 3600.0
#: Token requests per fetch: the endpoint's own 5xx and timeouts are retried this often.
_ATTEMPTS: Final = 3


def xoauth2_response(user: str, token: str) -> bytes:
    """The XOAUTH2 initial client response, before base64 (which IMAP and SMTP add)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


class TokenSource:
    """Access tokens from one token endpoint for one client (see the module docstring).

    :param now: the wall clock expiry is measured against (injectable for tests).
    :param sleep: how to wait between attempts at the endpoint.
    """

    def __init__(
        self,
        settings: OAuthSettings,
        *,
        now: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self._settings = settings
        self._now = now
        self._lock = threading.Lock()
        parts = urlsplit(settings.token_url)
        #: The endpoint as messages name it: no query (nothing secret ever travels there, but
        #: a copied URL might carry one).
        self.where = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
        self._refresh = settings.refresh_token.get_secret_value() if settings.refresh_token else ""
        #: Every value to mask in a message: the secrets, then each token as it comes.
        self._secrets = [s for s in (self._secret, self._refresh) if s]
        self._http = HttpClient(
            timeouts=Timeouts(connect=settings.timeout, read=settings.timeout),
            retry=RetryPolicy(
                max_attempts=_ATTEMPTS, budget=3 * settings.timeout, backoff_initial=1.0
            ),
            secrets=self._secrets,
            sleep=sleep,
        )
        self._token: str | None = None
        #: When the cached token is renewed: ``refresh_margin`` before it expires, but never
        #: before half its life (a provider handing out short-lived tokens is not asked for a
        #: new one at every sign-in).
        self._renew_at: datetime | None = None

    def __repr__(self) -> str:
        return f"TokenSource(endpoint={self.where!r}, flow={self._settings.flow!r}, tokens=***)"

    def close(self) -> None:
        """Close the connection to the endpoint (the cached token is kept; a later
        :meth:`token` opens a new connection when it needs one)."""
        self._http.close()

    def token(self) -> str:
        """The cached access token, or a new one when none is cached or it expires soon."""
        with self._lock:
            if self._token and self._renew_at and self._now() < self._renew_at:
                return self._token
            return self._fetch()

    def refused(self, token: str) -> None:
        """A mail server refused ``token``: forget it (unless another is cached by now)."""
        with self._lock:
            if self._token == token:
                self._token = self._renew_at = None

    def _form(self) -> dict[str, str]:
        s = self._settings
        form = {"grant_type": s.flow, "client_id": s.client_id}
        if self._secret:
            form["client_secret"] = self._secret
        if s.flow == "refresh_token":
            form["refresh_token"] = self._refresh
        if s.scopes:
            form["scope"] = " ".join(s.scopes)
        return form

    def _fetch(self) -> str:
        asked = self._now()
        try:
            # A token request does no work the endpoint could do twice: safe to repeat.
            response = self._http.post(self._settings.token_url, data=self._form(), idempotent=True)
        except PermanentRemoteError as error:
            raise self._refusal(error) from None
        except RemoteError as error:
            # What failed, without the URL (named already) or the remote's words (kept apart).
            reason = str(error).split(";")[0]
            raise RetriableRemoteError(
                f"OAuth token endpoint {self.where} failed for now ({reason})",
                status=error.status,
                remote_message=self._mask(error.remote_message),
            ) from None
        answer = self._answer(response.text)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise PermanentRemoteError(
                f"OAuth token endpoint {self.where} answered without an access_token",
                remote_message=self._mask(_oauth_error(answer)),
            )
        kind = answer.get("token_type")
        if isinstance(kind, str) and kind.lower() != "bearer":
            raise PermanentRemoteError(
                f"OAuth token endpoint {self.where} answered a {kind[:40]!r} token; "
                "XOAUTH2 needs a Bearer token"
            )
        self._secrets.append(token)
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated.strip() and rotated != self._refresh:
            self._refresh = rotated  # the old one may be dead already: keep the new one
            self._secrets.append(rotated)
            logger.info("OAuth token endpoint %s rotated the refresh token", self.where)
        lifetime = _lifetime(answer.get("expires_in"))
        self._token = token
        self._renew_at = asked + timedelta(
            seconds=max(lifetime - self._settings.refresh_margin, lifetime / 2)
        )
        logger.info(
            "OAuth token from %s (flow %s), valid for %d s, renewed from %s",
            self.where,
            self._settings.flow,
            lifetime,
            self._renew_at.isoformat(timespec="seconds"),
        )
        return token

    def _refusal(self, error: PermanentRemoteError) -> PermanentRemoteError:
        """The endpoint's 4xx as a sentence naming the endpoint and the OAuth error code."""
        said = error.remote_message or ""
        code = f": OAuth error {said}" if _ERROR_CODE.fullmatch(said) else ""
        hint = _HINTS.get(said, "")
        return PermanentRemoteError(
            f"OAuth token endpoint {self.where} refused the token request{code}{hint}",
            status=error.status,
            remote_message=None if code else self._mask(said),
        )

    def _answer(self, text: str) -> dict[str, Any]:
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PermanentRemoteError(
                f"OAuth token endpoint {self.where} answered something that is not a JSON "
                "object (a proxy's page? check token_url)",
                remote_message=self._mask(" ".join(text.split())[:200]),
            )
        return answer

    def _mask(self, text: str | None) -> str | None:
        """``text`` with every secret and token this source knows masked (longest first, so
        that a token is masked whole before a shorter secret inside it)."""
        if not text:
            return None
        return redact_text(text, sorted(self._secrets, key=len, reverse=True))[:500]


#: An RFC 6749 error code (``invalid_client``, ``invalid_grant``, ``unauthorized_client`` ...).
_ERROR_CODE: Final = re.compile(r"[a-z_]{3,60}")
#: What an admin does about the usual refusals.
_HINTS: Final = {
    "invalid_client": " (check client_id and client_secret, and that the secret has not expired)",
    "invalid_grant": " (the refresh token is revoked or expired: obtain a new one)",
    "unauthorized_client": " (the app registration does not allow this flow)",
    "invalid_scope": " (check scopes)",
}


def _oauth_error(answer: dict[str, Any]) -> str | None:
    """The OAuth error code and description of an answer (RFC 6749 section 5.2), if any."""
    found = [str(answer[key]) for key in ("error", "error_description") if answer.get(key)]
    return ": ".join(found) or None


def _lifetime(value: object) -> float:
    """Seconds a token lives by ``expires_in`` (a number or a numeric string)."""
    try:
        seconds = float(value) if isinstance(value, int | float | str) else _DEFAULT_LIFETIME
    except ValueError:
        seconds = _DEFAULT_LIFETIME
    return seconds if 0 < seconds < 10 * 365 * 86_400 else _DEFAULT_LIFETIME


def sign_in_with_token(
    source: TokenSource,
    sign_in: Callable[[str], None],
    refusal: type[BaseException] | tuple[type[BaseException], ...],
) -> None:
    """``sign_in(token)``; when the server refuses the token (``refusal`` raised), once more
    with a fresh one: a token can be revoked or expire early, and only the server knows.
    A second refusal goes to the caller (the credentials themselves are wrong)."""
    token = source.token()
    try:
        sign_in(token)
        return
    except refusal:
        logger.info("the mail server refused the OAuth token; fetching a new one")
        source.refused(token)
    sign_in(source.token())
