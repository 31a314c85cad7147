"""The REST side of issue attachments: what :class:`JiraSite` answers on the attachment paths.

The documented behaviour it follows is listed in :mod:`.attachments`. Paths, relative to the
site: ``/rest/api/{v}/issue/{key}/attachments`` (POST), ``/rest/api/{v}/attachment/meta``,
``/rest/api/{v}/attachment/{id}`` (GET, DELETE), ``/rest/api/{v}/attachment/content/{id}``,
``/secure/attachment/{id}/{filename}`` and the media service's ``/media/file/{id}/binary``
that Cloud's content redirect points to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from .attachments import (
    MAX_FILES_PER_REQUEST,
    Attachment,
    AttachmentFiles,
    FormBody,
    media_type_of,
)
from .changelog import ChangeItem
from .replies import Reply, errors, raw_reply

if TYPE_CHECKING:
    from .state import Issue, JiraSite

__all__ = ["DEFAULT_UPLOAD_LIMIT", "AttachmentApi"]

#: Jira's default maximum attachment size, 10 MiB (``jira.attachment.size``); sites change it.
DEFAULT_UPLOAD_LIMIT: Final = 10 * 1024 * 1024
_NOT_FOUND: Final = "The attachment with id '{ident}' does not exist."


class AttachmentApi:
    """The attachments of one site: their files, their metadata and the endpoints serving them.

    :attr:`enabled` and :attr:`upload_limit` (bytes, per file) are the site's attachment
    settings, as ``/attachment/meta`` reports them.
    """

    def __init__(self, site: JiraSite) -> None:
        self.site = site
        self.files = AttachmentFiles()
        self.by_id: dict[int, Attachment] = {}
        self.enabled = True
        self.upload_limit = DEFAULT_UPLOAD_LIMIT
        self._next_id = 10000

    # -- what people do in the site (and tests, directly) --------------------------------------

    def add(
        self,
        issue: Issue,
        filename: str,
        content: bytes | IO[bytes] | Path,
        *,
        mime_type: str = "",
        author: str | None = None,
        at: datetime | None = None,
    ) -> Attachment:
        """Attach ``content`` to ``issue`` as a person in the UI would (no size check)."""
        path, size, sha256 = self.files.store(content)
        with self.site.lock:
            return self._attach(issue, filename, mime_type, path, size, sha256, author, at)

    def seed(self, issue: Issue, count: int, *, size: int = 1024) -> list[Attachment]:
        """``count`` text files of ``size`` bytes each on ``issue`` (tests and benchmarks),
        attached as of the issue's last update, so that a seeded history keeps its times."""
        made = []
        for n in range(count):
            line = f"{issue.key} attachment {n}\n".encode()
            content = (line * (size // len(line) + 1))[:size]
            made.append(self.add(issue, f"note-{n}.txt", content, at=issue.updated))
        return made

    def remove(self, attachment: Attachment) -> None:
        """Delete ``attachment`` directly; the issue's history records it."""
        with self.site.lock:
            issue = self.site.issue(attachment.issue_id)
            self.by_id.pop(attachment.id, None)
            attachment.path.unlink(missing_ok=True)
            if issue is None:
                return
            issue.attachments.remove(attachment)
            item = ChangeItem(
                "Attachment", str(attachment.id), attachment.filename, None, None,
                field_id="attachment",
            )  # fmt: skip
            moment = self.site.clock.stamp()
            self.site.record_history(issue, (item,), moment)
            self.site.touch_at(issue, moment)

    def forget_issue(self, issue: Issue) -> None:
        """An issue deleted: its files go with it."""
        for attachment in issue.attachments:
            self.by_id.pop(attachment.id, None)
            attachment.path.unlink(missing_ok=True)

    def _attach(
        self,
        issue: Issue,
        filename: str,
        declared: str,
        path: Path,
        size: int,
        sha256: str,
        author: str | None,
        at: datetime | None,
    ) -> Attachment:
        moment = at or self.site.clock.stamp()
        self._next_id += 1
        attachment = Attachment(
            id=self._next_id,
            issue_id=issue.id,
            filename=filename,
            mime_type=media_type_of(filename, declared),
            size=size,
            sha256=sha256,
            author=author or self.site.caller,
            created=moment,
            path=path,
        )
        self.by_id[attachment.id] = attachment
        issue.attachments.append(attachment)
        item = ChangeItem(
            "Attachment", None, None, str(attachment.id), filename, field_id="attachment"
        )
        self.site.record_history(issue, (item,), moment, author=attachment.author)
        self.site.touch_at(issue, moment)
        return attachment

    # -- rendering -----------------------------------------------------------------------------

    def as_json(self, attachment: Attachment, v: str, *, metadata: bool = False) -> dict[str, Any]:
        """An attachment as ``fields.attachment`` and the upload show it, or (``metadata``) as
        ``GET /attachment/{id}`` does: an integer id there, and ``properties``."""
        site = self.site
        api = f"{site.base_url}/rest/api/{v}"
        out: dict[str, Any] = {
            "self": f"{api}/attachment/{attachment.id}",
            "id": attachment.id if metadata else str(attachment.id),
            "filename": attachment.filename,
            "author": site.user_json(attachment.author, v),
            "created": site.time_text(attachment.created),
            "size": attachment.size,
            "mimeType": attachment.mime_type,
            "content": self.content_url(attachment, v),
        }
        if metadata:
            out["properties"] = {}
        if attachment.is_image:
            out["thumbnail"] = f"{api}/attachment/thumbnail/{attachment.id}"
        return out

    def content_url(self, attachment: Attachment, v: str) -> str:
        """Where an attachment's bytes are: Cloud's content endpoint, Data Center's servlet."""
        if self.site.flavour == "cloud":
            return f"{self.site.base_url}/rest/api/{v}/attachment/content/{attachment.id}"
        name = quote(attachment.filename, safe="")
        return f"{self.site.base_url}/secure/attachment/{attachment.id}/{name}"

    def field_json(self, issue: Issue, v: str) -> list[dict[str, Any]]:
        """``fields.attachment``: every attachment of the issue, oldest first."""
        return [self.as_json(attachment, v) for attachment in issue.attachments]

    # -- the HTTP API --------------------------------------------------------------------------

    def upload(self, v: str, key: str, headers: Mapping[str, str], body: Any) -> Reply:
        """``POST /issue/{key}/attachments``: every ``file`` part attached, or none. The XSRF
        check comes first: Jira runs it before the resource, so before looking for the issue."""
        form = body if isinstance(body, FormBody) else None
        token = _header(headers, "X-Atlassian-Token").strip().lower()
        if token not in ("no-check", "nocheck"):
            return raw_reply(403, b"XSRF check failed", "text/plain;charset=UTF-8")
        issue = self.site.issue(key)
        if issue is None:
            return errors(404, "Issue does not exist or you do not have permission to see it.")
        if form is None:
            return errors(415, "The request must be multipart/form-data.")
        if form.problem:
            return errors(400, form.problem)
        if not self.enabled:
            return errors(403, "Attachments are disabled on this site.")
        if not form.parts:
            return errors(400, "No file was sent: name the file parts 'file'.")
        if len(form.parts) > MAX_FILES_PER_REQUEST:
            return errors(413, f"At most {MAX_FILES_PER_REQUEST} files can be uploaded at once.")
        too_big = [p.filename for p in form.parts if p.size > self.upload_limit]
        if too_big:
            return errors(
                413,
                f"The file '{too_big[0]}' is too large to attach: the maximum attachment "
                f"size is {self.upload_limit} bytes.",
            )
        moment = self.site.clock.stamp()
        added = [
            self._attach(issue, p.filename, p.content_type, p.path, p.size, p.sha256,
                         None, moment)
            for p in form.parts
        ]  # fmt: skip
        form.parts.clear()  # adopted: no longer the request's to discard
        return Reply(200, [self.as_json(a, v) for a in added])

    def route(
        self,
        method: str,
        v: str,
        rest: list[str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Reply | None:
        """``/attachment/...``; ``None`` for a path that is not one of them."""
        match method, rest:
            case "GET", ["meta"]:
                return Reply(200, {"enabled": self.enabled, "uploadLimit": self.upload_limit})
            case "GET", ["content", ident]:
                attachment = self._find(ident)
                if attachment is None:
                    return errors(404, _NOT_FOUND.format(ident=ident))
                if query.get("redirect", "true").lower() == "false":
                    return self._content(attachment, _header(headers, "Range"))
                return self._redirect(attachment)
            case "GET", [ident]:
                attachment = self._find(ident)
                if attachment is None:
                    return errors(404, _NOT_FOUND.format(ident=ident))
                return Reply(200, self.as_json(attachment, v, metadata=True))
            case "DELETE", [ident]:
                attachment = self._find(ident)
                if attachment is None:
                    return errors(404, _NOT_FOUND.format(ident=ident))
                caller = self.site.caller
                if caller != attachment.author and caller not in self.site.admins:
                    return errors(
                        403, "You do not have permission to delete attachments of other people."
                    )
                self.remove(attachment)
                return Reply(204)
        return None

    def secure(self, rest: list[str]) -> Reply:
        """``/secure/attachment/{id}/{filename}``: the bytes, when the name matches too."""
        attachment = self._find(rest[0]) if len(rest) == 2 else None
        if attachment is None or rest[1] != attachment.filename:
            return errors(404, "The attachment does not exist.")
        return self._content(attachment)

    def media(self, rest: list[str], query: Mapping[str, str]) -> Reply:
        """``/media/file/{mediaId}/binary?token=...``: the redirect's target, signed by its
        token alone (a client must not send its Jira credentials to another host)."""
        ident = self.files.tokens.get(query.get("token", ""))
        attachment = self.by_id.get(ident) if ident is not None else None
        if attachment is None or rest != [attachment.media_id, "binary"]:
            return errors(401, "The media token is missing, expired or not for this file.")
        return self._content(attachment)

    def _content(self, attachment: Attachment, wanted: str = "") -> Reply:
        """The bytes, or (``wanted``: a ``Range`` header, only where Jira documents one) a
        ``206`` with the range, ``416`` outside the file, ``400`` malformed."""
        name = quote(attachment.filename, safe="")
        headers = {
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            "Accept-Ranges": "bytes",
        }
        try:
            span = byte_range(wanted, attachment.size) if wanted else None
        except ValueError as error:
            return errors(400, str(error))
        if span == ():
            return Reply(
                416,
                {"errorMessages": ["The range is not satisfiable."], "errors": {}},
                {"Content-Range": f"bytes */{attachment.size}"},
            )
        stream = attachment.path.open("rb")
        if not span:
            return raw_reply(200, stream, attachment.mime_type, headers)
        first, last = span
        stream.seek(first)
        headers["Content-Range"] = f"bytes {first}-{last}/{attachment.size}"
        return raw_reply(206, stream, attachment.mime_type, headers, length=last - first + 1)

    def _redirect(self, attachment: Attachment) -> Reply:
        query = urlencode(
            {
                "token": self.files.token_for(attachment.id),
                "client": "jira-sim",
                "dl": "true",
                "name": attachment.filename,
            }
        )
        where = f"{self.site.base_url}/media/file/{attachment.media_id}/binary?{query}"
        return Reply(303, None, {"Location": where})

    def _find(self, ident: str) -> Attachment | None:
        return self.by_id.get(int(ident)) if ident.isdigit() else None


def byte_range(header: str, size: int) -> tuple[int, int] | tuple[()] | None:
    """The first and last byte a ``Range`` header asks of ``size`` bytes (RFC 9110, section
    14.1.2): ``()`` when none of them exists (416); ``None`` for a header the simulator ignores,
    as RFC 9110 allows (several ranges: the whole file is sent). Malformed: ``ValueError``."""
    unit, _, ranges = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not ranges.strip():
        raise ValueError(f"The Range header {header!r} is malformed: expected bytes=first-last.")
    if "," in ranges:
        return None
    first_text, dash, last_text = (part.strip() for part in ranges.partition("-"))
    if not dash or not (first_text or last_text) or not (first_text + last_text).isdigit():
        raise ValueError(f"The Range header {header!r} is malformed: expected bytes=first-last.")
    if not first_text:  # a suffix: the last N bytes
        suffix = int(last_text)
        return (max(0, size - suffix), size - 1) if suffix and size else ()
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first > last:
        if last_text and int(last_text) < first:
            raise ValueError(f"The Range header {header!r} is malformed: last before first.")
        return ()
    return first, last


def _header(headers: Mapping[str, str], name: str) -> str:
    """A request header by name in any case (RFC 9110, section 5.1)."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")
