"""A mail larger than ``max_message_bytes``, read with bounded memory instead of refused whole.

The stdlib's parser holds a whole mail several times over (about eight times its size), so a
mail is parsed whole only up to ``max_message_bytes``. A larger one is still a call or comment:
it is read from a file on disk (the Maildir file itself, or the IMAP message fetched into a
temporary file in bounded pieces) by :func:`reduce_mail`, which walks its MIME structure line
by line (a line read in pieces of at most :data:`_PIECE` bytes: a boundary line is short) and
notes where each leaf part's content lies in the file. The mail *as read* is then the mail
with some parts' content left out, within ``max_message_bytes`` whole (or ``text_bound``,
the bytes a description of ``max_body_chars`` can take, when that is larger):

- its headers, boundaries and every part's headers are kept (the structure, and so every
  part's path, is the mail's own: a file has the same id as in the mail read whole);
- its text (the parts that are no file, see :func:`.mime_parts.is_file`) is kept, each part
  up to ``text_bound`` bytes (cut there, and then the body is marked cut);
- its files are kept in order while they fit; each other one is *left out*: its content is
  decoded once from the file on disk, a chunk at a time, for its size and SHA-256, and
  never held;
- a multipart's preamble and epilogue (text outside its parts, read by no one) are kept
  while they fit, else left out.

Lines end as the stdlib's parser ends them: at CR LF, LF or a lone CR. A mail that cannot be
read within the bound raises :class:`BeyondBound` saying why, before anything is held: what
is always kept (headers and boundaries) is over the bound, a header block is over
:data:`_PART_HEADER_LIMIT`, its multiparts nest deeper than :data:`MAX_DEPTH`, or it has
more than :data:`MAX_PARTS` parts. The walk
is linear in the mail's size: a boundary line is looked up, never compared with each open
multipart's.

That smaller mail is parsed as every mail is (:func:`.parsing.parse_message`); the connector
lists the files left out with their size and what became of them (a person's: refused, saying
by how much the mail is over; the bridge's own mail: read from the mail on disk,
:func:`dropped_chunks`). A structure the stdlib reads otherwise than this walk (a broken mail:
a part left out is not where the walk found it) makes the connector keep the whole mail as a
dead letter, never list a wrong file.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO, Final

from .mime_parts import (
    UnreadablePart,
    decode_runs,
    is_file,
    part_head,
    transfer_encoding,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "BeyondBound",
    "Dropped",
    "Reduced",
    "dropped_chunks",
    "reduce_mail",
]

#: The longest piece of a line read at once: a boundary line is at most 70 characters
#: (RFC 2046) with its dashes and white space, so a longer line is content.
_PIECE: Final = 8192
#: A header block longer than this makes the mail unreadable within the bound (the header
#: index reads as much of a mail's headers).
_PART_HEADER_LIMIT: Final = 256 * 1024
#: How deep multiparts may nest: a real mail nests a few levels (a forward of a reply with
#: alternatives and inline images); deeper is hostile, and the stdlib's parser would take
#: time quadratic in the depth on the mail as read.
MAX_DEPTH: Final = 100
#: How many parts a mail may have: each is noted in the walk and becomes a message object of
#: the stdlib's (far larger than its few bytes of boundary) when the mail as read is parsed.
MAX_PARTS: Final = 10_000
#: How much of a part left out is read from disk at a time to decode it (and how much of the
#: mail the walk reads at a time).
_READ_CHUNK: Final = 64 * 1024
#: A line end as the stdlib's parser reads one.
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_HEADERS_ONLY: Final = email.parser.BytesHeaderParser(policy=email.policy.default)


class BeyondBound(ValueError):
    """The mail cannot be read within the bound; ``reason`` says why (a dead letter's reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Dropped:
    """A file part whose content the mail as read leaves out."""

    path: str
    kind: str
    encoding: str
    #: Where its encoded content lies in the mail file: ``[start, end)``.
    start: int
    end: int
    #: The decoded size and SHA-256 (``None`` with ``problem``: it does not decode).
    size: int
    sha256: str | None
    problem: str | None


@dataclass
class Reduced:
    """The mail as read (see the module docstring)."""

    raw: bytes
    #: The files left out, by path.
    dropped: dict[str, Dropped] = field(default_factory=dict)
    #: Whether a text part was cut at ``text_bound``.
    text_cut: bool = False


@dataclass(slots=True)
class _Leaf:
    """A leaf part: what is needed of its headers (never held: a walk may note many)."""

    path: str
    file: bool
    kind: str
    encoding: str
    start: int
    end: int = -1


@dataclass(slots=True)
class _Filler:
    """A multipart's preamble or epilogue: text that is no part."""

    start: int
    end: int = -1


@dataclass
class _Multipart:
    boundary: bytes
    path: str
    kind: str
    children: int = 0


class _Lines:
    """The mail file's lines, each in pieces of at most :data:`_PIECE` bytes (a CR LF is never
    split), read a chunk at a time; a line ends at CR LF, LF or a lone CR."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._base = handle.tell()  # the file offset of the buffer's first byte
        self._buffer = b""
        self._at = 0
        self._eof = False

    def tell(self) -> int:
        return self._base + self._at

    def back(self, offset: int) -> None:
        """Read again from ``offset``, a piece just read (still in the buffer)."""
        self._at = offset - self._base

    def piece(self) -> bytes:
        if len(self._buffer) - self._at < _PIECE + 2 and not self._eof:
            more = self._handle.read(_READ_CHUNK)
            self._eof = not more
            self._base += self._at
            self._buffer = self._buffer[self._at :] + more
            self._at = 0
        # A line end starting within the piece ends it (a CR LF whole, even one past it).
        found = _LINE_END.search(self._buffer, self._at, self._at + _PIECE + 1)
        end = found.end() if found else min(len(self._buffer), self._at + _PIECE)
        piece = self._buffer[self._at : end]
        self._at = end
        return piece


def _line_end(piece: bytes) -> int:
    """The length of the line end ``piece`` ends with (0: none)."""
    return 2 if piece.endswith(b"\r\n") else 1 if piece.endswith((b"\n", b"\r")) else 0


class _Walk:
    """One pass over the mail file, leaf by leaf (see the module docstring): it holds no more
    than one header block, and stops as soon as the headers and boundaries seen, always kept,
    are over ``bound`` (:class:`BeyondBound`)."""

    def __init__(self, handle: BinaryIO, bound: int) -> None:
        self._lines = _Lines(handle)
        self._bound = bound
        self.leaves: list[_Leaf] = []
        self.fillers: list[_Filler] = []
        self._open: list[_Multipart] = []
        #: The depth of the outermost open multipart of each boundary: a line is looked up,
        #: never compared with each open multipart's boundary.
        self._marks: dict[bytes, int] = {}
        #: The content being read: a leaf's, or a preamble or epilogue.
        self._content: _Leaf | _Filler | None = None
        self._line_start = True
        #: The line end of the last line read (its length): it belongs to a boundary after it.
        self._last_end = 0
        #: The bytes of headers and boundaries seen (always kept).
        self._structure = 0
        self._parts = 1

    def _pieces(self) -> Iterator[tuple[int, bytes, bool]]:
        """(offset, piece, whether it starts a line) of the rest of the file."""
        while True:
            offset = self._lines.tell()
            piece = self._lines.piece()
            if not piece:
                return
            starts = self._line_start
            self._line_start = _line_end(piece) > 0
            yield offset, piece, starts

    def _kept(self, size: int) -> None:
        """``size`` more bytes that are always kept: past the bound, the walk stops."""
        self._structure += size
        if self._structure > self._bound:
            raise BeyondBound(
                f"its headers and MIME boundaries alone are over {self._bound} bytes "
                f"(by byte {self._lines.tell()})"
            )

    def _read_head(self, path: str) -> bytes:
        """The header block from here (its blank line included), at most the limit."""
        lines: list[bytes] = []
        size = 0
        while True:
            offset = self._lines.tell()
            line = self._lines.piece()
            if not line:
                break
            if self._line_start and self._boundary(line) is not None:
                self._lines.back(offset)  # no blank line: the part's content is empty
                break
            self._line_start = _line_end(line) > 0
            lines.append(line)
            size += len(line)
            if line in (b"\r\n", b"\n", b"\r"):
                break
            if size > _PART_HEADER_LIMIT:
                where = "the mail's header" if path == "1" else f"the header of part {path}"
                raise BeyondBound(f"{where} is over {_PART_HEADER_LIMIT // 1024} KB")
        self._kept(size)
        self._last_end = 0
        return b"".join(lines)

    def _boundary(self, piece: bytes) -> tuple[int, bool] | None:
        """(depth in the open multiparts, whether it closes) of a boundary line, or None."""
        if not piece.startswith(b"--") or not self._marks:
            return None
        text = piece[2:].rstrip(b" \t\r\n")
        # The outermost first, as the stdlib's parser: a line of an outer multipart ends the
        # inner ones (also one that reuses its parent's boundary).
        depth = self._marks.get(text)
        closing = self._marks.get(text[:-2]) if text.endswith(b"--") else None
        if closing is not None and (depth is None or closing < depth):
            return closing, True
        return None if depth is None else (depth, False)

    def _close_below(self, depth: int) -> None:
        """Close the open multiparts deeper than ``depth``."""
        for inner in range(len(self._open) - 1, depth, -1):
            boundary = self._open.pop().boundary
            if self._marks.get(boundary) == inner:
                del self._marks[boundary]

    def _start(self, path: str, whole: bool, parent_kind: str | None) -> None:
        """A part starts here: its headers are read; a multipart opens, a leaf is noted."""
        head = _HEADERS_ONLY.parsebytes(self._read_head(path))
        boundary = _boundary_of(head)
        if boundary is not None:
            if len(self._open) >= MAX_DEPTH:
                raise BeyondBound(f"its MIME parts are nested over {MAX_DEPTH} deep")
            prefix = "" if whole else f"{path}."
            self._marks.setdefault(boundary, len(self._open))
            self._open.append(_Multipart(boundary, prefix, head.get_content_type()))
            self._content = _Filler(self._lines.tell())  # its preamble
            self.fillers.append(self._content)
            return
        found = part_head(head)
        file = is_file(found, whole=whole, parent_kind=parent_kind)
        encoding = "" if found.kind == "message/rfc822" else transfer_encoding(head)
        self._content = _Leaf(path, file, found.kind, encoding, self._lines.tell())
        self.leaves.append(self._content)

    def _end_content(self, offset: int) -> None:
        if self._content is not None:
            self._content.end = max(self._content.start, offset - self._last_end)
            self._content = None

    def run(self) -> None:
        self._start("1", True, None)
        for offset, piece, starts in self._pieces():
            found = self._boundary(piece) if starts else None
            if found is None:
                self._last_end = _line_end(piece)
                continue
            depth, closes = found
            self._end_content(offset)
            self._kept(len(piece) + self._last_end)
            self._close_below(depth)  # inner multiparts never closed: ended by this line
            self._last_end = 0
            if closes:
                self._close_below(depth - 1)
                # The epilogue (and any text up to an outer boundary) is no part.
                self._content = _Filler(self._lines.tell())
                self.fillers.append(self._content)
                continue
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise BeyondBound(f"it has over {MAX_PARTS} MIME parts")
            multipart = self._open[depth]
            multipart.children += 1
            self._start(f"{multipart.path}{multipart.children}", False, multipart.kind)
        self._end_content(self._lines.tell() + self._last_end)


def _boundary_of(head: Message) -> bytes | None:
    """The boundary of a multipart's headers (a forwarded mail is a leaf), or None."""
    try:
        if head.get_content_maintype() != "multipart":
            return None
        boundary = head.get_boundary()
    except Exception:
        return None
    if not boundary:
        return None
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        return None


def _decoded(handle: BinaryIO, encoding: str, start: int, end: int) -> Iterator[bytes]:
    def runs() -> Iterator[str]:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(_READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            if left > 0:  # to the end of the line: a run of whole lines
                rest = handle.readline(min(_PIECE, left))
                left -= len(rest)
                chunk += rest
            yield chunk.decode("ascii", "surrogateescape")

    return decode_runs(encoding, runs())


def dropped_chunks(handle: BinaryIO, part: Dropped) -> Iterator[bytes]:
    """The decoded content of a part left out, read from the mail file a chunk at a time.

    :raises UnreadablePart: it does not decode as declared.
    """
    if part.problem is not None:
        problem = part.problem
        raise UnreadablePart(f"attachment cannot be read: {problem}", remote_message=problem)
    return _decoded(handle, part.encoding, part.start, part.end)


def reduce_mail(
    handle: BinaryIO, size: int, *, budget: int, text_bound: int, measure: bool = True
) -> Reduced:
    """The mail of ``size`` bytes in ``handle`` as read within ``budget`` bytes (see the
    module docstring): text parts cut at ``text_bound`` each, files kept in order while they
    fit, the others left out (decoded once from disk for their size and SHA-256, unless not
    ``measure``: then their size is 0 and their SHA-256 ``None``), then the preambles and
    epilogues that fit.

    :raises BeyondBound: the mail cannot be read within ``max(budget, text_bound)`` bytes;
        nothing of it is held.
    """
    # The text is read at least up to text_bound (the call's description) even when the
    # budget is smaller: the bound is the larger of the two.
    bound = max(budget, text_bound)
    handle.seek(0)
    walk = _Walk(handle, bound)
    walk.run()
    files = [leaf for leaf in walk.leaves if leaf.file]
    texts = [leaf for leaf in walk.leaves if not leaf.file]
    fillers = [(filler.start, filler.end) for filler in walk.fillers]
    # What is neither text nor file nor filler (headers, boundaries) is always kept; the text
    # in order as far as the bound goes, each part at most text_bound; then the files, then
    # the fillers, while they fit the budget.
    structure = size - sum(leaf.end - leaf.start for leaf in walk.leaves)
    structure -= sum(end - start for start, end in fillers)
    room = budget - structure
    text_room = bound - structure
    cuts: list[tuple[int, int]] = []
    text_cut = False
    for leaf in texts:
        keep = max(0, min(leaf.end - leaf.start, text_bound, text_room))
        text_room -= keep
        room -= keep
        if keep < leaf.end - leaf.start:
            cuts.append((leaf.start + keep, leaf.end))
            text_cut = True
    left_out: list[_Leaf] = []
    for leaf in files:
        if leaf.end - leaf.start <= room:
            room -= leaf.end - leaf.start
        else:
            left_out.append(leaf)
            cuts.append((leaf.start, leaf.end))
    for start, end in fillers:
        if end - start <= room:
            room -= end - start
        else:
            cuts.append((start, end))
    # The guard: the mail as read is never over the bound, whatever its structure.
    kept = size - sum(end - start for start, end in cuts)
    if kept > bound:
        raise BeyondBound(f"its headers and MIME boundaries alone are over {bound} bytes")
    dropped = {leaf.path: _measured(handle, leaf, measure) for leaf in left_out}
    pieces: list[bytes] = []
    at = 0
    for start, end in sorted(cuts):
        handle.seek(at)
        pieces.append(handle.read(start - at))
        at = end
    handle.seek(at)
    pieces.append(handle.read(size - at))
    return Reduced(b"".join(pieces), dropped, text_cut)


def _measured(handle: BinaryIO, leaf: _Leaf, measure: bool) -> Dropped:
    """The file ``leaf`` left out, decoded once from disk for its size and SHA-256 (unless
    not ``measure``)."""
    digest, decoded, problem = hashlib.sha256(), 0, None
    try:
        for chunk in _decoded(handle, leaf.encoding, leaf.start, leaf.end) if measure else ():
            digest.update(chunk)
            decoded += len(chunk)
    except UnreadablePart as error:
        problem, decoded = error.remote_message or str(error), 0
    sha256 = None if problem or not measure else digest.hexdigest()
    return Dropped(
        leaf.path, leaf.kind, leaf.encoding, leaf.start, leaf.end, decoded, sha256, problem
    )
