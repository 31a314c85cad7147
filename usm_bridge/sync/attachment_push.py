"""Outbound files: a call's attachments written to its record in a target tool, exactly once.

The router puts the files of a call on the calls linked to it (:meth:`.router.Router.route`);
each such file keeps the ``source`` it can be read from (another tool's copy). When the outbox
writes a call to its target (a create, then an update; every update), :meth:`FilePusher.push`
writes the files whose ``source`` is not in the target yet:

1. the target's policy (:func:`usm_bridge.attachments.may_send`) refuses it, or the target's
   connector does not carry attachments: the file is marked ``refused`` on the call (it could
   not travel: the conformance report counts it), with a ``push`` dead letter and a note;
2. the target record's files are listed (:meth:`~usm_bridge.connector.Connector.
   list_attachments`) and the identity looked for: by ``sha256`` where the tool states it, else
   by name and size, then the candidates' content hashed. Found: an upload before a crash (or a
   lost answer) made it, and it is recorded, not written again;
3. else it is written with :meth:`~usm_bridge.connector.Connector.put_attachment` from the
   copy the intake kept (:mod:`usm_bridge.attachments.kept`, checked against its SHA-256), or,
   when none is kept, read from the source's tool (:meth:`~usm_bridge.connector.Connector.
   open_attachment`) into a spool file, checked, kept for the next target and written from
   there: a file bound for N tools is downloaded once. A download from the source that fails
   for a reason that may pass raises :class:`~usm_bridge.errors.SourceFileError`, naming the
   source: the outbox retries the item later without holding the target's other writes back;
4. the copy is recorded at once (the call's file gets the target's copy as ``source``), so
   reading the record back knows it by its id, and a retry of the item skips it.

A file the target refuses for good (413) is marked refused, like 1. A failure that may pass
raises, and the outbox item is retried (listing first, so nothing is written twice).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..attachments import AttachmentPolicy, SpooledFile, may_send, safe_file_name, spool
from ..attachments.kept import KeptFiles, file_chunks
from ..connector import Connector, RemoteAttachment
from ..errors import (
    AttachmentTooLarge,
    PermanentRemoteError,
    RetriableRemoteError,
    SourceFileError,
)
from ..model import Attachment, AttachmentSource, Call
from ..store import Store
from .call_files import NotTravelled, all_attachments, record_refusal, refusal_of
from .calls import with_changes

__all__ = ["FilePusher", "files_to_push"]

log = logging.getLogger(__name__)


def files_to_push(call: Call, target: str) -> list[Attachment]:
    """The files of ``call`` that travel and have no copy in ``target`` yet."""
    return [
        a
        for a in all_attachments(call)
        if a.refused is None and (a.source is None or a.source.instance != target)
    ]


def _replaced(call: Call, old: Attachment, new: Attachment) -> Call:
    """``call`` with its file ``old`` (by identity and source) replaced by ``new``."""

    def swap(files: list[Attachment]) -> list[Attachment]:
        return [
            new if (a.identity, a.source, a.refused) == (old.identity, old.source, None) else a
            for a in files
        ]

    comments = [c.model_copy(update={"attachments": swap(c.attachments)}) for c in call.comments]
    return with_changes(call, attachments=swap(call.attachments), comments=comments)


class FilePusher:
    """Writes a call's files to its target record (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        connector: Callable[[str], Connector],
        spool_dir: Path,
        kept: KeptFiles | None = None,
    ) -> None:
        self.store = store
        self._connector = connector
        self.spool_dir = spool_dir
        #: The files the intake kept, read instead of the source; ``None``: always the source.
        self.kept = kept

    def push(
        self, call: Call, target: str, connector: Connector, policy: AttachmentPolicy,
        remote_id: str,
    ) -> int:  # fmt: skip
        """Write ``call``'s pending files to ``remote_id`` in ``target`` under its ``policy``;
        the number written (or found already there).

        :raises RemoteError: a failure that may pass (the caller retries the item).
        """
        pending = files_to_push(call, target)
        if not pending:
            return 0
        listed: list[RemoteAttachment] | None = None
        done = 0
        for attachment in pending:
            refused = self._refused(attachment, target, connector, policy, call.id)
            if refused is not None:
                self._mark_refused(call.id, attachment, target, *refused)
                continue
            if listed is None:
                listed = connector.list_attachments(remote_id)
            copy = self._copy_in(connector, listed, attachment)
            if copy is None:
                try:
                    copy = self._upload(connector, remote_id, attachment)
                except PermanentRemoteError as exc:
                    self._mark_refused(call.id, attachment, target, "failed",
                                       f"{attachment.name}: {exc}")  # fmt: skip
                    continue
                if copy is None:
                    self._mark_refused(
                        call.id, attachment, target, "failed",
                        f"{attachment.name}: its content changed where it was read from",
                    )  # fmt: skip
                    continue
            self._record(call.id, attachment, AttachmentSource(instance=target, remote_id=copy))
            done += 1
        return done

    def _refused(
        self,
        attachment: Attachment,
        target: str,
        connector: Connector,
        policy: AttachmentPolicy,
        call_id: str,
    ) -> tuple[NotTravelled, str] | None:
        """Why the file is not to be written (before anything is read), or ``None``."""
        if not connector.carries_attachments:
            why = f"{attachment.name}: {target} ({connector.kind}) does not carry attachments"
            return "not_carried", why
        if attachment.source is None:
            return "failed", f"{attachment.name}: no copy of it is known to read it from"
        refusal = may_send(policy, attachment, instance=target, call_id=call_id)
        return ("refused", refusal.reason) if refusal is not None else None

    def _copy_in(
        self, connector: Connector, listed: list[RemoteAttachment], attachment: Attachment
    ) -> str | None:
        """The id of a copy of ``attachment`` the target record holds already, if any."""
        for item in listed:
            if item.sha256 is not None:
                if (
                    item.sha256 == attachment.sha256
                    and safe_file_name(item.name) == attachment.name
                ):
                    return item.remote_id
                continue
            if safe_file_name(item.name) != attachment.name or item.size not in (
                None, attachment.size,
            ):  # fmt: skip
                continue
            digest = hashlib.sha256()
            with connector.open_attachment(item.remote_id) as chunks:
                for chunk in chunks:
                    digest.update(chunk)
            if digest.hexdigest() == attachment.sha256:
                return item.remote_id
        return None

    def _upload(self, connector: Connector, remote_id: str, attachment: Attachment) -> str | None:
        """Write the file from its kept copy (:mod:`usm_bridge.attachments.kept`), else read it
        from its source into a spool file, check it and write it from there (keeping it for
        the next target); ``None`` when the source's content is not the file's any more.

        :raises SourceFileError: reading the source failed for a reason that may pass.
        """
        kept = self._kept_copy(attachment)
        if kept is not None:
            with kept:
                return connector.put_attachment(
                    remote_id, attachment.name, attachment.media_type, attachment.size,
                    file_chunks(kept),
                )  # fmt: skip
        spooled = self._from_source(attachment)
        if spooled is None:
            return None
        with spooled:
            if spooled.sha256 != attachment.sha256:
                return None
            # Open before it is kept (moved): this handle reads it whatever happens to the name.
            with spooled.path.open("rb") as file:
                if self.kept is not None:
                    self.kept.keep(spooled)
                return connector.put_attachment(
                    remote_id, attachment.name, attachment.media_type, spooled.size,
                    file_chunks(file),
                )  # fmt: skip

    def _kept_copy(self, attachment: Attachment) -> BinaryIO | None:
        if self.kept is None or attachment.sha256 is None:
            return None
        return self.kept.open(attachment.sha256, attachment.size)

    def _from_source(self, attachment: Attachment) -> SpooledFile | None:
        """The file read from its source into a spool file; ``None`` past its size (its
        content changed there).

        :raises SourceFileError: naming the source, for a failure that may pass: the outbox
            then retries this item later and goes on with the target's others (the target
            answered; a cut download is no reason to hold its writes back).
        """
        assert attachment.source is not None
        source = attachment.source.instance
        try:
            with self._connector(source).open_attachment(attachment.source.remote_id) as chunks:
                return spool(chunks, directory=self.spool_dir, cap=attachment.size)
        except AttachmentTooLarge:
            return None
        except RetriableRemoteError as exc:
            raise SourceFileError(attachment.name, source, exc) from exc

    def _record(self, call_id: str, attachment: Attachment, copy: AttachmentSource) -> None:
        with self.store.begin() as tx:
            stored = tx.get_call(call_id)
            if stored is None:
                return
            moved = attachment.model_copy(update={"source": copy, "same_in_source": []})
            tx.upsert_call(_replaced(stored.call, attachment, moved), actor="bridge")

    def _mark_refused(
        self, call_id: str, attachment: Attachment, target: str, why: NotTravelled, reason: str
    ) -> None:
        """The file listed as refused on the call (so it is not tried again), its dead letter
        and its note."""
        log.warning("attachment %s not written to %s: %s", attachment.name, target, reason)
        refusal = refusal_of(attachment, target, call_id, reason)
        with self.store.begin() as tx:
            stored = tx.get_call(call_id)
            if stored is None:
                return
            refused = attachment.model_copy(update={"refused": refusal.reason})
            tx.upsert_call(_replaced(stored.call, attachment, refused), actor="bridge")
            record_refusal(tx, refusal, home=target, why=why)
