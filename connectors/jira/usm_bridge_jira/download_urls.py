"""Where the Jira connector may fetch a file's bytes from: the URLs in Jira's answers are
untrusted input, and a request to them may carry the Jira credentials.

- **Data Center** lists a ``content`` URL in the attachment's metadata, fetched with the
  credentials (the bearer token). It must be on the configured site: the same scheme, host and
  port as ``base_url`` (a relative URL is joined to it). Anything else is refused before a
  request is made: a foreign host, plain ``http`` for an ``https`` site, another port.
- **Cloud** answers the content endpoint with a redirect (303) to its media service, another
  host, fetched *without* credentials: the URL is signed by its token. Its ``Location`` is joined
  to the request's URL (a relative one stays on the site), and it must be ``https``: the token
  lets whoever holds it read the file, so it never crosses a network in clear. The one
  exception is a site whose ``base_url`` is itself plain ``http`` on a loopback address (the
  simulator, a Jira run on the same machine for a test): then a ``Location`` on a loopback
  address may be ``http`` too. Nothing that would leave the machine goes over ``http``. A
  further redirect of the media service is checked by the same rule, at most
  :data:`MAX_MEDIA_HOPS` of them.

A refused URL is an :class:`~usm_bridge.errors.UntrustedURLError` (a permanent remote error
that refuses no file: the read of its record ends, to be read again next cycle) naming its
host, never the whole URL (a signed one holds its token).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urljoin, urlsplit

from usm_bridge.errors import UntrustedURLError
from usm_bridge.sync.metrics import is_loopback

__all__ = ["MAX_MEDIA_HOPS", "media_url", "site_url"]

#: Redirects of the media service followed after Jira's own: more is a loop.
MAX_MEDIA_HOPS: Final = 5
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def site_url(base_url: str, url: str, attachment_id: str) -> str:
    """``url`` (a ``content`` URL Jira gave) joined to ``base_url``, when it is on that site.

    :raises UntrustedURLError: another scheme, host or port than ``base_url``'s.
    """
    base = _base(base_url)
    full = urljoin(base, url)
    parts = _split(full, attachment_id)
    if _origin(parts) != _origin(urlsplit(base)):
        raise UntrustedURLError(
            f"Jira gave attachment {attachment_id} a content URL on {_where(parts)}, not on the "
            f"configured site {_where(urlsplit(base))}: not fetched with the Jira credentials "
            "(if Jira's own base URL differs from the configured base_url, set base_url to it)"
        )
    return full


def media_url(base_url: str, request_url: str, location: str, attachment_id: str) -> str:
    """A redirect's ``location`` joined to ``request_url``, when it may be fetched (see the
    module docstring: ``https``, or ``http`` on loopback for a site on loopback over ``http``).

    :raises UntrustedURLError: it may not.
    """
    full = urljoin(request_url, location)
    parts = _split(full, attachment_id)
    if parts.scheme == "https":
        return full
    site = urlsplit(_base(base_url))
    if parts.scheme == "http" and site.scheme == "http" and _loopback(site) and _loopback(parts):
        return full
    raise UntrustedURLError(
        f"Jira sent the content of attachment {attachment_id} to {parts.scheme or 'no'}:// on "
        f"{_where(parts)}: only https is followed (plain http only between loopback addresses, "
        "for a site on one)"
    )


def _base(base_url: str) -> str:
    return base_url.rstrip("/") + "/"


def _split(url: str, attachment_id: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        raise UntrustedURLError(
            f"Jira gave attachment {attachment_id} a malformed content URL"
        ) from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UntrustedURLError(
            f"Jira gave attachment {attachment_id} a content URL that is not http(s) on a host "
            f"({parts.scheme or 'no scheme'} on {_where(parts)})"
        )
    return parts


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS[parts.scheme]


def _where(parts: SplitResult) -> str:
    """The host (and port) alone: never the user info, path or query (a token's place)."""
    host = (parts.hostname or "?").lower()
    return f"{host}:{parts.port}" if parts.port else host


def _loopback(parts: SplitResult) -> bool:
    return is_loopback((parts.hostname or "").lower())
