"""ServiceNow's Attachment API on the simulator: files on records, their metadata and content.

What it relies on, from ServiceNow's Attachment API reference (Geneva to Australia) unless
another source is named:

- ``GET /api/now/attachment``: metadata of many, an encoded ``sysparm_query`` relative to the
  Attachment [sys_attachment] table (invalid parts ignored), ``sysparm_limit`` (default 10000)
  and ``sysparm_offset``, ``X-Total-Count`` and a ``Link`` header (unless
  ``sysparm_suppress_pagination_header``), as the Table API pages.
- ``GET /api/now/attachment/{sys_id}``: ``{"result": {...}}``, every value a string:
  ``file_name``, ``content_type``, ``size_bytes``, ``size_compressed``, ``compressed``,
  ``table_name``, ``table_sys_id``, ``download_link`` (``.../attachment/{sys_id}/file``),
  ``hash``, ``state``, ``image_height``/``image_width``/``average_image_color``, ``sys_*``;
  ``404`` when it does not exist or the user cannot read it.
- ``GET /api/now/attachment/{sys_id}/file``: the bytes with the ``Content-Type`` stored at
  upload; the metadata also rides in ``X-Attachment-Metadata`` (JSON).
- ``POST /api/now/attachment/file?table_name=&table_sys_id=&file_name=``: the raw body is the
  file, its ``Content-Type`` header the file's type (mandatory); ``201`` with ``Location``;
  ``400`` when a mandatory parameter is missing; ``404`` when the record does not exist or the
  user cannot reach it.
- ``POST /api/now/attachment/upload``: ``multipart/form-data`` whose earlier parts carry
  ``table_name`` and ``table_sys_id`` and whose *final* part is the file, its type given in
  that part (the docs: "ensure the file content is contained in the final part").
- ``DELETE /api/now/attachment/{sys_id}``: ``204``; ``404`` unknown.
- ``com.glide.attachment.max_size`` (MB, default 1024) and ``glide.attachment.extensions`` (the
  *allowed* extensions, comma-separated; empty allows all) are respected by the API.
- ``hash``: a SHA-256 of the content, hex (ServiceNow's "Upload attachments for encryption"
  page, Australia: "The hash field stores a SHA-256 fingerprint of an attachment's content").
  Older third-party descriptions (Okta's ServiceNow connector) call it a 128-bit, 32-hex-digit
  value: an instance on an old release may answer MD5-length hashes.
- The record the file goes on is *not* updated: its ``sys_updated_on`` and ``sys_mod_count``
  stay as they were (the docs describe an ``attachment.uploaded`` event, no write of the
  record), so a reader polling records by ``sys_updated_on`` does not see new attachments; it
  must ask the Attachment API (``sys_created_on`` of sys_attachment).

Modelled, not documented: the status of a refusal for size or extension (the docs only say the
API "respects" the properties): ``400`` with ServiceNow's error shape, naming the property.

Content is kept in one file per attachment in a temporary directory: an upload's body is
spooled to disk by the HTTP handler as it arrives and the file adopted as it is (raw uploads)
or cut out of the multipart body a block at a time (``multipart``'s parser); downloads are
streamed from the file. ``size_compressed`` is the zlib-compressed size, computed on the way.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import shutil
import tempfile
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import multipart

if TYPE_CHECKING:
    from .server import ServiceNowSimulator

__all__ = ["AttachmentSettings", "Attachments", "Refusal", "Upload"]

_BLOCK: Final = 1 << 20
_TABLE: Final = "sys_attachment"


class Refusal(Exception):
    """An attachment request refused: HTTP ``status``, ServiceNow's message and detail."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


@dataclass
class AttachmentSettings:
    """The instance properties the Attachment API respects, and who may not attach."""

    #: ``com.glide.attachment.max_size``, in MB (the default, 1024).
    max_size_mb: float = 1024
    #: ``glide.attachment.extensions``: the extensions allowed (lower case, no dot); empty
    #: allows every extension.
    extensions: set[str] = field(default_factory=set)
    #: Users without the roles to create sys_attachment records (an ACL refuses them).
    denied: set[str] = field(default_factory=set)


@dataclass
class Upload:
    """A request body spooled to ``path`` by the HTTP handler, its ``Content-Type``."""

    path: Path
    content_type: str


class Attachments:
    """The instance's attachments: metadata as ``sys_attachment`` records, content on disk."""

    def __init__(self, sim: ServiceNowSimulator) -> None:
        self.sim = sim
        self.settings = AttachmentSettings()
        self._directory: Path | None = None

    @property
    def directory(self) -> Path:
        """The store's directory, made when first needed (most simulators never see a file)
        and removed by :meth:`close` or, at the latest, when the simulator is collected."""
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="snow-sim-attachments-"))
            weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        return self._directory

    def close(self) -> None:
        """Remove every file."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def path_of(self, sys_id: str) -> Path:
        """Where an attachment's bytes are."""
        return self.directory / sys_id

    def spool(self) -> IO[bytes]:
        """A new file in the store for a request body on its way in."""
        return tempfile.NamedTemporaryFile(dir=self.directory, prefix="body-", delete=False)

    # -- writes ----------------------------------------------------------------------------

    def attach(
        self,
        table: str,
        table_sys_id: str,
        file_name: str,
        content: bytes | IO[bytes],
        content_type: str = "",
        *,
        user: str | None = None,
    ) -> str:
        """Attach a file to a record, as a person in the UI would; the attachment's sys_id.
        ``content`` is copied into the store a block at a time. Size and extension are
        checked as the API checks them."""
        with self.spool() as target:
            if isinstance(content, bytes):
                target.write(content)
            else:
                shutil.copyfileobj(content, target, _BLOCK)
        return self.adopt(table, table_sys_id, file_name, Path(target.name), content_type, user)

    def adopt(
        self,
        table: str,
        table_sys_id: str,
        file_name: str,
        path: Path,
        content_type: str,
        user: str | None = None,
    ) -> str:
        """Attach the file at ``path``, a file of the store that is moved, not copied (or
        removed when refused)."""
        user = user or self.sim.username
        try:
            with self.sim.lock:
                self._check_target(table, table_sys_id, file_name, user)
            digest, size, compressed = _measure(path)
            limit = int(self.settings.max_size_mb * 1024 * 1024)
            if size > limit:
                raise Refusal(
                    400,
                    "Failed to create the attachment",
                    f"The file is {size} bytes; com.glide.attachment.max_size allows {limit}",
                )
            guessed = mimetypes.guess_type(file_name, strict=False)[0]
            values = {
                "file_name": file_name,
                "content_type": content_type or guessed or "application/octet-stream",
                "size_bytes": str(size),
                "size_compressed": str(compressed),
                "table_name": table,
                "table_sys_id": table_sys_id,
                "hash": digest,
            }
            with self.sim.lock:
                self._check_target(table, table_sys_id, file_name, user)  # it may have gone
                sys_id = self.sim.insert(_TABLE, values, user=user, rules=False)
                path.replace(self.path_of(sys_id))
            return sys_id
        finally:
            path.unlink(missing_ok=True)

    def seed(self, table: str, table_sys_id: str, count: int, *, size: int = 1024) -> list[str]:
        """``count`` text files of ``size`` bytes on a record (tests and benchmarks)."""
        made = []
        for n in range(count):
            line = f"{table_sys_id} attachment {n}\n".encode()
            content = (line * (size // len(line) + 1))[:size]
            made.append(self.attach(table, table_sys_id, f"note-{n}.txt", content, "text/plain"))
        return made

    def delete(self, sys_id: str) -> None:
        """Remove an attachment and its bytes."""
        with self.sim.lock:
            self.sim.delete(_TABLE, sys_id)
            self.path_of(sys_id).unlink(missing_ok=True)

    def _check_target(self, table: str, table_sys_id: str, file_name: str, user: str) -> None:
        if user in self.settings.denied:
            raise Refusal(403, "Operation Failed", "ACL Exception Insert Failed")
        if table not in self.sim.tables or table == _TABLE:
            raise Refusal(400, f"Invalid table {table}", "")
        if table_sys_id not in self.sim.tables[table].records:
            raise Refusal(
                404, "Record doesn't exist", f"Record {table}:{table_sys_id} doesn't exist"
            )
        allowed = self.settings.extensions
        extension = file_name.rpartition(".")[2].lower() if "." in file_name else ""
        if allowed and extension not in allowed:
            raise Refusal(
                400,
                "Failed to create the attachment",
                f"The extension '{extension}' is not in glide.attachment.extensions",
            )

    # -- the HTTP API ----------------------------------------------------------------------

    def post_file(self, params: Mapping[str, str], body: Upload | None, user: str) -> str:
        """``POST /attachment/file``: the raw body is the file."""
        missing = [n for n in ("table_name", "table_sys_id", "file_name") if not params.get(n)]
        if missing:
            raise Refusal(400, "Missing mandatory parameters", ", ".join(missing))
        if body is None or not body.content_type:
            raise Refusal(400, "Missing the Content-Type header", "It gives the file's type")
        return self.adopt(
            params["table_name"],
            params["table_sys_id"],
            params["file_name"],
            body.path,
            body.content_type.split(";")[0].strip(),
            user,
        )

    def post_upload(self, body: Upload | None, user: str) -> str:
        """``POST /attachment/upload``: form fields first, the file in the final part."""
        if body is None or not body.content_type.lower().startswith("multipart/form-data"):
            raise Refusal(400, "Request is not multipart/form-data", "")
        _, options = multipart.parse_options_header(body.content_type)
        fields: dict[str, str] = {}
        with body.path.open("rb") as stream:
            try:
                parser = multipart.MultipartParser(
                    stream, options.get("boundary", ""), body.path.stat().st_size
                )
                parts = list(parser)
            except multipart.MultipartError as error:
                raise Refusal(400, "Malformed multipart request", str(error)) from None
            try:
                files = [p for p in parts if p.filename]
                for part in parts:
                    if not part.filename:
                        fields[part.name] = part.value
                if not files or parts[-1] is not files[-1]:
                    raise Refusal(400, "The file must be the final part of the request", "")
                missing = [n for n in ("table_name", "table_sys_id") if not fields.get(n)]
                if missing:
                    raise Refusal(400, "Missing mandatory parameters", ", ".join(missing))
                last = files[-1]
                with self.spool() as target:
                    pass  # only a name in the store: save_as writes the part there
                last.save_as(target.name)
                kind = (last.content_type or "").split(";")[0].strip()
            finally:
                for part in parts:
                    part.close()
        return self.adopt(
            fields["table_name"],
            fields["table_sys_id"],
            last.filename,
            Path(target.name),
            kind,
            user,
        )

    def metadata(self, sys_id: str) -> dict[str, Any]:
        """An attachment as the API shows it; a 404 refusal when there is none."""
        with self.sim.lock:
            record = self.sim.tables[_TABLE].records.get(sys_id)
            if record is None:
                raise Refusal(404, "Record doesn't exist", f"No attachment {sys_id}")
            shown = dict(record)
        shown["download_link"] = f"{self.sim.base_url}/api/now/attachment/{sys_id}/file"
        return shown

    def download(self, sys_id: str) -> tuple[IO[bytes], dict[str, str]]:
        """The file to stream (open: a delete meanwhile does not cut it short) and the
        answer's headers."""
        with self.sim.lock:
            shown = self.metadata(sys_id)
            stream = self.path_of(sys_id).open("rb")
        headers = {
            "Content-Type": shown["content_type"],
            "X-Attachment-Metadata": json.dumps(shown, separators=(",", ":")),
        }
        return stream, headers


def _measure(path: Path) -> tuple[str, int, int]:
    """SHA-256 (hex), size and zlib-compressed size of a file, read a block at a time."""
    digest = hashlib.sha256()
    squeeze = zlib.compressobj(1)
    size = compressed = 0
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
            size += len(block)
            compressed += len(squeeze.compress(block))
    compressed += len(squeeze.flush())
    return digest.hexdigest(), size, compressed
