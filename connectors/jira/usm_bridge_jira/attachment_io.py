"""Jira's issue attachments as the bridge reads and writes them (see API-FACTS.md and the
simulator's :mod:`.simulator.attachments` for the documented behaviour).

- Listed from ``fields.attachment`` of the issues the search already returned: no request per
  issue. Ids are strings there (an integer only in ``GET /attachment/{id}``).
- Content: Jira Cloud's ``attachment/content/{id}`` answers ``303 See Other`` to a short-lived,
  token-signed URL of its media service; it is followed by a client *without* the Jira
  credentials (the token is the authority, and the credentials must not reach another
  service). Data Center serves the bytes at the ``content`` URL of the attachment's metadata.
- Comments: Jira keeps every file on the issue; a comment shows the files it names (wiki
  ``[^name]`` or ``!name!``, an ADF ``media``/``mediaInline`` node whose ``alt`` is the name).
  A listed file a comment names is tied to that comment (``comment_id``), the one by the file's
  author first: so a file a person adds with a comment travels with it, and the bridge's
  comment naming its files reads back as the comment holding them.
- Upload: ``POST issue/{id}/attachments``, ``multipart/form-data`` with the part named ``file``,
  streamed from the chunks by requests-toolbelt's ``MultipartEncoder`` (never whole in memory),
  header ``X-Atlassian-Token: no-check``. Sent once: its body cannot be read again, and a
  retried upload whose first attempt landed would leave a second copy; the bridge tries again
  after listing the issue's files first.
"""

from __future__ import annotations

import io
import re
from collections.abc import Generator, Iterable, Mapping
from typing import Any

import requests
from requests_toolbelt import MultipartEncoder

from usm_bridge.connector import RemoteAttachment
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.http import redact_url

__all__ = ["ChunkReader", "listed_attachments", "named_files", "read_chunks", "tied_to_comments"]

#: The bytes one read of a download hands on.
CHUNK_BYTES = 1 << 16


def listed_attachments(fields: Mapping[str, Any]) -> list[RemoteAttachment]:
    """``fields.attachment`` as the contract lists files; an entry without an id or file name
    (a malformed answer) is skipped, as it names nothing the bridge could read."""
    listed = fields.get("attachment")
    if not isinstance(listed, list):
        return []
    out: list[RemoteAttachment] = []
    for item in listed:
        if not isinstance(item, dict) or item.get("id") in (None, "") or not item.get("filename"):
            continue
        author = item.get("author")
        name = None
        if isinstance(author, dict):
            name = author.get("accountId") or author.get("name") or author.get("key")
        size = item.get("size")
        out.append(
            RemoteAttachment(
                remote_id=str(item["id"]),
                name=str(item["filename"]),
                declared_type=str(item["mimeType"]) if item.get("mimeType") else None,
                size=size if isinstance(size, int) and size >= 0 else None,
                author=str(name) if name else None,
            )
        )
    return out


#: A file shown in wiki markup: ``[^name]`` (a link to it) or ``!name!`` / ``!name|thumbnail!``.
_WIKI_FILE = re.compile(r"\[\^([^\]\r\n]{1,255})\]|!([^!|\s][^!|\r\n]{0,254})(?:\|[^!\r\n]*)?!")
#: How deep an ADF body is walked for the files it shows (a body is untrusted).
_MAX_DEPTH = 64


def named_files(body: Any) -> set[str]:
    """The file names a comment body shows: wiki ``[^name]`` / ``!name!`` in text (a v2 body,
    or the text of a v3 one), ``alt`` of ADF ``media`` and ``mediaInline`` nodes."""
    found: set[str] = set()

    def walk(node: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, str):
            found.update(a or b for a, b in _WIKI_FILE.findall(node))
        elif isinstance(node, list):
            for child in node:
                walk(child, depth + 1)
        elif isinstance(node, dict):
            attrs = node.get("attrs")
            alt = attrs.get("alt") if isinstance(attrs, dict) else None
            if node.get("type") in ("media", "mediaInline") and isinstance(alt, str) and alt:
                found.add(alt)
            if node.get("type") == "text":
                walk(node.get("text"), depth + 1)
            walk(node.get("content"), depth + 1)

    walk(body, 0)
    return found


def _account(person: Any) -> str | None:
    if not isinstance(person, dict):
        return None
    name = person.get("accountId") or person.get("name") or person.get("key")
    return str(name) if name else None


def tied_to_comments(files: list[RemoteAttachment], block: Any) -> list[RemoteAttachment]:
    """``files`` with each one a comment names tied to it (``comment_id``): of the comments
    naming it, the oldest by the file's author, else the oldest (see the module docstring)."""
    comments = block.get("comments") if isinstance(block, dict) else None
    if not files or not isinstance(comments, list):
        return files
    naming = [
        (str(c["id"]), _account(c.get("author")), named_files(c.get("body")))
        for c in comments
        if isinstance(c, dict) and c.get("id") not in (None, "")
    ]
    out = []
    for file in files:
        candidates = [(cid, who) for cid, who, names in naming if file.name in names]
        mine = [cid for cid, who in candidates if who is not None and who == file.author]
        chosen = mine or [cid for cid, _ in candidates]
        out.append(file.model_copy(update={"comment_id": chosen[0]}) if chosen else file)
    return out


def read_chunks(response: requests.Response, what: str) -> Generator[bytes]:
    """The body of a streamed ``response`` in chunks; a connection that breaks mid-body is a
    :class:`RetriableRemoteError` naming ``what`` (the bridge reads the file again later)."""
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            if chunk:
                yield chunk
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as exc:  # fmt: skip
        raise RetriableRemoteError(
            f"the download of {what} broke off: {type(exc).__name__}",
            url=redact_url(response.url),
        ) from None
    finally:
        response.close()


class ChunkReader(io.RawIOBase):
    """A file-like view of ``size`` bytes given as chunks, for ``MultipartEncoder``, which
    reads files part by part and needs their length first (``len(reader)`` and ``tell``)."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._size = size
        self._pending = b""
        self._read = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._read

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._read if size is None or size < 0 else size
        parts = [self._pending]
        have = len(self._pending)
        while have < want:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        out, self._pending = data[:want], data[want:]
        self._read += len(out)
        if not out and self._read != self._size:
            raise ValueError(f"the file ended after {self._read} of its {self._size} bytes")
        return out


def upload_body(name: str, media_type: str, size: int, chunks: Iterable[bytes]) -> MultipartEncoder:
    """The streamed ``multipart/form-data`` body of one upload, its one part named ``file``."""
    return MultipartEncoder(fields={"file": (name, ChunkReader(chunks, size), media_type)})
