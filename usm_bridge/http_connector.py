"""A base for connectors that talk to their tool over HTTP.

Every HTTP connector needs the same things around :class:`~usm_bridge.http.HttpClient`, and
writing them again in each one let them drift apart:

- **Settings** for timeouts and the retry policy, under the same names in every config file
  (:class:`HttpConnectorSettings`), checked when the config is loaded rather than at the first
  request.
- **Test seams**: the ``requests.Session`` (the transport seam), the ``sleep`` function and the
  clocks, taken by the constructor and handed to every client the connector makes, so that a
  test exercises retries without really waiting (:meth:`HttpConnector.http_client`).
- **Closing** every client it made when the engine is done with the connector.
- **One correlation lookup per create** (:meth:`HttpConnector._note_lookup`,
  :meth:`HttpConnector._absent_just_now`): the contract makes ``create`` idempotent by
  correlation, so it looks the marker up itself, and the sync engine looks it up just before
  too. The engine's answer is trusted for the create that follows it at once, in the same
  thread; every other create looks for itself.

Where the tool lives stays in each connector's settings, under the tool's own name for it
(Jira's ``base_url``, ServiceNow's ``instance_url``): that is the word its admins look for, and
renaming it would break every config file written so far.

Why trusting the engine's lookup is as safe as looking again: a lookup tells only what the tool
held when it ran. What keeps two writers from making the same record is the outbox's lease (one
claimant per item), not a second lookup a moment after the first: either way the write follows
the lookup it relies on by one round trip, so the window in which another process could slip a
record in is as long as before, only one request earlier (and a search index that lags, as
Jira's does, lags for both lookups alike). What would not be safe is an older answer: one from
an earlier drain, another thread or before another create, after which another process, or an
earlier attempt whose answer was lost, may have made the record. Hence the limits: the answer
is kept per thread, only when it was ``None``, for :data:`ABSENCE_TRUSTED_FOR` seconds, and
used once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import ClassVar, Final, Generic, TypedDict, TypeVar, cast

import requests

from .connector import Connector, ConnectorSettings, RemoteRef
from .durations import Attempts, Duration, Wait
from .http import Auth, HttpClient, RetryPolicy, Timeouts

__all__ = ["ABSENCE_TRUSTED_FOR", "HttpConnector", "HttpConnectorSettings", "HttpSeams"]

#: Seconds during which a lookup that found no record is trusted by the create that follows it.
#: The engine calls ``create`` right after ``find_by_correlation``; anything slower is not that
#: pair, and looks again.
ABSENCE_TRUSTED_FOR: Final = 1.0


class HttpConnectorSettings(ConnectorSettings):
    """Timeouts and retry policy of an HTTP connector; subclass it for a connector's settings.

    The bounds refuse, when the config is loaded, the values that
    :class:`~usm_bridge.http.RetryPolicy` and ``requests`` would refuse at the first request.
    """

    connect_timeout: Duration = 10.0
    """How long to wait for a connection to the tool."""
    read_timeout: Duration = 60.0
    """How long to wait, once connected, between bytes of an answer."""
    max_attempts: Attempts = 5
    """Attempts of one request before a temporary failure (429, 5xx, timeout) is given up."""
    retry_budget: Duration = 120.0
    """How long one request may take, attempts and waits together; the engine retries the
    write in a later cycle."""
    backoff_initial: Wait = 1.0
    """The first wait between attempts, doubled each time up to ``backoff_max`` (with jitter),
    unless the tool says how long to wait (``Retry-After``)."""
    backoff_max: Wait = 30.0
    """The longest wait between attempts."""

    def timeouts(self) -> Timeouts:
        """The connect and read timeouts for :class:`~usm_bridge.http.HttpClient`."""
        return Timeouts(self.connect_timeout, self.read_timeout)

    def retry_policy(self) -> RetryPolicy:
        """The retry policy for :class:`~usm_bridge.http.HttpClient`."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            budget=self.retry_budget,
            backoff_initial=self.backoff_initial,
            backoff_max=self.backoff_max,
        )


SettingsT = TypeVar("SettingsT", bound=HttpConnectorSettings)


class HttpSeams(TypedDict, total=False):
    """The test seams of :class:`HttpConnector`'s constructor, for a subclass's own one to pass
    on typed: ``def __init__(self, name, settings, **seams: Unpack[HttpSeams])``."""

    session: requests.Session | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    now: Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _LastLookup(threading.local):
    """What this thread's last ``find_by_correlation`` found nothing for, and when."""

    absent: tuple[str, float] | None = None


class HttpConnector(Connector, Generic[SettingsT]):
    """Base of a connector that talks HTTP: its settings, its test seams, its clients.

    Subclass it as ``HttpConnector[MySettings]`` and set ``settings_model = MySettings`` (an
    :class:`HttpConnectorSettings` subclass); ``self.config`` is then typed ``MySettings``.
    Make every client with :meth:`http_client`. The keyword arguments of the constructor are
    seams for tests (see :class:`~usm_bridge.http.HttpClient`):

    :param session: the ``requests.Session`` every client sends through (mount an adapter on
        it, or point it at a simulator); each client makes its own when not given.
    :param sleep: how clients wait between attempts.
    :param clock: monotonic seconds (retry budgets, and whatever else the connector times).
    :param now: the wall clock, against which ``Retry-After`` dates are read.
    """

    settings_model: ClassVar[type[ConnectorSettings]] = HttpConnectorSettings

    def __init__(
        self,
        name: str,
        settings: ConnectorSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not isinstance(settings, self.settings_model):
            # Said now, rather than as an AttributeError at the first request.
            raise TypeError(
                f"{type(self).__name__} takes {self.settings_model.__name__}, "
                f"not {type(settings).__name__}"
            )
        super().__init__(name, settings)
        self.config: SettingsT = cast(SettingsT, settings)
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._clients: list[HttpClient] = []
        self._last_lookup = _LastLookup()

    def http_client(
        self,
        base_url: str,
        *,
        auth: Auth = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> HttpClient:
        """A client of ``base_url`` with the settings' timeouts and retry policy and the seams.

        :meth:`close` closes it. ``auth``, ``headers`` and ``secrets`` are passed on to
        :class:`~usm_bridge.http.HttpClient`.
        """
        client = HttpClient(
            base_url,
            session=self._session,
            auth=auth,
            headers=headers,
            timeouts=self.config.timeouts(),
            retry=self.config.retry_policy(),
            secrets=secrets,
            sleep=self._sleep,
            clock=self._clock,
            now=self._now,
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every client :meth:`http_client` made (an injected session stays open)."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def after_fork(self) -> None:
        """In a child forked to read: every client's inherited connections let go of, never
        closed (:meth:`HttpClient.forget_connections`); the child opens its own."""
        for client in self._clients:
            client.forget_connections()

    # -- one correlation lookup per create ----------------------------------------------------

    def _note_lookup(self, correlation: str, found: RemoteRef | None) -> RemoteRef | None:
        """``found``, noted as the answer of ``find_by_correlation(correlation)``.

        Return through this from ``find_by_correlation`` (never from a lookup ``create`` makes
        itself): an answer of ``None`` lets the create that follows at once skip its own lookup.
        """
        self._last_lookup.absent = None if found is not None else (correlation, self._clock())
        return found

    def _absent_just_now(self, correlation: str) -> bool:
        """Whether this thread's ``find_by_correlation`` just found no record for ``correlation``.

        Ask first thing in ``create``: when ``True``, the create may write without looking the
        marker up again. The note is used up either way, so a create repeated after this one
        looks for itself and finds the record this one made.
        """
        noted, self._last_lookup.absent = self._last_lookup.absent, None
        if noted is None or noted[0] != correlation:
            return False
        return 0.0 <= self._clock() - noted[1] <= ABSENCE_TRUSTED_FOR
