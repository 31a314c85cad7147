"""A mail larger than ``max_message_bytes``, read with bounded memory instead of refused whole.

The stdlib's parser holds a whole mail several times over (about eight times its size), so a
mail is parsed whole only up to ``max_message_bytes``. A larger one is still a call or comment:
it is read from a file on disk (the Maildir file itself, or the IMAP message fetched into a
temporary file in bounded pieces) by :func:`reduce_mail`, which walks its MIME structure line
by line (a line read in pieces of at most :data:`_PIECE` bytes: a boundary line is short) and
notes where each leaf part's content lies in the file. The mail *as read* is then the mail
with some parts' content left out, within ``max_message_bytes`` whole:

- its headers, boundaries and every part's headers are kept (the structure, and so every
  part's path, is the mail's own: a file has the same id as in the mail read whole);
- its text (the parts that are no file, see :func:`.mime_parts.is_file`) is kept, each part
  up to ``text_bound`` bytes (cut there, and then the body is marked cut);
- its files are kept in order while they fit; each other one is *left out*: its content is
  decoded once from the file on disk, a chunk at a time, for its size and SHA-256, and
  never held.

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

__all__ = ["Dropped", "Reduced", "dropped_chunks", "reduce_mail"]

#: The longest piece of a line read at once: a boundary line is at most 70 characters
#: (RFC 2046) with its dashes and white space, so a longer line is content.
_PIECE: Final = 8192
#: A header block longer than this is read as content (the header index reads as much).
_PART_HEADER_LIMIT: Final = 256 * 1024
#: How much of a part left out is read from disk at a time to decode it.
_READ_CHUNK: Final = 64 * 1024
_HEADERS_ONLY: Final = email.parser.BytesHeaderParser(policy=email.policy.default)


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


@dataclass
class _Leaf:
    path: str
    head: Message
    whole: bool
    parent_kind: str | None
    start: int
    end: int = -1


@dataclass
class _Multipart:
    boundary: bytes
    path: str
    kind: str
    children: int = 0


class _Walk:
    """One pass over the mail file, leaf by leaf (see the module docstring)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.leaves: list[_Leaf] = []
        self._open: list[_Multipart] = []
        self._leaf: _Leaf | None = None
        self._line_start = True
        #: The line end of the last line read (its length): it belongs to a boundary after it.
        self._last_end = 0

    def _pieces(self) -> Iterator[tuple[int, bytes, bool]]:
        """(offset, piece, whether it starts a line) of the rest of the file."""
        while True:
            offset = self._handle.tell()
            piece = self._handle.readline(_PIECE)
            if not piece:
                return
            starts = self._line_start
            self._line_start = piece.endswith(b"\n")
            yield offset, piece, starts

    def _read_head(self) -> bytes:
        """The header block from here (its blank line included), at most the limit."""
        lines: list[bytes] = []
        size = 0
        while size < _PART_HEADER_LIMIT:
            offset = self._handle.tell()
            line = self._handle.readline(_PIECE)
            if not line:
                break
            if self._line_start and self._boundary(line) is not None:
                self._handle.seek(offset)  # no blank line: the part's content is empty
                break
            self._line_start = line.endswith(b"\n")
            lines.append(line)
            size += len(line)
            if line in (b"\r\n", b"\n"):
                break
        self._last_end = 0
        return b"".join(lines)

    def _boundary(self, piece: bytes) -> tuple[int, bool] | None:
        """(depth in the open multiparts, whether it closes) of a boundary line, or None."""
        if not piece.startswith(b"--"):
            return None
        text = piece.rstrip(b" \t\r\n")
        # The outermost first, as the stdlib's parser: a line of an outer multipart ends the
        # inner ones (also one that reuses its parent's boundary).
        for depth in range(len(self._open)):
            mark = b"--" + self._open[depth].boundary
            if text == mark:
                return depth, False
            if text == mark + b"--":
                return depth, True
        return None

    def _start(self, path: str, whole: bool, parent_kind: str | None) -> None:
        """A part starts here: its headers are read; a multipart opens, a leaf is noted."""
        head = _HEADERS_ONLY.parsebytes(self._read_head())
        boundary = _boundary_of(head)
        if boundary is not None:
            prefix = "" if whole else f"{path}."
            self._open.append(_Multipart(boundary, prefix, head.get_content_type()))
            self._leaf = None
            return
        self._leaf = _Leaf(path, head, whole, parent_kind, self._handle.tell())
        self.leaves.append(self._leaf)

    def _end_leaf(self, offset: int) -> None:
        if self._leaf is not None:
            self._leaf.end = max(self._leaf.start, offset - self._last_end)
            self._leaf = None

    def run(self) -> None:
        self._start("1", True, None)
        for offset, piece, starts in self._pieces():
            found = self._boundary(piece) if starts and self._open else None
            if found is None:
                self._last_end = 2 if piece.endswith(b"\r\n") else 1 if piece.endswith(b"\n") else 0
                continue
            depth, closes = found
            self._end_leaf(offset)
            del self._open[depth + 1 :]  # inner multiparts never closed: ended by this line
            self._last_end = 0
            if closes:
                self._open.pop()
                continue  # the epilogue (and any text up to an outer boundary) is no part
            multipart = self._open[depth]
            multipart.children += 1
            self._start(f"{multipart.path}{multipart.children}", False, multipart.kind)
        self._end_leaf(self._handle.tell() + self._last_end)


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
    ``measure``: then their size is 0 and their SHA-256 ``None``)."""
    handle.seek(0)
    walk = _Walk(handle)
    walk.run()
    files = [
        leaf
        for leaf in walk.leaves
        if is_file(part_head(leaf.head), whole=leaf.whole, parent_kind=leaf.parent_kind)
    ]
    texts = [leaf for leaf in walk.leaves if leaf not in files]
    # What is neither text nor file (headers, boundaries) is always kept; the text in order
    # as far as the budget goes (at least text_bound of it: the call's description), each
    # part at most text_bound; then the files.
    room = budget - (size - sum(leaf.end - leaf.start for leaf in walk.leaves))
    text_room = max(room, text_bound)
    cuts: list[tuple[int, int]] = []
    text_cut = False
    for leaf in texts:
        keep = max(0, min(leaf.end - leaf.start, text_bound, text_room))
        text_room -= keep
        room -= keep
        if keep < leaf.end - leaf.start:
            cuts.append((leaf.start + keep, leaf.end))
            text_cut = True
    dropped: dict[str, Dropped] = {}
    for leaf in files:
        length = leaf.end - leaf.start
        if length <= room:
            room -= length
            continue
        cuts.append((leaf.start, leaf.end))
        kind = part_head(leaf.head).kind
        encoding = "" if kind == "message/rfc822" else transfer_encoding(leaf.head)
        digest, decoded, problem = hashlib.sha256(), 0, None
        try:
            for chunk in _decoded(handle, encoding, leaf.start, leaf.end) if measure else ():
                digest.update(chunk)
                decoded += len(chunk)
        except UnreadablePart as error:
            problem, decoded = error.remote_message or str(error), 0
        dropped[leaf.path] = Dropped(
            leaf.path, kind, encoding, leaf.start, leaf.end, decoded,
            None if problem or not measure else digest.hexdigest(), problem,
        )  # fmt: skip
    kept: list[bytes] = []
    at = 0
    for start, end in sorted(cuts):
        handle.seek(at)
        kept.append(handle.read(start - at))
        at = end
    handle.seek(at)
    kept.append(handle.read(size - at))
    return Reduced(b"".join(kept), dropped, text_cut)
