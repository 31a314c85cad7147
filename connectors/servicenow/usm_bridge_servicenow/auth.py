"""OAuth for ServiceNow: the password grant, refreshed before the access token expires.

ServiceNow's ``POST /oauth_token.do`` (form-encoded) answers ``access_token``,
``refresh_token`` and ``expires_in`` (seconds). The token is renewed a margin *before* it
expires, with the refresh grant, so that a long backfill never sends a request with a token
that dies on the way; when the refresh token is refused too, the password grant starts over.
Secrets (password, client secret, tokens) are held here only and never appear in a message:
the token client redacts them like every other :class:`~usm_bridge.http.HttpClient`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase
from usm_bridge.errors import PermanentRemoteError, RemoteError
from usm_bridge.http import HttpClient

__all__ = ["OAuthPasswordAuth"]

TOKEN_PATH = "oauth_token.do"  # noqa: S105 - a path, not a secret


class OAuthPasswordAuth(AuthBase):
    """``Authorization: Bearer <access token>``, obtained and refreshed on demand.

    :param token_client: an :class:`HttpClient` on the instance's base URL (with retries),
        used for the token endpoint only.
    :param margin: seconds before expiry at which the token is renewed.
    :param clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        token_client: HttpClient,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = token_client
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        #: How many token requests were made (grants and refreshes): for tests and benchmarks.
        self.token_requests = 0

    def __repr__(self) -> str:
        return "OAuthPasswordAuth(client_id=..., tokens=***)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def invalidate(self) -> None:
        """Forget the access token (the instance answered 401): the next request gets a new one."""
        with self._lock:
            self._access = None
            self._expires_at = 0.0

    def token(self) -> str:
        """A valid access token, renewed when it expires within the margin."""
        with self._lock:
            if self._access is not None and self._clock() < self._expires_at - self._margin:
                return self._access
            if self._refresh is not None:
                try:
                    return self._grant(
                        {"grant_type": "refresh_token", "refresh_token": self._refresh}
                    )
                except PermanentRemoteError:
                    self._refresh = None  # revoked or expired: start over with the password
            return self._grant(
                {"grant_type": "password", "username": self._username, "password": self._password}
            )

    def _grant(self, form: dict[str, str]) -> str:
        self.token_requests += 1
        body = {**form, "client_id": self._client_id, "client_secret": self._client_secret}
        started = self._clock()
        response = self._client.post(TOKEN_PATH, data=body, idempotent=True)
        try:
            answer: dict[str, Any] = response.json()
            access = str(answer["access_token"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError("the OAuth token endpoint answered without an access_token") from None
        self._access = access
        self._refresh = str(answer.get("refresh_token") or self._refresh or "") or None
        try:
            lifetime = float(answer.get("expires_in", 1800))
        except (TypeError, ValueError):
            lifetime = 1800.0
        self._expires_at = started + lifetime
        return access
