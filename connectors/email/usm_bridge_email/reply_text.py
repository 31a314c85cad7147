"""What a person wrote in a reply, without what it carries along.

A reply quotes the mail it answers (``On ... wrote:`` with ``>`` lines, or Outlook's
``From: / Sent: / To: / Subject:`` block over the unmarked history), ends in a signature and
often a company's legal disclaimer, and may quote the bridge's own acknowledgement back. None
of that belongs in the comment another tool receives: :func:`clean_reply` keeps only the new
text. The whole message stays in the call's record (``full_body``), so nothing is lost when
a cut goes wrong.

Where the quoted history starts and where a signature begins is found by the
``mail-parser-reply`` library (its header patterns cover many languages and mail clients); this
module only decides what to do with the pieces:

* Text above the first quote header is new (top-posting). Below a ``wrote:`` header, text that
  follows ``>``-quoted lines is new as well (bottom-posting and inline answers); history that
  is not ``>``-quoted (Outlook's header block, a client that quotes without marks) ends the
  new text for good. A short line ending in a colon and naming a date or an address right
  above a ``>`` quote is its attribution and goes too (forms the library's patterns miss, such
  as Apple Mail's ``Op ... heeft ... het volgende geschreven:``).
* A signature is cut from its ``-- `` line (RFC 3676) or from a sign-off line the library
  knows (``Best regards``, ``Met vriendelijke groet``, ``Mit freundlichen Grüßen``,
  ``Cordialement``, ``Sent from my iPhone``) to the end, but only when that line is a sign-off
  and not a sentence that happens to start like one (``Thanks, that fixed it.`` stays).
* A disclaimer is cut from the first line starting with one of the unit's disclaimer starts to
  the end; one at the very top (an "external sender" banner) takes only its paragraph. The
  library's own disclaimer guess is not used: it removes any sentence starting ``Warning:``
  that mentions mail, which in a service desk is often the very problem reported.
* Runs of lines that repeat a mail of the bridge in this thread (its acknowledgement, a status
  announcement, a comment it mailed) are removed wherever they are, quoted or not, however
  the client re-wrapped them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# The library ships no type information (no py.typed): its few names used here are checked
# by the tests instead.
from mailparser_reply import EmailMessage  # type: ignore[import-untyped]
from mailparser_reply.constants import MAIL_LANGUAGES  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_DISCLAIMER_STARTS",
    "DEFAULT_REPLY_LANGUAGES",
    "REPLY_LANGUAGES",
    "CleanReply",
    "clean_reply",
]

#: The languages whose quote headers and sign-offs are looked for by default (English is
#: always among them: the library adds it).
DEFAULT_REPLY_LANGUAGES: Final = ("en", "nl", "de", "fr")
#: Every language the library knows (a setting may name any of these).
REPLY_LANGUAGES: Final = frozenset(name for name in MAIL_LANGUAGES if len(name) == 2)

#: How common legal disclaimers and footers start, in English, Dutch, German and French. A
#: unit adds its own company's (``disclaimer_starts``): no list knows every company's text.
DEFAULT_DISCLAIMER_STARTS: Final = (
    # English
    "CAUTION: This email originated from outside",
    "CAUTION: This e-mail originated from outside",
    "This email and any attachments",
    "This e-mail and any attachments",
    "This email and any files transmitted",
    "This e-mail and any files transmitted",
    "This message and any attachments",
    "This email is confidential",
    "This e-mail is confidential",
    "This message is confidential",
    "The information contained in this email",
    "The information contained in this e-mail",
    "The information contained in this message",
    "CONFIDENTIALITY NOTICE",
    "Confidentiality notice:",
    "Disclaimer:",
    "Please consider the environment before printing",
    # Dutch
    "Dit bericht is vertrouwelijk",
    "Deze e-mail is vertrouwelijk",
    "Deze e-mail en eventuele bijlagen",
    "Dit e-mailbericht is uitsluitend bestemd",
    "Dit bericht is uitsluitend bestemd",
    "De informatie verzonden in dit e-mailbericht",
    "De informatie in dit e-mailbericht",
    "Denk aan het milieu",
    # German
    "Diese E-Mail enthält vertrauliche",
    "Diese Nachricht enthält vertrauliche",
    "Diese E-Mail kann vertrauliche",
    "Der Inhalt dieser E-Mail ist vertraulich",
    "Diese E-Mail und alle Anhänge",
    "Bitte denken Sie an die Umwelt",
    # French
    "Ce message et toutes les pièces jointes",
    "Ce message et ses pièces jointes",
    "Ce courriel et les pièces jointes",
    "Ce courriel est confidentiel",
    "Ce message est confidentiel",
    "Les informations contenues dans ce message",
    "Pensez à l'environnement avant d'imprimer",
)

#: A repeat of the bridge's text shorter than this is no evidence (``Thanks`` in both).
_MIN_BRIDGE_RUN: Final = 40
#: A sign-off line has a few words and ends without a sentence's punctuation.
_MAX_SIGN_OFF_WORDS: Final = 6
#: How many lines from a line on the signature pattern is matched against.
_SIGNATURE_WINDOW: Final = 4
#: Lines longer than this are hidden from the library (see ``_hide_long_lines``).
_MAX_LINE: Final = 400
#: Around the number of a hidden line (private-use characters: never in a mail's text).
_STAND_IN: Final = ("\ue000", "\ue001")
#: An attribution line wrapped by the client takes at most this many lines.
_MAX_ATTRIBUTION_LINES: Final = 3
#: Separator lines left at the end once the history below them is cut: a rule (``-----``,
#: ``____``) or a titled one in any language (``-----Ursprüngliche Nachricht-----``).
_TRAILING_RULE: Final = re.compile(
    r"(?:\n[ \t]*[-_=*~\u2014]{3,}(?:[^\n]{1,60}?[-_=*~\u2014]{3,})?[ \t]*)+\s*\Z"
)
_QUOTED: Final = re.compile(r"^\s*>")
_SPACE: Final = re.compile(r"\s+")


@dataclass(frozen=True)
class CleanReply:
    """The new text of a reply, and what was taken out of it."""

    text: str
    #: Which kinds of text were removed, in the order found: ``quote``, ``bridge text``,
    #: ``signature``, ``disclaimer``.
    removed: tuple[str, ...] = ()
    #: Why the library could not read the text (the whole text is kept), or ``None``.
    error: str | None = None


def clean_reply(
    text: str,
    *,
    languages: Sequence[str] = DEFAULT_REPLY_LANGUAGES,
    disclaimer_starts: Iterable[str] = DEFAULT_DISCLAIMER_STARTS,
    bridge_texts: Iterable[str] = (),
) -> CleanReply:
    """The text a person added in ``text`` (a reply's plain-text body).

    :param languages: whose quote headers and sign-offs to recognise (see ``REPLY_LANGUAGES``).
    :param disclaimer_starts: how the disclaimers to cut begin (case and spacing ignored).
    :param bridge_texts: the bodies of the bridge's own mails in the thread: repeated in the
        reply, they are removed.
    :returns: the new text (``""`` when the reply only quoted), never raising: should the
        library fail, the whole text comes back with ``error`` set.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    removed: list[str] = []
    try:
        hidden, long_lines = _hide_long_lines(text)
        message = EmailMessage(text=hidden, languages=list(languages), keep_hyphen_lists=True)
        lines = [long_lines.get(line.strip(), line) for line in _new_lines(message, removed)]
        lines = _without_bridge_text(lines, bridge_texts, removed)
        lines = _without_disclaimer(lines, [_norm(s) for s in disclaimer_starts], removed)
        lines = _without_signature(lines, message.SIGNATURE_REGEX, removed)
    except Exception as error:  # a library bug must not lose or stop a reply
        return CleanReply(text.strip(), (), f"{type(error).__name__}: {error}"[:200])
    cleaned = _TRAILING_RULE.sub("", "\n".join(lines)).strip()
    return CleanReply(_restore(cleaned, text), tuple(removed))


def _hide_long_lines(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with every line longer than ``_MAX_LINE`` replaced by a short stand-in (its
    quote marks kept), and the lines by stand-in: the library's header patterns take time
    growing with the square of a line's length, and a line that long is never a header."""
    long_lines: dict[str, str] = {}
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) > _MAX_LINE:
            marks = re.match(r"[\s>]*", line)
            stand_in = f"{_STAND_IN[0]}{len(long_lines)}{_STAND_IN[1]}"
            long_lines[stand_in] = line
            line = (marks.group() if marks else "") + stand_in
        out.append(line)
    return "\n".join(out), long_lines


def _norm(line: str) -> str:
    """A line compared as people read it: without quote marks, case and spacing."""
    return _SPACE.sub(" ", line.lstrip("> \t")).strip().casefold()


def _is_quoted(line: str) -> bool:
    return bool(_QUOTED.match(line))


def _is_wrote_header(header: str) -> bool:
    """An ``On ... wrote:`` line (one line, ending in a colon), not Outlook's header block
    (several ``Name: value`` lines) nor an ``Original Message`` separator."""
    lines = [line for line in header.splitlines() if line.strip()]
    return 0 < len(lines) <= 2 and lines[-1].rstrip().endswith(":")


def _fragments(message: EmailMessage) -> list[tuple[str, str]]:
    """The text as (quote header, text below it) pieces, the first with header ``""``.

    The library's header pattern finds the headers; its own splitter is not used, as it takes
    a group inside a header (the date of ``Le ... a écrit :``) for a header of its own.
    """
    text = message.text
    pieces: list[tuple[str, str]] = []
    header, at = "", 0
    for found in message.HEADER_REGEX.finditer(text):
        if not found.group(0).strip():
            continue
        pieces.append((header, text[at : found.start()]))
        header, at = found.group(0).strip("\n"), found.end()
    pieces.append((header, text[at:]))
    return pieces


def _new_lines(message: EmailMessage, removed: list[str]) -> list[str]:
    """The lines of the reply outside its quoted history (see the module docstring)."""
    kept: list[str] = []
    quoted_any = False
    for header, body in _fragments(message):
        quoted_header = bool(header) and _is_quoted(header.splitlines()[0])
        if header and not quoted_header and not _is_wrote_header(header):
            removed.append("quote")
            return kept  # unmarked history (Outlook's block): nothing new after it
        lines = body.split("\n")
        if header and not quoted_header:
            first = next((line for line in lines if line.strip()), "")
            if first and not _is_quoted(first):
                removed.append("quote")
                return kept  # quoted without marks: history to the end
        seen_quote = not header or quoted_header
        in_quote = False
        for line in lines:
            if _is_quoted(line):
                if not in_quote:
                    _drop_attribution(kept)
                seen_quote = quoted_any = in_quote = True
            else:
                in_quote = in_quote and not line.strip()
                if seen_quote:
                    kept.append(line)
        if header:
            quoted_any = True
    if quoted_any:
        removed.append("quote")
    return kept


def _drop_attribution(kept: list[str]) -> None:
    """Remove the line that introduces a ``>`` quote (``... schreef X <x@y>:``), in a form
    the library's patterns miss: a short paragraph right above the quote, ending in a colon
    and naming a date or an address (so ``My answer:`` above an inline quote stays)."""
    end = len(kept)
    while end and not kept[end - 1].strip():
        end -= 1
    start = end
    while start and kept[start - 1].strip():
        start -= 1
    paragraph = " ".join(kept[start:end])
    if (
        end
        and paragraph.rstrip().endswith(":")
        and end - start <= _MAX_ATTRIBUTION_LINES
        and re.search(r"\d|@", paragraph)
    ):
        del kept[start:]


def _without_bridge_text(
    lines: list[str], bridge_texts: Iterable[str], removed: list[str]
) -> list[str]:
    """``lines`` without every run of lines that repeats one of the bridge's mails."""
    bodies = [f" {_norm(body)} " for body in bridge_texts if body.strip()]
    if not bodies:
        return lines
    drop: set[int] = set()
    start = 0
    while start < len(lines):
        run, end = "", start
        # The longest run of lines from here that is a stretch of one of the bridge's mails.
        probe = ""
        for stop in range(start, len(lines)):
            piece = _norm(lines[stop])
            if not piece:
                continue
            probe = f"{probe} {piece}".strip()
            if not any(f" {probe} " in body for body in bodies):
                break
            run, end = probe, stop + 1
        if len(run) >= _MIN_BRIDGE_RUN:
            drop.update(range(start, end))
            start = end
        else:
            start += 1
    if drop:
        removed.append("bridge text")
    return [line for index, line in enumerate(lines) if index not in drop]


def _without_disclaimer(lines: list[str], starts: list[str], removed: list[str]) -> list[str]:
    starts = [start for start in starts if start]
    if not starts:
        return lines
    out = list(lines)
    index = 0
    while index < len(out):
        if not any(_norm(out[index]).startswith(start) for start in starts):
            index += 1
            continue
        removed.append("disclaimer")
        if any(_norm(line) for line in out[:index]):
            return out[:index]  # the usual place: after the text, to the end
        # A banner above the text: only its paragraph goes.
        end = index
        while end < len(out) and out[end].strip():
            end += 1
        out = out[:index] + out[end:]
    return out


def _without_signature(lines: list[str], pattern: re.Pattern[str], removed: list[str]) -> list[str]:
    """``lines`` up to the first signature the library recognises that starts with a sign-off
    line (or a ``--`` delimiter, a ``Sent from my ...`` line), never inside a sentence."""
    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    for index, offset in enumerate(starts[:-1]):
        # Only the next few lines are looked at: the pattern runs on to the end of the text,
        # which from every line of a long reply would take time growing with its square.
        window = starts[min(index + _SIGNATURE_WINDOW, len(starts) - 1)]
        found = pattern.match(text, offset, window)
        if found is not None and _signs_off(text[found.start() : window]):
            removed.append("signature")
            return text[: found.start()].split("\n") if found.start() else []
    return lines


def _signs_off(signature: str) -> bool:
    first = next((ln.strip().lstrip("> ") for ln in signature.splitlines() if ln.strip()), "")
    if re.fullmatch(r"[-_]{2,}\s*", first):
        return True  # the "-- " delimiter (trimmed) or a separator line
    words = first.split()
    return len(words) <= _MAX_SIGN_OFF_WORDS and not re.search(r"[.?!]$|\?", first)


def _restore(cleaned: str, original: str) -> str:
    """``cleaned`` with each line as written in ``original`` (the library trims every line,
    which would lose the indentation of a pasted log or code)."""
    source = original.split("\n")
    at = 0
    out: list[str] = []
    for line in cleaned.split("\n"):
        for look in range(at, len(source)):
            if source[look].strip() == line and line:
                out.append(source[look].rstrip())
                at = look + 1
                break
        else:
            out.append(line)
    return "\n".join(out)
