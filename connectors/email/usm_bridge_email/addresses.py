"""Addresses read from a header's raw text, so an encoded word can never pose as one.

RFC 2047 allows encoded words in a display name (a *phrase*) and nowhere in an address. A
parser that decodes the header first and finds addresses afterwards can be told anything:
``From: =?utf-8?b?w6kgPGhpbGRhQGV4YW1wbGUuY29tPg==?= <evil@evil.example>`` decodes to
``é <hilda@example.com> <evil@evil.example>``, and the stdlib's modern header parser even
decodes an encoded word standing where an address belongs (``=?utf-8?q?hilda=40ex...?=``).
Here the raw header is split into mailboxes with :func:`email.utils.getaddresses` (which never
decodes anything), each address must be a plain ``local@domain`` written out in the header
as a whole (``hilda@example.com"@evil.example`` is no ``hilda@example.com``: parsers differ on
such text, and the receiving server may have judged another domain than the one read here),
and only the display names are decoded afterwards (by the caller), for people to read.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Mailbox", "group_syntax", "read_mailboxes"]

#: A plain addr-spec: no space, quote, bracket, second ``@`` or encoded word (``=?...?=``).
_ADDR_SPEC: Final = re.compile(r"(?!.*=\?)[^\s@<>()\[\]\",;:\\]+@[^\s@<>()\[\]\",;:\\=?]+")
#: ``Undisclosed-Recipients:;`` or ``IETF-Announce:;``: a group with no member named.
_EMPTY_GROUP: Final = re.compile(r"(?:^|,)\s*(?:\"[^\"]*\"|[^,:;<>\"@]+):\s*;")
_FOLD: Final = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True)
class Mailbox:
    """One mailbox of an address header: its display name and its address."""

    #: As written: encoded words (RFC 2047) are still encoded; decode them to show the name.
    name: str
    address: str


def read_mailboxes(raw_values: list[str]) -> list[Mailbox]:
    """The mailboxes of one address header (every occurrence), read from its raw text.

    A piece that is no plain address (a lone word, an encoded word, a group's name) is left
    out rather than guessed at; callers note a header that yields nothing.
    """
    unfolded = [_FOLD.sub("", value) for value in raw_values]
    text = "\n".join(unfolded)
    try:
        pairs = email.utils.getaddresses(unfolded)
    except Exception:
        return []
    found: list[Mailbox] = []
    for name, address in pairs:
        address = address.strip()
        if not _ADDR_SPEC.fullmatch(address) or not _written_out(address, text):
            continue
        found.append(Mailbox(name, address))
    return found


def _written_out(address: str, text: str) -> bool:
    """Whether ``address`` stands in ``text`` on its own: in angle brackets, or bounded by
    white space, commas, a group's colon or semicolon, or a comment."""
    bounded = rf"(?:^|[\s,<:;]){re.escape(address)}(?=$|[\s,>;(])"
    return re.search(bounded, text, flags=re.MULTILINE) is not None


def group_syntax(raw_values: list[str]) -> str | None:
    """The empty group of a recipient header (``Undisclosed-Recipients:;``), or None."""
    for value in raw_values:
        match = _EMPTY_GROUP.search(_FOLD.sub("", value))
        if match is not None:
            return " ".join(match.group(0).lstrip(",").split())
    return None
