"""Flag changes through CONDSTORE (RFC 7162), for a server that offers it (Dovecot does).

With CONDSTORE every change to a message (a flag set or cleared, a message added or removed)
raises the folder's mod-sequence, and SELECT answers the highest one (``OK [HIGHESTMODSEQ n]``).
The IMAP store keeps, for each folder, which UIDs carry the pending mark as of one
mod-sequence (:class:`MarkedSince`). A SELECT answering the same HIGHESTMODSEQ means nothing
changed: the marks are known without a command. A higher one means something changed, and
``UID FETCH 1:* (FLAGS) (CHANGEDSINCE n)`` answers the flags of just the messages that changed.

Without CONDSTORE (pymap) the store searches for the mark each time instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MarkedSince", "flag_changes", "highest_modseq", "offers_condstore"]

_CAPABILITY: Final = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_CHANGE: Final = re.compile(rb"UID (\d+)|MODSEQ \((\d+)\)|FLAGS \(([^)]*)\)", re.IGNORECASE)


def offers_condstore(
    login_reply: list[Any], announced: list[Any], before_login: tuple[str, ...]
) -> bool:
    """Whether the server offers CONDSTORE (QRESYNC implies it, RFC 7162 section 3.2.3).

    A server may widen its capabilities once the user is logged in, and say so in its LOGIN
    reply (``OK [CAPABILITY ...] Logged in``): imaplib leaves that code in the reply text
    (pymap) or files it as an untagged CAPABILITY response (Dovecot's), ``announced`` here.
    Either is read first, saving a CAPABILITY command; without one, the capabilities from
    before the login stand.
    """
    words: set[str] = {c.upper() for c in before_login}
    lists = [line for line in announced if isinstance(line, bytes)]
    for line in login_reply:
        match = _CAPABILITY.search(line) if isinstance(line, bytes) else None
        if match:
            lists.append(match.group(1))
    if lists:
        words = {w.decode(errors="replace").upper() for w in lists[-1].split()}
    return bool(words & {"CONDSTORE", "QRESYNC"})


def highest_modseq(answer: list[Any]) -> int | None:
    """The HIGHESTMODSEQ a SELECT answered (imaplib's ``response("HIGHESTMODSEQ")`` data),
    or None: no CONDSTORE, or a folder that keeps no mod-sequences (``NOMODSEQ``)."""
    if answer and isinstance(answer[0], bytes) and answer[0].strip().isdigit():
        return int(answer[0])
    return None


def flag_changes(fetched: list[Any]) -> dict[int, tuple[int, frozenset[str]]]:
    """From the answer to ``UID FETCH ... (FLAGS) (CHANGEDSINCE n)``: each changed message's
    UID with its mod-sequence and its flags now (lower case), the latest answer winning."""
    found: dict[int, tuple[int, frozenset[str]]] = {}
    for item in fetched:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        uid = modseq = 0
        flags: frozenset[str] | None = None
        for match in _CHANGE.finditer(line):
            if match.group(1):
                uid = int(match.group(1))
            elif match.group(2):
                modseq = int(match.group(2))
            elif match.group(3) is not None:
                flags = frozenset(match.group(3).decode(errors="replace").lower().split())
        if uid and flags is not None:
            found[uid] = (modseq, flags)
    return found


@dataclass
class MarkedSince:
    """The UIDs of a folder that carry the pending mark, as of mod-sequence ``modseq``.

    A message another client expunged may stay listed (CHANGEDSINCE reports no expunge without
    QRESYNC's VANISHED): the connector only asks about the UIDs it has indexed, and a message
    gone from the folder is gone from its index at the next census.
    """

    modseq: int
    uids: set[int] = field(default_factory=set)

    def apply(self, changes: dict[int, tuple[int, frozenset[str]]], mark: str) -> None:
        """Take the changes a CHANGEDSINCE fetch answered into account."""
        wanted = mark.lower()
        for uid, (modseq, flags) in changes.items():
            if wanted in flags:
                self.uids.add(uid)
            else:
                self.uids.discard(uid)
            self.modseq = max(self.modseq, modseq)
