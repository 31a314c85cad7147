"""Issue attachments as Jira serves them: upload, metadata, content, deletion.

What the simulator relies on, and where it is documented:

- ``POST /rest/api/{2,3}/issue/{issueIdOrKey}/attachments`` takes ``multipart/form-data`` whose
  file parts are all named ``file`` (several at once), and is blocked without the header
  ``X-Atlassian-Token: no-check`` (Jira's XSRF protection: a plain-text ``403 XSRF check
  failed``); it answers ``200`` with an *array* of attachments (ids as strings); ``413`` when a
  file exceeds the site's attachment size or more than 60 files come in one request (the
  official OpenAPI description, operation ``addAttachment``).
- ``GET /rest/api/{2,3}/attachment/meta``: ``{"enabled", "uploadLimit"}`` in bytes
  (``getAttachmentMeta``); ``GET /attachment/{id}``: the metadata, whose ``id`` is an *integer*
  there (``AttachmentMetadata``) while the upload's answer and ``fields.attachment`` give it as
  a string (``Attachment``); ``DELETE /attachment/{id}``: ``204``, ``404`` unknown, ``403`` for
  someone else's file without the *Delete all attachments* permission (``removeAttachment``).
- ``GET /rest/api/{2,3}/attachment/content/{id}``: Jira Cloud answers ``303 See Other`` whose
  ``Location`` is a short-lived, token-signed URL of its media service, which needs no other
  credentials (clients that do not follow redirects get an empty body: console-helpers/
  jira-api-restclient#234; activepieces#11281); with ``redirect=false`` the bytes themselves,
  ``200``, or one ``Range`` as ``206`` (``416`` outside the file, ``400`` malformed)
  (``getAttachmentContent``). An issue's ``content`` URL on Cloud is that endpoint (the
  spec's examples); on Data Center it is ``/secure/attachment/{id}/{filename}``, served directly.
- An attachment added or removed moves the issue's ``updated`` and is recorded in its changelog
  as field ``Attachment`` (``fieldId`` ``attachment``), the id and file name in ``to`` /
  ``toString`` when added, in ``from`` / ``fromString`` when removed.
- ``thumbnail`` is given for images only.

Modelled, not documented: a part sent as ``application/octet-stream`` (what pycontribs' client
sends for every file) is recorded with the media type its file name suggests, as Jira Data
Center's MIME manager does; Jira Cloud's media service may sniff the content instead.

Content lives in files in a temporary directory, never in memory: an upload is parsed from the
socket in chunks straight into one file per part (``multipart``'s push parser), hashed on the
way; a download is streamed from that file. A 100 MB file costs one copy on disk and a chunk
in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mimetypes
import os
import secrets
import shutil
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import multipart

__all__ = [
    "MAX_FILES_PER_REQUEST",
    "Attachment",
    "AttachmentFiles",
    "Body",
    "FilePart",
    "FormBody",
    "receive_form",
]

#: The most files one upload request may carry (the OpenAPI description of addAttachment).
MAX_FILES_PER_REQUEST: Final = 60
_CHUNK: Final = 1 << 20
_OCTETS: Final = "application/octet-stream"


@dataclass
class FilePart:
    """One ``file`` part of an upload, its bytes already in ``path``."""

    filename: str
    content_type: str
    path: Path
    size: int
    sha256: str


@dataclass
class FormBody:
    """A ``multipart/form-data`` request body as received: its file parts (on disk), the names
    of its other parts, or why it could not be read."""

    parts: list[FilePart] = field(default_factory=list)
    other_names: list[str] = field(default_factory=list)
    problem: str | None = None
    #: The body ended before its Content-Length (the client went away).
    truncated: bool = False

    def discard(self) -> None:
        """Remove the part files nobody adopted."""
        for part in self.parts:
            part.path.unlink(missing_ok=True)


#: A request body as the simulator's handler passes it on: a multipart form received to disk,
#: or the bytes of any other body.
Body = bytes | FormBody


def receive_form(
    stream: BinaryIO | io.BufferedIOBase, length: int, content_type: str, directory: Path
) -> FormBody:
    """Read ``length`` bytes of a multipart body from ``stream`` into one file per part.

    The whole body is always read (the next request on the connection must not start in the
    middle of this one), whatever is wrong with it.
    """
    body = FormBody()
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    parser = multipart.PushMultipartParser(boundary, length) if boundary else None
    if parser is None:
        body.problem = "The multipart request has no boundary."
    sink: _PartSink | None = None
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            body.truncated = True
            break
        remaining -= len(chunk)
        if parser is None or body.problem:
            continue
        try:
            for event in parser.parse(chunk):
                sink = _PartSink.feed(sink, event, body, directory)
        except multipart.MultipartError as error:
            body.problem = f"The multipart request is malformed: {error}"
    if parser is not None and not body.problem and not body.truncated:
        try:
            parser.close()
        except multipart.MultipartError as error:
            body.problem = f"The multipart request is malformed: {error}"
    if sink is not None:
        sink.abandon()
    if body.problem or body.truncated:
        body.discard()
        body.parts.clear()
    return body


class _PartSink:
    """Where the bytes of the part being parsed go: a file for a ``file`` part, nowhere else."""

    def __init__(self, segment: Any, body: FormBody, directory: Path) -> None:
        self.segment = segment
        self.body = body
        self.handle: BinaryIO | None = None
        self.digest = hashlib.sha256()
        if segment.name == "file" and segment.filename is not None:
            fd, name = tempfile.mkstemp(dir=directory, prefix="part-")
            self.handle = os.fdopen(fd, "wb")
            self.path = Path(name)
        else:
            body.other_names.append(str(segment.name))

    @classmethod
    def feed(
        cls, sink: _PartSink | None, event: Any, body: FormBody, directory: Path
    ) -> _PartSink | None:
        """Take one parser event; the sink for what follows (``None`` between parts)."""
        if isinstance(event, multipart.MultipartSegment):
            return cls(event, body, directory)
        if sink is None:
            return None
        if event is None:
            sink.finish()
            return None
        if sink.handle is not None:
            sink.handle.write(event)
            sink.digest.update(event)
        return sink

    def finish(self) -> None:
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        declared = self.segment.content_type or _OCTETS
        self.body.parts.append(
            FilePart(
                filename=str(self.segment.filename),
                content_type=declared.split(";")[0].strip().lower(),
                path=self.path,
                size=self.path.stat().st_size,
                sha256=self.digest.hexdigest(),
            )
        )

    def abandon(self) -> None:
        """A part the body ended in the middle of: its file goes."""
        if self.handle is not None:
            self.handle.close()
            self.path.unlink(missing_ok=True)


def media_type_of(filename: str, declared: str) -> str:
    """The type Jira records: the declared one, or the file name's when none was given."""
    if declared and declared != _OCTETS:
        return declared
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or _OCTETS


@dataclass
class Attachment:
    """One file attached to an issue."""

    id: int
    issue_id: int
    filename: str
    mime_type: str
    size: int
    sha256: str
    author: str
    created: datetime
    path: Path
    #: The media service's id of the content (the redirect's target).
    media_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")


class AttachmentFiles:
    """The site's attachment content: one file each in a private temporary directory."""

    def __init__(self) -> None:
        # A site that never sees a file makes no directory; one that does removes it on
        # close() or, at the latest, when it is collected.
        self._made: Path | None = None
        #: Media tokens handed out in redirects, each for one attachment id.
        self.tokens: dict[str, int] = {}

    @property
    def directory(self) -> Path:
        """Where the files are."""
        if self._made is None:
            self._made = Path(tempfile.mkdtemp(prefix="jira-sim-attachments-"))
            weakref.finalize(self, shutil.rmtree, self._made, ignore_errors=True)
        return self._made

    def store(self, content: bytes | IO[bytes] | Path) -> tuple[Path, int, str]:
        """Copy ``content`` (bytes, a readable file, or a path) into a file of the store:
        its path, size and SHA-256, read a chunk at a time."""
        fd, name = tempfile.mkstemp(dir=self.directory, prefix="file-")
        digest = hashlib.sha256()
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(os.fdopen(fd, "wb"))
            if isinstance(content, bytes):
                # BytesIO shares the bytes' buffer until written to: no copy is made.
                source: IO[bytes] = io.BytesIO(content)
            elif isinstance(content, Path):
                source = stack.enter_context(content.open("rb"))
            else:
                source = content
            while chunk := source.read(_CHUNK):
                target.write(chunk)
                digest.update(chunk)
        path = Path(name)
        return path, path.stat().st_size, digest.hexdigest()

    def token_for(self, attachment_id: int) -> str:
        """A media token that lets its bearer fetch this attachment's content."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = attachment_id
        return token

    def close(self) -> None:
        """Remove every file."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
