"""Mail the bridge never answers beyond RFC 3834: robots known by their address or headers.

RFC 3834 (honoured in :mod:`.parsing`) covers mail that says it is automatic. Much that is
automatic says nothing of the kind: a Mailman digest comes from ``list-request@``, a shop's
notice from ``noreply@``, an announcement is sent to ``Undisclosed-Recipients:;``. Answering
those reaches a machine (a list's command robot, a mailbox nobody reads) or, worse, every
subscriber of a list. Such mail still becomes a call; only no mail of the bridge goes back.
"""

from __future__ import annotations

import re
from typing import Final

from .addresses import group_syntax

__all__ = ["robot_address", "robot_mail"]

_NO_REPLY: Final = "a no-reply address"
#: Local parts (lower case, without a ``+tag``) of mailboxes run by software, and why.
_ROBOT_LOCAL: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(mailer-daemon|postmaster)"), "a mailer daemon"),
    (re.compile(r".+-request"), "a mailing list's command address (-request)"),
    (re.compile(r"owner-.+|.+-owner"), "a mailing list's owner address"),
    (re.compile(r"(no[-_.]?reply|do[-_.]?not[-_.]?reply)([-_.].*)?"), _NO_REPLY),
)


def robot_address(address: str) -> str | None:
    """What kind of robot ``address`` belongs to, or None for (possibly) a person."""
    local = address.rsplit("@", 1)[0].lower().split("+", 1)[0]
    for pattern, kind in _ROBOT_LOCAL:
        if pattern.fullmatch(local):
            return kind
    return None


def robot_mail(
    headers: dict[str, list[str]], senders: list[str], reply_to: list[str]
) -> str | None:
    """Why mail with these raw ``headers`` (lower-case names) from ``senders`` (its From)
    must not be answered, or None.

    Mail from a list's or a mail system's robot is never answered, whatever its Reply-To
    (a digest's Reply-To is the whole list). A no-reply From is judged by where an answer
    would go: a web form's ``noreply@`` with the customer's Reply-To is the customer's mail.
    """
    for address in senders:
        kind = robot_address(address)
        if kind is not None and kind != _NO_REPLY:
            return f"sent from {kind} ({address})"
    for address in reply_to or senders[:1]:
        kind = robot_address(address)
        if kind is not None:
            return f"an answer would go to {kind} ({address})"
    mailman = sorted(name for name in headers if name.startswith("x-mailman-"))
    if mailman:
        return f"mailing list ({mailman[0]})"
    group = group_syntax(headers.get("to", []) + headers.get("cc", []))
    if group is not None:
        return f"sent to a group of undisclosed recipients ({group})"
    return None
