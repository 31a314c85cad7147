"""Mail's mapping transforms: RFC 2822 dates and address headers, as a plugin.

They travel with the e-mail connector (registered by :mod:`usm_bridge_email.plugin`), so the
core keeps only tool-neutral transforms.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from usm_bridge.mapping.transforms import as_text, parse_datetime

__all__ = [
    "TRANSFORMS",
    "email_address",
    "email_domain",
    "email_name",
    "format_rfc2822_datetime",
    "rfc2822_datetime",
]


def rfc2822_datetime(value: Any) -> datetime:
    """A mail ``Date`` header (``Tue, 01 Mar 2016 10:00:00 +0100``); ``-0000`` is read as UTC."""
    text = as_text(value, "a mail date").strip()
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{text[:60]!r} is not an RFC 2822 date") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_rfc2822_datetime(value: Any) -> str:
    when = value if isinstance(value, datetime) else parse_datetime(value)
    return email.utils.format_datetime(when.astimezone(UTC))


# -- e-mail -------------------------------------------------------------------------------------


def _address(value: Any) -> tuple[str, str]:
    text = as_text(value, "an address").strip()
    if len(text) > 2_000:
        raise ValueError("address header longer than 2000 characters")
    name, addr = email.utils.parseaddr(text)
    if not addr or "@" not in addr or addr.count("@") != 1:
        raise ValueError(f"{text[:80]!r} is not an e-mail address")
    local, domain = addr.rsplit("@", 1)
    if not local or not domain or " " in addr:
        raise ValueError(f"{text[:80]!r} is not an e-mail address")
    return name, addr


def email_address(value: Any) -> str:
    """The address of ``"Ann Smith <Ann@Example.org>"``, domain lower-cased.

    The local part keeps its case (RFC 5321 lets servers treat it as case-sensitive).
    """
    _, addr = _address(value)
    local, domain = addr.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def email_name(value: Any) -> str | None:
    """The display name of an address header (``None`` when it has none)."""
    name, _ = _address(value)
    return name.strip() or None


def email_domain(value: Any) -> str:
    """The domain of an address, lower-cased (units allow calls from listed domains)."""
    return email_address(value).rsplit("@", 1)[1]


#: This distribution's transforms by the name mapping files use.
TRANSFORMS: dict[str, Callable[..., Any]] = {
    "rfc2822_datetime": rfc2822_datetime,
    "format_rfc2822_datetime": format_rfc2822_datetime,
    "email_address": email_address,
    "email_name": email_name,
    "email_domain": email_domain,
}
