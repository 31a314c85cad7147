"""ServiceNow's Attachment API from the connector's side: listings read, bodies sent, downloads
checked.

What it relies on (ServiceNow's Attachment API reference; the simulator's
``simulator/attachments.py`` names each source): a listing's values are all strings;
``hash`` is the content's SHA-256 in hex on current releases, while old releases may answer a
32-digit value, which is then not taken for one; ``size_bytes`` is the size of the content as
it was uploaded (``compressed`` is how the instance stores it, not how ``/file`` sends it).
Everything here is the instance's word, so untrusted: a listing without a ``sys_id`` is an
error naming the record, a size or a hash of the wrong shape is left out rather than believed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import requests
from usm_bridge.connector import RemoteAttachment
from usm_bridge.errors import RetriableRemoteError

__all__ = [
    "ATTACHMENT_PATH",
    "BodyMismatch",
    "checked_download",
    "files_note",
    "remote_attachment",
    "stated_size",
    "tied_to_entries",
    "upload_body",
]

#: The Attachment API, relative to the instance.
ATTACHMENT_PATH: Final = "api/now/attachment"
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
#: What ``/file`` is read in (the core's chunk, 64 KiB).
DOWNLOAD_CHUNK: Final = 64 * 1024


class BodyMismatch(ValueError):
    """The chunks given for an upload are not the size announced (its ``Content-Length``)."""


def _size(text: object) -> int | None:
    value = str(text or "")
    return int(value) if value.isdigit() else None


def _moment(text: object) -> datetime | None:
    try:
        return datetime.strptime(str(text or ""), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def remote_attachment(row: Mapping[str, Any], record: str) -> RemoteAttachment:
    """One ``sys_attachment`` row of a listing as the contract's :class:`RemoteAttachment`.

    :param record: the record the listing was asked for (named in the error).
    :raises RetriableRemoteError: the row has no ``sys_id`` (a proxy's or a broken answer).
    """
    sys_id = str(row.get("sys_id") or "")
    if not sys_id.isalnum():
        raise RetriableRemoteError(
            f"the Attachment API listed a file of record {record} without a usable sys_id"
        )
    digest = str(row.get("hash") or "").lower()
    content_type = str(row.get("content_type") or "")
    return RemoteAttachment(
        remote_id=sys_id,
        name=str(row.get("file_name") or ""),
        declared_type=content_type or None,
        size=_size(row.get("size_bytes")),
        sha256=digest if _SHA256.fullmatch(digest) else None,
        created=_moment(row.get("sys_created_on")),
        author=str(row.get("sys_created_by") or "") or None,
    )


def stated_size(response: requests.Response) -> int | None:
    """The file's size as ``/file`` states it: ``size_bytes`` of ``X-Attachment-Metadata``."""
    try:
        metadata = json.loads(response.headers.get("X-Attachment-Metadata") or "{}")
    except ValueError:
        return None
    return _size(metadata.get("size_bytes")) if isinstance(metadata, dict) else None


def checked_download(response: requests.Response, attachment_id: str) -> Iterator[bytes]:
    """``/file``'s content in chunks; a download that breaks off, or ends short of (or beyond)
    the size the instance states, raises instead of ending as if whole.

    :raises RetriableRemoteError: the connection failed mid-download, or the content is not
        the size stated; the caller's spool is then discarded, never taken as the file.
    """
    expected = stated_size(response)
    received = 0
    try:
        for chunk in response.iter_content(DOWNLOAD_CHUNK):
            received += len(chunk)
            yield chunk
    except requests.RequestException as error:
        raise RetriableRemoteError(
            f"the download of attachment {attachment_id} broke off after {received} bytes "
            f"({type(error).__name__})"
        ) from None
    if expected is not None and received != expected:
        raise RetriableRemoteError(
            f"the download of attachment {attachment_id} gave {received} bytes, "
            f"the instance states {expected}"
        )


def _exactly(chunks: Iterable[bytes], size: int, name: str) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise BodyMismatch(f"the content of {name!r} is longer than the {size} bytes announced")
        yield chunk
    if sent != size:
        raise BodyMismatch(f"the content of {name!r} ended at {sent} of the {size} bytes announced")


class _Body:
    """Chunks that read anew each time they are iterated (a retry sends them again), with the
    length ``requests`` sends as ``Content-Length``."""

    def __init__(self, chunks: Iterable[bytes], size: int, name: str) -> None:
        self._chunks, self._size, self._name = chunks, size, name

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return _exactly(self._chunks, self._size, self._name)


class _OneShotBody(_Body, Iterator[bytes]):
    """Chunks that can be read once (an iterator): the HTTP client then sends them once."""

    def __init__(self, chunks: Iterator[bytes], size: int, name: str) -> None:
        super().__init__(chunks, size, name)
        self._left = _exactly(chunks, size, name)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._left)


def upload_body(chunks: Iterable[bytes], size: int, name: str) -> Iterable[bytes] | bytes:
    """The body of a raw upload of ``size`` bytes, read from ``chunks`` as it is sent.

    It carries its length (so ``Content-Length``, never ``chunked``: the Attachment API reads
    the length); an empty file is the empty body. Chunks that are not the size announced raise
    :class:`BodyMismatch` while sending, which closes the connection (the instance drops a
    body cut short) rather than let a wrong file land.
    """
    if size == 0:
        for _ in _exactly(chunks, 0, name):
            pass
        return b""
    if isinstance(chunks, Iterator):
        return _OneShotBody(chunks, size, name)
    return _Body(chunks, size, name)


def files_note(names: Iterable[tuple[str, int]]) -> str:
    """The journal entry naming the files sent with a comment (the issue's "a journal entry
    names the files sent")."""
    listed = ", ".join(f"{name} ({_human(size)})" for name, size in names)
    return f"Attached: {listed}"


def tied_to_entries(
    files: list[RemoteAttachment], journal: Iterable[Any]
) -> list[RemoteAttachment]:
    """``files`` with each one a journal entry names tied to it (``comment_id``, the entry's
    sys_id). ServiceNow keeps files on the record, not on entries; an entry that names a file
    (the bridge's "Attached: name (size)" line, or a person's words naming it) by the file's own
    author is the comment it came with; of several, the one written nearest the file."""
    entries = [
        e for e in journal
        if isinstance(e, dict) and str(e.get("sys_id") or "") and isinstance(e.get("value"), str)
    ]  # fmt: skip
    if not files or not entries:
        return files
    out = []
    for file in files:
        naming = [
            e for e in entries
            if file.name and file.name in e["value"] and e.get("sys_created_by") == file.author
        ]  # fmt: skip
        if not naming:
            out.append(file)
            continue
        when = file.created
        nearest = min(
            naming,
            key=lambda e: abs(
                (_moment(e.get("sys_created_on")) or when or _EPOCH) - (when or _EPOCH)
            ),
        )
        out.append(file.model_copy(update={"comment_id": str(nearest["sys_id"])}))
    return out


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    amount = size / 1024
    for unit in ("KB", "MB"):
        if amount < 1024:
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"
