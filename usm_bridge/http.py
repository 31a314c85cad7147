"""How every HTTP connector talks to its remote tool: timeouts, bounded retries, clear errors.

Jira, ServiceNow and any later HTTP connector build one :class:`HttpClient` and send every
request through it, so that the rules below hold everywhere and are tested once:

- **Always a timeout** (connect and read): ``requests`` waits forever without one, and a hung
  remote must not hang a whole sync cycle. A retry's timeouts are cut to what is left of the
  retry budget (at least a second), so a remote that accepts connections and never answers
  holds one request for at most the longer of one read timeout and the budget, never the
  budget plus a whole read timeout.
- **Temporary failures are retried** through tenacity: 429, 503 and the other 5xx, connection
  errors and resets, timeouts. Waits are exponential with jitter (so many workers hit by the same
  outage do not come back in step), bounded by a number of attempts and an overall time budget.
- **The remote's own timing wins**: ``Retry-After`` (seconds or an HTTP date) and
  ``X-RateLimit-Reset`` (an ISO time for Jira, Unix seconds for ServiceNow) say when the remote
  accepts again; asking sooner only burns quota. When that moment lies beyond the budget the
  client does not sit there: it raises at once, and the error's ``retry_after`` lets the engine
  come back later.
- **A request that may have done its work is not repeated blindly.** GET, HEAD, OPTIONS, PUT and
  DELETE are idempotent by HTTP's definition and are retried on any temporary failure. POST and
  PATCH are retried only when the caller passes ``idempotent=True`` (it knows the call is safe to
  repeat) or when the request provably did no work (the connection could not be opened, or a
  429 refused it before it ran). A POST
  that timed out while reading, or answered 5xx, may already have created the record; sending it
  again could create a second one. Such a failure surfaces as :class:`RetriableRemoteError` and
  the engine retries the *operation*, whose create is idempotent by correlation
  (``find_by_correlation`` first), which is the only place where that can be decided safely.
- **Files move in chunks.** ``stream=True`` hands back the response unread (the caller iterates
  ``iter_content`` and closes it); a body given as an iterable of chunks is sent as it is read,
  and one that can be read only once (an :class:`~collections.abc.Iterator`, a generator) is
  never sent twice: after one attempt, whatever failed, the error goes to the caller, because a
  second attempt would send what is left of it, nothing, as the whole.
- **4xx other than 429 are permanent**: :class:`PermanentRemoteError` at once, carrying the
  remote's own message (Jira ``errorMessages``/``errors``, ServiceNow ``error.message``/``detail``,
  or the start of the body), because that message is what lets a person fix the cause.
- **Secrets never leave**: URLs are logged and reported with passwords and tokens masked
  (user info, and query parameters such as ``password``, ``token``, ``client_secret``,
  ``access_token``, and the signatures and credentials of signed storage URLs a download may
  be redirected to: ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
  ``X-Goog-Signature``, ``X-Goog-Credential``, Azure's ``sig``); the client's own credentials
  are scrubbed from any text it reports; errors are raised ``from None`` so that a traceback
  never shows the underlying ``requests`` exception, whose message holds the raw URL.

Tests inject the ``requests.Session`` (a transport seam, like httpx's ``MockTransport``), the
``sleep`` function and the clocks, so that retry behaviour is checked without real waiting.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters
import tenacity
from requests.auth import AuthBase, HTTPBasicAuth
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError

from . import __version__
from .errors import PermanentRemoteError, RetriableRemoteError

__all__ = [
    "IDEMPOTENT_METHODS",
    "BearerAuth",
    "Body",
    "HttpClient",
    "RequestOptions",
    "RetryPolicy",
    "Timeouts",
    "redact_headers",
    "redact_text",
    "redact_url",
    "remote_message",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)

#: Methods that HTTP defines as idempotent: repeating them cannot do the work twice.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

MASK: Final = "***"
# Query parameters whose value is a credential, by whole name or by ending. Signed storage URLs,
# which a file download may be redirected to (Jira Cloud's media, a Data Center behind object
# storage), carry theirs in the query: S3's ``X-Amz-Signature``, ``X-Amz-Credential`` and
# ``X-Amz-Security-Token``, Google Cloud Storage's ``X-Goog-Signature`` and
# ``X-Goog-Credential`` (v2: ``Signature``), Azure's SAS ``sig``, CloudFront's ``Signature``.
_SENSITIVE_NAMES: Final = frozenset(
    {"password", "passwd", "pwd", "token", "secret", "api_key", "apikey", "signature", "auth",
     "sig", "credential", "credentials"}
)  # fmt: skip
_SENSITIVE_SUFFIXES: Final = (
    "password", "passwd", "token", "secret", "signature", "credential", "credentials",
)  # fmt: skip
_SENSITIVE_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_MESSAGE_LIMIT: Final = 500
#: Connection pools a forked child let go of (:meth:`HttpClient.forget_connections`): kept
#: referenced so that they are never collected, and their sockets never closed, in the child.
_INHERITED: list[object] = []


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------


def _is_sensitive(name: str) -> bool:
    lowered = unquote_plus(name).strip().lower()
    return lowered in _SENSITIVE_NAMES or lowered.endswith(_SENSITIVE_SUFFIXES)


_QUERY_PAIR = re.compile(r"(?P<name>[^=&;\s]+)=(?P<value>[^&;\s]*)")


def _mask_query(query: str) -> str:
    # A regex rather than parse/urlencode: the rest of the query keeps its exact encoding, so a
    # logged ServiceNow encoded query reads the same as the one the connector built.
    def mask(match: re.Match[str]) -> str:
        if _is_sensitive(match["name"]):
            return f"{match['name']}={MASK}"
        return match[0]

    return _QUERY_PAIR.sub(mask, query)


def redact_url(url: str) -> str:
    """The URL with any password in its user info and any secret-looking query value masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, _mask_query(parts.query), parts.fragment))


# The look-behinds make a match start only where a name starts: without them, a long run of
# name characters (a ServiceNow encoded query) is rescanned from every position, O(n^2).
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@"
)
_SECRET_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.%-])"
    r"(?P<name>[A-Za-z0-9_.%-]*(?:password|passwd|pwd|token|secret|api_?key|signature"
    r"|credentials?)|sig)"
    r"(?P<sep>=|['\"]?\s*:\s*['\"]?)(?P<value>[^&;\s'\",}]+)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<name>(?:proxy-)?authorization)(?P<sep>['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<value>(?:[A-Za-z]+ +)?[^\s'\",;}]+)",
    re.IGNORECASE,
)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text (an exception message, a remote's answer) with credentials masked.

    Masks user info in URLs, ``name=value`` and ``"name": "value"`` pairs whose name looks
    secret, ``Authorization`` header values, and every exact value in ``secrets`` (the
    client's own credentials, which may turn up anywhere, for instance echoed by a remote).
    """
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    return _SECRET_PAIR.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` safe to log: credentials and cookies masked."""
    return {
        name: MASK if name.lower() in _SENSITIVE_HEADERS or _is_sensitive(name) else value
        for name, value in headers.items()
    }


# ---------------------------------------------------------------------------------------------
# Reading a remote's answer
# ---------------------------------------------------------------------------------------------


def _truncate(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_from_json(body: object) -> str | None:
    if isinstance(body, list):
        texts = [item for item in body if isinstance(item, str)]
        return "; ".join(texts) or None
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    # Jira: {"errorMessages": [...], "errors": {"field": "message"}}
    messages = body.get("errorMessages")
    if isinstance(messages, list):
        parts.extend(str(message) for message in messages if message)
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{name}: {message}" for name, message in errors.items())
    elif isinstance(errors, list):
        parts.extend(str(error) for error in errors if error)
    # ServiceNow: {"error": {"message": ..., "detail": ...}, "status": "failure"}
    error = body.get("error")
    if isinstance(error, dict):
        message, detail = error.get("message"), error.get("detail")
        texts = [str(text) for text in (message, detail) if text]
        if len(texts) == 2 and texts[0] == texts[1]:
            texts.pop()
        parts.extend([": ".join(texts)] if texts else [])
    elif isinstance(error, str) and error:
        parts.append(error)
    if not parts:
        for key in ("message", "detail", "error_description", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                parts.append(value)
                break
    return "; ".join(parts) or None


def remote_message(response: requests.Response, limit: int = _MESSAGE_LIMIT) -> str | None:
    """The remote's own explanation of an error response, at most ``limit`` characters.

    Knows Jira's and ServiceNow's error shapes; falls back to the start of the body (a proxy's
    HTML page, a plain-text "Rate limit exceeded", a malformed JSON body), and answers ``None``
    for an empty body.
    """
    text = response.text.strip()
    if not text:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return _truncate(text, limit)
    message = _message_from_json(body)
    return _truncate(message if message else text, limit)


def _seconds_until(moment: datetime, now: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _parse_retry_after(value: str, now: datetime) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return _seconds_until(parsedate_to_datetime(value), now)
    except (TypeError, ValueError, IndexError):
        return None


def _parse_rate_limit_reset(value: str, now: datetime) -> float | None:
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:  # Jira: an ISO 8601 time
            return _seconds_until(datetime.fromisoformat(value), now)
        except ValueError:
            return None
    if number > 1e11:  # epoch milliseconds, as some gateways send
        number /= 1000
    if number < 1e9:  # too small to be an epoch time: a delay in seconds, as others send
        return max(0.0, number)
    return max(0.0, number - now.timestamp())  # ServiceNow: Unix seconds


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """How long the remote asks us to wait, from ``Retry-After`` or ``X-RateLimit-Reset``.

    ``Retry-After`` is either seconds or an HTTP date; ``X-RateLimit-Reset`` is an ISO time
    (Jira) or Unix seconds (ServiceNow). ``None`` when neither header is usable: the caller
    then backs off on its own.
    """
    lookup = CaseInsensitiveDict(headers)
    retry_after = lookup.get("Retry-After")
    if retry_after:
        seconds = _parse_retry_after(retry_after, now)
        if seconds is not None:
            return seconds
    reset = lookup.get("X-RateLimit-Reset")
    if reset:
        return _parse_rate_limit_reset(reset, now)
    return None


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection and, once connected, between bytes of the answer."""

    connect: float = 10.0
    read: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up with :class:`RetriableRemoteError`.

    ``budget`` bounds the whole call, attempts and waits together, so that one slow remote
    cannot stall a sync cycle: the engine retries the operation later instead.
    """

    max_attempts: int = 5
    budget: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget < 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("budget and backoff must not be negative")


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` (Jira Data Center PATs, OAuth access tokens).

    Its ``repr`` hides the token, so a logged auth object gives nothing away.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return f"BearerAuth(token={MASK!r})"


Auth = AuthBase | tuple[str, str] | None
#: A request body: a form, text, bytes, or chunks read as they are sent: an iterator (sent
#: once) or an object whose ``__iter__`` starts over (sent again on a retry), never a list or
#: tuple (``requests`` takes those for a form). Give the chunks a ``__len__`` to send
#: ``Content-Length`` rather than ``Transfer-Encoding: chunked``.
Body = Mapping[str, str] | str | bytes | Iterable[bytes] | None


class RequestOptions(TypedDict, total=False):
    """Per-request options of :meth:`HttpClient.request`."""

    params: Mapping[str, str | int | float] | None
    json: Any
    data: Body
    headers: Mapping[str, str] | None
    idempotent: bool | None
    timeouts: Timeouts | None
    stream: bool
    allow_redirects: bool
    once: bool


#: The shortest timeout a retry is given, however little of the budget is left (seconds).
_MIN_TIMEOUT = 1.0


def _retry_timeouts(timeouts: Timeouts, attempt: int, remaining: float) -> Timeouts:
    """The timeouts of attempt number ``attempt``: the first has the configured ones; a retry's
    are cut to what the retry budget has ``remaining``, so that a retry that starts near its
    end does not wait a whole read timeout beyond it (a tool that accepts and never answers
    would hold a request for the budget plus a read timeout). Never below
    :data:`_MIN_TIMEOUT` (or the configured timeout, if shorter): a retry with no time to be
    answered would be no retry."""
    if attempt <= 1:
        return timeouts
    floor = max(remaining, _MIN_TIMEOUT)
    if timeouts.connect <= floor and timeouts.read <= floor:
        return timeouts
    return Timeouts(connect=min(timeouts.connect, floor), read=min(timeouts.read, floor))


class _TemporaryFailure(Exception):
    """One attempt failed in a way that may pass; internal to the retry loop."""

    def __init__(
        self,
        reason: str,
        *,
        never_sent: bool = False,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.never_sent = never_sent
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _never_sent(error: requests.ConnectionError) -> bool:
    """True when the connection could not even be opened, so the server saw nothing."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


def _collect_secrets(
    auth: Auth, headers: Mapping[str, str], extra: Iterable[str]
) -> tuple[str, ...]:
    found = list(extra)
    if isinstance(auth, tuple):
        found.append(auth[1])
    elif isinstance(auth, HTTPBasicAuth) and isinstance(auth.password, str):
        found.append(auth.password)
    elif isinstance(auth, BearerAuth):
        found.append(auth.token)
    for name, value in headers.items():
        if name.lower() in _SENSITIVE_HEADERS:
            found.extend([value, value.split()[-1]] if value.strip() else [])
    # Longest first, so a token is masked whole before any shorter secret inside it.
    return tuple(sorted({secret for secret in found if len(secret) >= 4}, key=len, reverse=True))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HttpClient:
    """The one way an HTTP connector talks to its remote: see the module docstring for the rules.

    :param base_url: prefix for relative paths given to :meth:`request`.
    :param session: the ``requests.Session`` to send through; the test seam (mount an adapter
        on it). Made and owned by the client when not given; an injected one is left open by
        :meth:`close`, its owner closes it.
    :param auth: sent with every request (a ``(user, password)`` pair, :class:`BearerAuth` ...).
    :param headers: sent with every request (after ``User-Agent`` and ``Accept``).
    :param secrets: further values to mask wherever they appear (an OAuth client secret ...).
    :param sleep: how to wait between attempts; ``clock`` measures the budget (monotonic
        seconds); ``now`` is the wall clock that HTTP dates in ``Retry-After`` are read against;
        ``rng`` draws the jitter. All injectable so tests never really wait.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        session: requests.Session | None = None,
        auth: Auth = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/" if base_url else ""
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._auth = auth
        self._headers = {
            "User-Agent": f"usm-bridge/{__version__}",
            "Accept": "application/json",
            **(headers or {}),
        }
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        url_password = urlsplit(base_url).password if base_url else None
        self._secrets = _collect_secrets(auth, self._headers, [*secrets, url_password or ""])
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def __repr__(self) -> str:
        return f"HttpClient(base_url={redact_url(self.base_url)!r})"

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if the client made it (an injected one belongs to its giver)."""
        if self._owns_session:
            self._session.close()

    def forget_connections(self) -> None:
        """Let go of the session's pooled connections without closing them: for a child
        process forked while they were open (they are the parent's sockets: a close here
        could send a TLS close_notify on the parent's session). Each adapter gets new, empty
        pools; the old ones are kept referenced (:data:`_INHERITED`) so that they are never
        collected and closed in this process either."""
        for adapter in self._session.adapters.values():
            if isinstance(adapter, requests.adapters.HTTPAdapter):
                _INHERITED.append((adapter.poolmanager, adapter.proxy_manager))
                adapter.proxy_manager = {}
                adapter.init_poolmanager(
                    getattr(adapter, "_pool_connections", requests.adapters.DEFAULT_POOLSIZE),
                    getattr(adapter, "_pool_maxsize", requests.adapters.DEFAULT_POOLSIZE),
                    block=getattr(adapter, "_pool_block", requests.adapters.DEFAULT_POOLBLOCK),
                )

    def redact(self, text: str) -> str:
        """``text`` with this client's credentials and anything secret-looking masked."""
        return redact_text(text, self._secrets)

    # -- convenience ---------------------------------------------------------------------------

    def get(self, url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        """``request("GET", ...)``."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        """``request("POST", ...)``: retried after it may have left only with ``idempotent``."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        """``request("PUT", ...)``."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        """``request("PATCH", ...)``: retried after it may have left only with ``idempotent``."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        """``request("DELETE", ...)``."""
        return self.request("DELETE", url, **options)

    # -- the request ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int | float] | None = None,
        json: Any = None,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        timeouts: Timeouts | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
        once: bool = False,
    ) -> requests.Response:
        """Send one request, retrying what may pass; return a response with a status below 400.

        :param url: absolute, or relative to ``base_url``.
        :param idempotent: whether repeating the request is safe after it may have reached the
            remote; defaults to the method's HTTP semantics (see :data:`IDEMPOTENT_METHODS`).
        :param data: with chunks that can be read once (an iterator), one attempt only.
        :param stream: hand back the response with its body unread: the caller reads it
            (``iter_content``) and closes it. An error response is read and closed as always.
        :param allow_redirects: ``False``: a 3xx is handed back as it is, its ``Location`` for
            the caller to follow (e.g. without credentials, to a signed URL).
        :param once: one attempt only, as for chunks readable once: for a body that is read
            once without being an iterator (a streamed multipart encoder).
        :raises RetriableRemoteError: 429, 5xx, timeout or connection failure that outlasted
            the retry policy (or could not be retried safely); ``retry_after`` is set when the
            remote said when to come back.
        :raises PermanentRemoteError: any other 4xx, at once, with the remote's message.
        """
        method = method.upper()
        full_url = urljoin(self.base_url, url) if self.base_url else url
        safe_url = self._safe_url(full_url, params)
        repeatable = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        # Chunks that can be read once are gone after the first attempt, even one refused (a
        # 429) or never answered: sent again, they would be sent as an empty body.
        one_shot = once or isinstance(data, Iterator)
        policy = self.retry
        start = self._clock()
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            return self._send_once(
                method,
                full_url,
                safe_url,
                params=params,
                json=json,
                data=data,
                headers={**self._headers, **(headers or {})},
                timeouts=_retry_timeouts(
                    timeouts or self.timeouts,
                    attempts,
                    policy.budget - (self._clock() - start),
                ),
                stream=stream,
                allow_redirects=allow_redirects,
            )

        def should_retry(error: BaseException) -> bool:
            return (
                isinstance(error, _TemporaryFailure)
                and (repeatable or error.never_sent)
                and not one_shot
            )

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= policy.max_attempts:
                return True
            remaining = policy.budget - (self._clock() - start)
            asked = self._failure(state).retry_after or 0.0
            # A remote that asks for a longer wait than the budget leaves is not waited for.
            return remaining <= 0 or asked > remaining

        def wait(state: tenacity.RetryCallState) -> float:
            asked = self._failure(state).retry_after
            if asked is not None:
                return asked
            ceiling = min(
                policy.backoff_max, policy.backoff_initial * 2.0 ** (state.attempt_number - 1)
            )
            # "Equal jitter": at least half the exponential step, so retries do slow down.
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            return min(delay, max(0.0, policy.budget - (self._clock() - start)))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = self._failure(state)
            pause = state.next_action.sleep if state.next_action else 0.0
            logger.info(
                "%s %s: %s; retrying in %.2fs (attempt %d of %d)",
                method,
                safe_url,
                failure.reason,
                pause,
                state.attempt_number + 1,
                policy.max_attempts,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(should_retry),
            stop=stop,
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _TemporaryFailure as failure:
            if one_shot:
                outcome = "not retried: its body could be read only once"
            elif repeatable or failure.never_sent:
                outcome = f"gave up after {attempts} attempt(s) in {self._clock() - start:.1f}s"
            else:
                outcome = f"not retried: a {method} that may have reached the remote"
                outcome += " is repeated only when the caller marks it idempotent"
            # ``from None``: the requests exception's own message holds the raw URL.
            raise RetriableRemoteError(
                f"{failure.reason}; {outcome}",
                status=failure.status,
                remote_message=failure.message,
                method=method,
                url=safe_url,
                retry_after=failure.retry_after,
            ) from None

    @staticmethod
    def _failure(state: tenacity.RetryCallState) -> _TemporaryFailure:
        error = state.outcome.exception() if state.outcome else None
        assert isinstance(error, _TemporaryFailure)
        return error

    def _safe_url(self, url: str, params: Mapping[str, str | int | float] | None) -> str:
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare_url(url, params)
        except requests.RequestException:
            return self.redact(redact_url(url))
        return self.redact(redact_url(prepared.url or url))

    def _send_once(
        self,
        method: str,
        url: str,
        safe_url: str,
        *,
        params: Mapping[str, str | int | float] | None,
        json: Any,
        data: Body,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        stream: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        began = self._clock()
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=dict(headers),
                auth=self._auth,
                timeout=(timeouts.connect, timeouts.read),
                stream=stream,
                allow_redirects=allow_redirects,
            )
        except requests.Timeout as error:
            kind = "connect" if isinstance(error, requests.ConnectTimeout) else "read"
            logger.debug(
                "%s %s -> %s timeout after %.3fs", method, safe_url, kind, self._since(began)
            )
            raise _TemporaryFailure(
                f"{kind} timeout", never_sent=isinstance(error, requests.ConnectTimeout)
            ) from None
        except requests.ConnectionError as error:
            logger.debug(
                "%s %s -> connection failed after %.3fs", method, safe_url, self._since(began)
            )
            reason = f"connection failed: {type(error).__name__}: {self.redact(str(error))}"
            raise _TemporaryFailure(_truncate(reason), never_sent=_never_sent(error)) from None
        status = response.status_code
        logger.debug("%s %s -> %d in %.3fs", method, safe_url, status, self._since(began))
        if status < 400:
            return response
        message = remote_message(response)
        message = self.redact(message) if message else None
        response.close()
        if status == 429 or status >= 500:
            raise _TemporaryFailure(
                "rate limited" if status == 429 else "server error",
                status=status,
                message=message,
                retry_after=retry_after_seconds(response.headers, self._now()),
                # A rate limiter refuses before the request does any work (RFC 6585), so even a
                # create may be sent again; a 5xx may come after the work was done.
                never_sent=status == 429,
            )
        raise PermanentRemoteError(
            "the remote refused the request",
            status=status,
            remote_message=message,
            method=method,
            url=safe_url,
        )

    def _since(self, began: float) -> float:
        return self._clock() - began
