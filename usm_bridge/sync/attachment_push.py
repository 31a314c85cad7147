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
   lost answer) made it, and it is recorded, not written again. A candidate that cannot be
   read for good (deleted since the listing, refused, a URL the connector will not follow) is
   not taken for the bridge's copy: the file is written, and the item's update or comment goes
   on (one that may pass, a 5xx or a cut download, retries the item as any write does);
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

A comment's files travel with it: the router names them in the comment item's payload
(``files``, their identities), and while that item is pending :meth:`FilePusher.push` holds
them back (:meth:`FilePusher.held_back`). The comment item writes them: :meth:`FilePusher.
for_comment` marks the refused, records the ones the record holds already (listing first, as
above) and hands back the rest, which :meth:`FilePusher.outgoing` spools and checks, for the
connector's :meth:`~usm_bridge.connector.Connector.add_comment_with_files` to write with the
comment in the tool's way (uploads then the comment naming them; one mail); :meth:`FilePusher.
settle` records what it wrote. A mailbox's opening mail carries the call's files the same way
(:meth:`~usm_bridge.connector.Connector.create_with_files`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from ..attachments import AttachmentPolicy, SpooledFile, may_send, safe_file_name, spool
from ..attachments.kept import KeptFiles, file_chunks
from ..connector import (
    CommentFile,
    Connector,
    FileWrite,
    OutgoingFile,
    RemoteAttachment,
    RereadableChunks,
)
from ..errors import (
    AttachmentTooLarge,
    PermanentRemoteError,
    RetriableRemoteError,
    SourceFileError,
)
from ..model import Attachment, AttachmentSource, Call
from ..store import OutboxOperation, OutboxStatus, Store
from .call_files import NotTravelled, all_attachments, record_refusal, refusal_of
from .calls import with_changes

__all__ = ["FilePusher", "Identity", "comment_files", "files_to_push"]

#: A file's identity (SHA-256, name), as a comment item's payload lists its files.
Identity = tuple[str | None, str]


def comment_files(payload: object) -> set[Identity]:
    """The identities a comment item's payload names as its files (``files``: pairs of
    SHA-256 and name); malformed entries are passed over."""
    listed = payload.get("files") if isinstance(payload, dict) else None
    return {
        (str(pair[0]), str(pair[1]))
        for pair in listed if isinstance(listed, list)
        if isinstance(pair, list) and len(pair) == 2
    } if isinstance(listed, list) else set()  # fmt: skip


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
        if pending:
            held = self.held_back(call.id, target)
            pending = [a for a in pending if a.identity not in held]
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

    def held_back(self, call_id: str, target: str) -> set[Identity]:
        """The files of the call's comment items still pending for ``target``: written with
        their comment, not on their own (see the module docstring)."""
        with self.store.begin(readonly=True) as tx:
            items = tx.list_outbox(status=OutboxStatus.PENDING, instance=target, call_id=call_id)
        held: set[Identity] = set()
        for item in items:
            if item.operation is OutboxOperation.COMMENT:
                held |= self.files_of_comment(call_id, item.payload)
        return held

    def files_of_comment(self, call_id: str, payload: object) -> set[Identity]:
        """The files a comment item of ``call_id`` writes with its comment: those its payload
        names, and those its source comment holds now (a file read after its comment, in a
        later page or read, goes with it all the same while the copy is not written)."""
        wanted = comment_files(payload)
        source = payload.get("source_comment_id") if isinstance(payload, dict) else None
        if not source:
            return wanted
        with self.store.begin(readonly=True) as tx:
            seen, todo = {call_id}, [call_id]
            while todo:
                at = todo.pop()
                stored = tx.get_call(at)
                for comment in stored.call.comments if stored is not None else ():
                    if comment.id == source:
                        return wanted | {
                            a.identity for a in comment.attachments if a.refused is None
                        }
                near = [link.supplier_call_id for link in tx.suppliers_of(at)]
                upstream = tx.upstream_of(at)
                near += [upstream.upstream_call_id] if upstream is not None else []
                todo += [n for n in near if n not in seen]
                seen.update(near)
        return wanted

    def for_comment(
        self, call: Call, target: str, connector: Connector, policy: AttachmentPolicy,
        remote_id: str | None, wanted: Collection[Identity],
    ) -> tuple[list[CommentFile], list[Attachment]]:  # fmt: skip
        """The files ``wanted`` (a comment's, or a new record's with ``remote_id`` ``None``)
        that have no copy in ``target`` yet: the refused ones marked, the ones the record holds
        already recorded (named, first of the pair), the rest to write (second).

        :raises RemoteError: the listing failed for a reason that may pass.
        """
        # Those with a copy there already (written before a crash, and read back since) are
        # named too: the comment still says which files came with it.
        there = {
            a.identity: a
            for a in all_attachments(call)
            if a.identity in wanted and a.refused is None and a.source is not None
            and a.source.instance == target
        }  # fmt: skip
        named = [CommentFile(name=a.name, size=a.size) for a in there.values()]
        todo: list[Attachment] = []
        listed: list[RemoteAttachment] | None = None
        for attachment in files_to_push(call, target):
            if attachment.identity not in wanted or attachment.identity in there:
                continue
            refused = self._refused(attachment, target, connector, policy, call.id)
            if refused is not None:
                self._mark_refused(call.id, attachment, target, *refused)
                continue
            if remote_id is not None:
                if listed is None:
                    listed = connector.list_attachments(remote_id)
                copy = self._copy_in(connector, listed, attachment)
                if copy is not None:
                    self._record(call.id, attachment,
                                 AttachmentSource(instance=target, remote_id=copy))  # fmt: skip
                    named.append(CommentFile(name=attachment.name, size=attachment.size))
                    continue
            todo.append(attachment)
        return named, todo

    @contextmanager
    def outgoing(
        self, call_id: str, target: str, todo: Sequence[Attachment]
    ) -> Iterator[list[tuple[Attachment, OutgoingFile]]]:
        """Each of ``todo`` ready to write: its kept copy (:mod:`usm_bridge.attachments.
        kept`), else read from its source into a spool file, checked against its SHA-256 and
        kept for the next target; one whose content changed where it is read from is marked
        (and left out). What is open is closed when the block ends.

        :raises SourceFileError: reading a source failed for a reason that may pass.
        """
        with ExitStack() as stack:
            ready: list[tuple[Attachment, OutgoingFile]] = []
            for attachment in todo:
                file = self._readable(attachment, stack)
                if file is None:
                    self._mark_refused(
                        call_id, attachment, target, "failed",
                        f"{attachment.name}: its content changed where it was read from",
                    )  # fmt: skip
                    continue

                def chunks(file: BinaryIO = file) -> Iterator[bytes]:
                    file.seek(0)  # each call reads it anew (a mail rendered, then sent)
                    return file_chunks(file)

                assert attachment.sha256 is not None
                ready.append((attachment, OutgoingFile(
                    name=attachment.name, media_type=attachment.media_type,
                    size=attachment.size, sha256=attachment.sha256, chunks=chunks,
                )))  # fmt: skip
            yield ready

    def _readable(self, attachment: Attachment, stack: ExitStack) -> BinaryIO | None:
        """The file's content, open (closed with ``stack``): its kept copy, else its source's
        spooled, checked and kept; ``None`` when the source's content is not the file's."""
        kept = self._kept_copy(attachment)
        if kept is not None:
            return stack.enter_context(kept)
        spooled = self._from_source(attachment)
        if spooled is None:
            return None
        with spooled:
            if spooled.sha256 != attachment.sha256:
                return None
            # Open before it is kept (moved): this handle reads it whatever happens to the name.
            file = stack.enter_context(spooled.path.open("rb"))
            if self.kept is not None:
                self.kept.keep(spooled)
            return file

    def settle(
        self, call_id: str, target: str, ready: Sequence[tuple[Attachment, OutgoingFile]],
        writes: Sequence[FileWrite],
    ) -> None:  # fmt: skip
        """Record what the connector wrote of ``ready`` (:meth:`outgoing`): each copy, or the
        file refused for good. A file neither written nor refused (a record found made
        already) is left pending: the next write lists the record first."""
        for (attachment, _), write in zip(ready, writes, strict=False):
            if write.remote_id is not None:
                copy = AttachmentSource(instance=target, remote_id=write.remote_id)
                self._record(call_id, attachment, copy)
            elif write.refused is not None:
                self._mark_refused(call_id, attachment, target, "failed", write.refused)

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
            try:
                digest = _content_sha256(connector, item.remote_id)
            except PermanentRemoteError as exc:
                # Gone since the listing (404), refused (403), or a URL the connector will not
                # follow: it cannot be proved to be the bridge's copy, so it is not one. The
                # file is written as usual; at worst a record holds a copy twice (one its people
                # could not read), never an update or a comment lost for a person's file.
                log.warning("attachment %s (%s) on the target could not be read to compare it "
                            "with %s; taken for another file: %s", item.remote_id, item.name,
                            attachment.name, exc)  # fmt: skip
                continue
            if digest == attachment.sha256:
                return item.remote_id
        return None

    def _upload(self, connector: Connector, remote_id: str, attachment: Attachment) -> str | None:
        """Write the file from its kept copy (:mod:`usm_bridge.attachments.kept`), else read it
        from its source into a spool file, check it and write it from there (keeping it for
        the next target); ``None`` when the source's content is not the file's any more.

        :raises SourceFileError: reading the source failed for a reason that may pass.
        """
        with ExitStack() as stack:
            file = self._readable(attachment, stack)
            if file is None:
                return None

            def chunks() -> Iterator[bytes]:
                file.seek(0)  # each read from the start: a refused request is sent again whole
                return file_chunks(file)

            return connector.put_attachment(
                remote_id, attachment.name, attachment.media_type, attachment.size,
                RereadableChunks(chunks),
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


def _content_sha256(connector: Connector, attachment_id: str) -> str:
    """The SHA-256 of a file on the target, read from it.

    :raises RemoteError: the download failed (permanent, or for a reason that may pass).
    """
    digest = hashlib.sha256()
    with connector.open_attachment(attachment_id) as chunks:
        for chunk in chunks:
            digest.update(chunk)
    return digest.hexdigest()
