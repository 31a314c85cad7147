"""Inbound files: the files a record lists become its call's (and comments') attachments.

Called by the ingest stage between mapping a record and storing it (outside any unit of work:
a download may take long). For each :class:`~usm_bridge.connector.RemoteAttachment` of
:attr:`RawRecord.attachments <usm_bridge.connector.RawRecord.attachments>`:

- one the stored call already lists by this instance's id of it (``source``) is not read again:
  a record's files cost no download per cycle (a refused file is listed too, with its reason
  and what the refusal rested on, ``refused_under``). A file refused under a policy that
  differs from the instance's now (the mapping's ``attachments:`` section changed) is read
  again and decided afresh: one accepted now replaces the refused one and is routed as new;
  one the tool said is gone (404, 410) is not read again;
- one whose stated size is past the instance's cap is refused without a download;
- one whose id in its tool is longer than the model keeps (:data:`MAX_SOURCE_ID`; an e-mail's
  file id holds its sender's Message-ID) is refused for good, remembered by a digest of the id
  (:func:`source_id`), rather than ending every read at its record;
- any other is downloaded through :meth:`~usm_bridge.connector.Connector.open_attachment`, in
  chunks, and taken in (:func:`usm_bridge.attachments.take_in`: safe name, sniffed type,
  SHA-256, the instance's policy); one accepted is kept under its SHA-256
  (:mod:`usm_bridge.attachments.kept`) for the pushes that write it to other tools. When the
  stored call lists a file of that identity (SHA-256 and name) from elsewhere, this is the
  bridge's own copy read back (written before a crash let it record the copy): the listed
  attachment gets this copy as its ``source`` and is not new, so it is not routed again.
- one the record lists twice (the same identity under two ids) is one attachment, its other
  ids kept on it (``same_in_source``): neither is downloaded again.

The stored calls of a page's records are looked up once for the page
(:meth:`AttachmentIntake.held_calls`), not once per record.

Files the stored call lists that the record no longer does are kept: they may be waiting to be
written to this tool, and a file removed in one tool is not removed from the others.

A file tied to a comment (``comment_id``, the comment's ``remote_id``) goes on that comment,
else on the call. A download that fails for a reason that may pass (a 5xx, a broken stream)
raises: the read ends before this record, which is read again next time. One the tool says is
gone (404, 410: deleted meanwhile), or whose content its connector found unreadable without an
HTTP status (a broken MIME part), is listed as refused, with the reason, and not read again.

Any other refusal of the download (401, 403: the account may not read it; a URL the connector
will not request, :class:`~usm_bridge.errors.UntrustedURLError`) is no verdict on the file but
a mistake to fix, and it holds up nothing else: the file is listed as not read *for now*
(refused, its basis ``refused_under`` starting ``retry:`` with the status, e.g.
``retry: 403``; the reason names the status and what to check), the record is stored with its
other files and changes, and the read goes on. The file gets a dead letter with that reason
(no note on the call: it is the admin's to fix, and it may pass) and is read again: on each
later read of its record (such a refusal is never settled), and without one by
:mod:`.file_retry`, on later cycles, with a back-off. Once read, it is taken in as any file
(the policy decides), routed like a new one if it travels, and its dead letter is closed
(:func:`settle_file_letters`; so is the letter of a file refused under a policy since changed,
once it is accepted).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from ..attachments import AttachmentPolicy, decide, policy_basis, safe_file_name, take_in
from ..attachments.kept import KeptFiles
from ..attachments.sniffing import GENERIC_TYPE, normal_media_type
from ..connector import Connector, RawRecord, RemoteAttachment
from ..errors import PermanentRemoteError, UntrustedURLError
from ..mapping import Mapping as MappingFile
from ..model import Attachment, AttachmentSource, Call, Comment
from ..store import Store
from .call_files import all_attachments
from .calls import with_changes

__all__ = [
    "MAX_SAME_IN_SOURCE",
    "MAX_SOURCE_ID",
    "WAITING_BASIS",
    "AttachmentIntake",
    "carry_attachments",
    "listed_at",
    "new_files",
    "source_id",
    "waits_to_be_read",
    "with_file_replaced",
]

log = logging.getLogger(__name__)

#: The most other copies of one file on a record remembered (the model's bound): a tool holding
#: more has the rest downloaded on each read, which is all it costs.
MAX_SAME_IN_SOURCE = 100
#: The longest id of a file in its tool the model keeps (``AttachmentSource.remote_id``).
MAX_SOURCE_ID = 300
#: The statuses that say a file is gone from its tool: it is refused as not readable.
GONE = frozenset({404, 410})
#: The basis of a refusal of a file not readable (with the status, when there is one).
_GONE_BASIS = "unreadable"
#: The basis of a file not read *for now* (401, 403, a URL refused: see the module docstring),
#: followed by ``: <status>`` or ``: untrusted URL``; such a file is read again.
WAITING_BASIS = "retry"


def waits_to_be_read(attachment: Attachment) -> bool:
    """Whether ``attachment`` is a file the tool would not let the bridge read for now."""
    under = attachment.refused_under
    return attachment.refused is not None and under is not None and (
        under == WAITING_BASIS or under.startswith(f"{WAITING_BASIS}:")
    )  # fmt: skip


class AttachmentIntake:
    """Takes a record's listed files in for its call (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        connector: Callable[[str], Connector],
        mapping: Callable[[str], MappingFile],
        spool: Path,
        quarantine: Path | None = None,
        kept: KeptFiles | None = None,
    ) -> None:
        self.store = store
        self._connector = connector
        self._mapping = mapping
        self.spool = spool
        self.quarantine = quarantine
        #: Where a file taken in is kept for the pushes that send it on (``None``: not kept).
        self.kept = kept
        #: When a file not read for now is first tried again without its record's change
        #: (:mod:`.file_retry`; the engine sets it): ``None``, only on its record's reads.
        self.first_retry: Callable[[str], datetime] | None = None

    def held_calls(self, instance: str, remote_ids: Collection[str]) -> dict[str, Call]:
        """The stored calls of the records ``remote_ids`` of ``instance`` (one not stored yet is
        missing), for :meth:`attach_to`: one unit of work and one query for a page of records,
        never one per record (issue #17's statements per record on a backfill)."""
        if not remote_ids:
            return {}
        with self.store.begin(readonly=True) as tx:
            found = tx.find_calls(instance, remote_ids)
        return {remote_id: stored.call for remote_id, stored in found.items()}

    def attach(self, instance: str, record: RawRecord, call: Call) -> Call:
        """:meth:`attach_to` for a record alone, its stored call looked up here."""
        if not record.attachments:
            return call
        held = self.held_calls(instance, [record.remote_id]).get(record.remote_id)
        return self.attach_to(instance, record, call, held)

    def attach_to(self, instance: str, record: RawRecord, call: Call, held: Call | None) -> Call:
        """``call`` (as mapped from ``record``) with the files of the record the stored call
        ``held`` does not list by this instance's ids yet, taken in; the stored ones are carried
        over by :func:`carry_attachments` when the call is stored.

        :raises RemoteError: a download failed for a reason that may pass.
        :raises OSError: the spool folder cannot be written.
        """
        if not record.attachments:
            return call
        policy: AttachmentPolicy = self._mapping(instance).spec.attachments
        basis = policy_basis(policy)
        # A file not read for now is tried again when its record changed; a read of the record
        # as stored (a read's overlap) leaves it to its back-off (.file_retry).
        unchanged = (
            held is not None and record.updated is not None and record.updated <= held.updated
        )
        known = {
            remote_id
            for a in (all_attachments(held) if held is not None else [])
            if a.source is not None and a.source.instance == instance
            and (_settled(a, basis) or (unchanged and waits_to_be_read(a)))
            for remote_id in (a.source.remote_id, *a.same_in_source)
        }  # fmt: skip
        call_id = held.id if held else None
        fresh = [
            (listed, self._take(instance, record.remote_id, listed, policy, basis, call_id))
            for listed in record.attachments
            if source_id(listed.remote_id) not in known
        ]
        return _with_files(call, fresh) if fresh else call

    def read_again(
        self, instance: str, record_id: str, listed: RemoteAttachment, call_id: str
    ) -> Attachment:
        """The file ``listed`` of the record ``record_id``, listed on the stored call
        ``call_id``, read now and taken in under the instance's policy now (:mod:`.file_retry`,
        ``dead-letters retry``): accepted, refused, or again not read for now.

        :raises RemoteError: the download failed for a reason that may pass.
        :raises OSError: the spool folder cannot be written.
        """
        policy: AttachmentPolicy = self._mapping(instance).spec.attachments
        return self._take(instance, record_id, listed, policy, policy_basis(policy), call_id)

    def _take(
        self, instance: str, record_id: str, listed: RemoteAttachment,
        policy: AttachmentPolicy, basis: str, call_id: str | None,
    ) -> Attachment:  # fmt: skip
        """One listed file taken in under the instance's ``policy`` (``basis``: its digest, what a
        refusal rests on), made once per record by :meth:`attach_to`."""
        source = AttachmentSource(instance=instance, remote_id=source_id(listed.remote_id))
        if source.remote_id != listed.remote_id:
            # The store keeps ids up to MAX_SOURCE_ID characters; the tool's (an e-mail's is its
            # sender's Message-ID) is longer. Refused for good, by a stable digest of the id,
            # rather than ending every read of the instance at this record.
            name, length = safe_file_name(listed.name), len(listed.remote_id)
            why = f"{name}: not read: its id in {instance} is {length} characters, over the "
            why += f"{MAX_SOURCE_ID} kept"
            return _refused(listed, source, why, f"{_GONE_BASIS}: id too long")
        if policy.travel and listed.size is not None and listed.size > policy.max_size:
            # The tool says so before a byte is read: not downloaded at all.
            reason = decide(
                policy, name=safe_file_name(listed.name), size=listed.size, media_type=GENERIC_TYPE
            )
            return _refused(listed, source, reason.reason or "too large", basis)
        try:
            # Travel off: nothing is read, take_in refuses it by the policy alone.
            with (
                self._connector(instance).open_attachment(listed.remote_id)
                if policy.travel
                else nullcontext(iter(()))
            ) as chunks, take_in(
                chunks, name=listed.name, declared_type=listed.declared_type, policy=policy,
                instance=instance, remote_id=listed.remote_id, spool_dir=self.spool,
                inline=listed.inline, call_id=call_id, quarantine_dir=self.quarantine,
            ) as intake:  # fmt: skip
                if intake.spooled is not None and self.kept is not None:
                    self.kept.keep(intake.spooled)  # moved there: the block's end deletes nothing
                taken = intake.attachment
                if taken.refused is None:
                    return taken
                return taken.model_copy(update={"refused_under": basis})
        except PermanentRemoteError as exc:
            if not _gone(exc):
                return _waiting(instance, record_id, listed, source, exc)
            log.warning("attachment %s of %s not readable: %s", listed.remote_id, instance, exc)
            basis = f"{_GONE_BASIS}: {exc.status}" if exc.status else _GONE_BASIS
            name = safe_file_name(listed.name)
            return _refused(listed, source, f"{name}: not readable: {exc}", basis)


def source_id(remote_id: str) -> str:
    """The id a file listed by a tool is remembered by: the tool's own, or, past the
    :data:`MAX_SOURCE_ID` characters the model keeps, ``sha256:`` and the digest of it (the
    same on every read, so the file is recognised and not taken in again)."""
    if len(remote_id) <= MAX_SOURCE_ID:
        return remote_id
    return "sha256:" + hashlib.sha256(remote_id.encode("utf-8", "surrogatepass")).hexdigest()


def _waiting(
    instance: str, record_id: str, listed: RemoteAttachment, source: AttachmentSource,
    exc: PermanentRemoteError,
) -> Attachment:  # fmt: skip
    """A file whose download the tool refused for a reason to fix: listed as not read for now
    (see the module docstring), with what to check."""
    if isinstance(exc, UntrustedURLError):
        status, check = "untrusted URL", "the instance's base_url and the URL the tool gives"
    else:
        status = str(exc.status) if exc.status is not None else "refused"
        check = "what the bridge's account may read in the tool (its permissions on the record)"
    where = f"attachment {listed.remote_id} ({listed.name!r}) of {record_id}"
    log.error("%s at %s could not be read (%s): %s; the record is stored and the file read "
              "again later (check %s)", where, instance, status, exc, check)  # fmt: skip
    reason = (
        f"{safe_file_name(listed.name)}: not read for now: the tool answered {status} ({exc}); "
        f"check {check}; "
        "it is read again on the record's next change and on later cycles"
    )
    waiting = _refused(listed, source, reason, f"{WAITING_BASIS}: {status}")
    # What a later read needs that the tool said: its type, whether it is shown inline.
    return waiting.model_copy(
        update={"declared_type": normal_media_type(listed.declared_type), "inline": listed.inline}
    )


def _gone(error: PermanentRemoteError) -> bool:
    """Whether ``error`` says the file cannot be had, ever: the tool says it is gone (404,
    410), or the connector found its content unreadable without asking anything (no HTTP
    status: a broken MIME part), except a URL it would not request (a setting to fix)."""
    if error.status is not None:
        return error.status in GONE
    return not isinstance(error, UntrustedURLError)


def _settled(attachment: Attachment, basis: str) -> bool:
    """Whether a file listed from this instance stays as it is, not read again: one that
    travels, one the tool said is gone, one refused under the policy ``basis`` (the
    instance's now); a refusal under another policy (or an unknown one), and a file not read
    for now (its basis ``retry: ...``), are read again."""
    under = attachment.refused_under
    return attachment.refused is None or under == basis or (
        under is not None and under.startswith(_GONE_BASIS)
    )  # fmt: skip


def _refused(
    listed: RemoteAttachment, source: AttachmentSource, reason: str, basis: str
) -> Attachment:
    """A file refused before a byte of it was read, listed as the tool named it."""
    return Attachment(
        name=safe_file_name(listed.name), media_type=GENERIC_TYPE, size=listed.size or 0,
        sha256=None, source=source, origin=source.instance, refused=reason[:1000],
        refused_under=basis,
    )  # fmt: skip


def _with_files(call: Call, fresh: list[tuple[RemoteAttachment, Attachment]]) -> Call:
    """``call`` with the files taken in, each on its comment where the tool ties them."""
    comment_ids = {c.remote_id for c in call.comments if c.remote_id}
    by_comment: dict[str, list[Attachment]] = {}
    on_call = list(call.attachments)
    for listed, attachment in fresh:
        if listed.comment_id is not None and listed.comment_id in comment_ids:
            by_comment.setdefault(listed.comment_id, []).append(attachment)
        else:
            on_call.append(attachment)
    comments = [
        _add(c, by_comment[c.remote_id]) if c.remote_id in by_comment else c for c in call.comments
    ]
    return with_changes(call, attachments=_unique(on_call), comments=comments)


def _add(comment: Comment, files: list[Attachment]) -> Comment:
    return comment.model_copy(update={"attachments": _unique([*comment.attachments, *files])})


def _unique(files: list[Attachment]) -> list[Attachment]:
    """One attachment per identity: a tool holding two copies of a file lists it once, the
    other copies' ids kept on it (:attr:`~usm_bridge.model.Attachment.same_in_source`) so that
    neither is downloaded again."""
    kept: dict[tuple[str | None, str], int] = {}
    out: list[Attachment] = []
    for a in files:
        at = kept.get(a.identity) if a.refused is None else None
        if at is None:
            if a.refused is None:
                kept[a.identity] = len(out)
            out.append(a)
        else:
            out[at] = _also(out[at], a)
    return out


def _also(held: Attachment, copy: Attachment) -> Attachment:
    """``held`` knowing ``copy`` (the same file) as another of its copies in its instance, when
    it is one there it does not know yet."""
    if held.source is None or copy.source is None or copy.source.instance != held.source.instance:
        return held
    ids = [*held.same_in_source, copy.source.remote_id, *copy.same_in_source]
    known = [i for i in dict.fromkeys(ids) if i != held.source.remote_id][:MAX_SAME_IN_SOURCE]
    if known == held.same_in_source:
        return held
    return held.model_copy(update={"same_in_source": known})


def _carried(read: list[Attachment], held: list[Attachment]) -> list[Attachment]:
    by_identity = {a.identity: a for a in read if a.refused is None}
    by_place = {_where(a): a for a in read if a.source is not None}
    # Only a file that travels stops a copy read from being new: one refused (under a policy
    # since changed) is replaced by a copy of it accepted now.
    travels = {a.identity for a in held if a.refused is None}
    held_sources = {_where(a) for a in held}
    replaced: set[tuple[str, str] | None] = set()  # the places of copies read put in place
    out = []
    for h in held:
        if h.refused is not None:
            # Read again (its policy changed): decided afresh, the new decision replaces it;
            # or the same file read elsewhere on the record is accepted now.
            again = by_place.get(_where(h)) or by_identity.get(h.identity)
            if again is None:
                out.append(h)
            elif _where(again) not in replaced:  # (a second refused copy: merged in the first)
                out.append(_also(again, h) if again.refused is None else again)
                replaced.add(_where(again))
            continue
        copy = by_identity.get(h.identity)
        if copy is None or copy.source is None:
            out.append(h)
        elif h.source is None or h.source.instance != copy.source.instance:
            # The bridge's own copy read back: the same file, now known in this tool too.
            moved = {"source": copy.source, "same_in_source": copy.same_in_source}
            out.append(h.model_copy(update=moved))
        else:
            # Read here before: another copy of it on the record is known from now on.
            out.append(_also(h, copy))
    out += [
        a
        for a in read
        if _where(a) not in replaced and _where(a) not in held_sources
        and (a.refused is not None or a.identity not in travels)
    ]  # fmt: skip
    return out


def _where(attachment: Attachment) -> tuple[str, str] | None:
    source = attachment.source
    return (source.instance, source.remote_id) if source is not None else None


def carry_attachments(read: Call, held: Call) -> Call:
    """The call as read, with the files the stored ``held`` call lists (see the module
    docstring): a file read that is one of them by identity moves that one to its copy here
    (the bridge's own copy read back is no new file); the others read are new."""
    if not all_attachments(held) and not all_attachments(read):
        return read
    held_comments = {c.remote_id: c for c in held.comments if c.remote_id}
    comments = [
        c.model_copy(
            update={"attachments": _carried(c.attachments, held_comments[c.remote_id].attachments)}
        )
        if c.remote_id in held_comments
        else c
        for c in read.comments
    ]
    return with_changes(read, attachments=_carried(read.attachments, held.attachments),
                        comments=comments)  # fmt: skip


def new_files(call: Call, held: Call | None, instance: str) -> list[Attachment]:
    """The files of ``call`` read from ``instance`` that ``held`` did not list: what a person
    added there (refused ones included, for their note and dead letter), and a file ``held``
    listed as refused that travels now (its policy changed: it is routed as new)."""
    # Whether it waits counts: a file not read for now, read again and refused on other
    # grounds (the policy by its stated size, gone), is a new refusal, for its note and letter.
    before: set[tuple[tuple[str, str] | None, tuple[str | None, str], bool, bool]] = set()
    travelled: set[tuple[str | None, str]] = set()
    for a in all_attachments(held) if held is not None else ():
        before.add((_where(a), a.identity, a.refused is None, waits_to_be_read(a)))
        if a.refused is None:
            travelled.add(a.identity)
    return [
        a
        for a in all_attachments(call)
        if a.source is not None and a.source.instance == instance
        and (_where(a), a.identity, a.refused is None, waits_to_be_read(a)) not in before
        and (a.refused is not None or a.identity not in travelled)
    ]  # fmt: skip


def listed_at(call: Call, instance: str, file_id: str) -> Attachment | None:
    """The file of ``call`` that is ``instance``'s file ``file_id`` (or one of its copies)."""
    for a in all_attachments(call):
        if (
            a.source is not None
            and a.source.instance == instance
            and (a.source.remote_id == file_id or file_id in a.same_in_source)
        ):
            return a
    return None


def with_file_replaced(call: Call, instance: str, file_id: str, taken: Attachment) -> Call:
    """``call`` with its file ``file_id`` of ``instance`` (where it is: on the call or a
    comment) replaced by ``taken``, the same file read again; one accepted that the list holds
    already (by identity) is merged into it (:func:`_unique`)."""
    place = (instance, file_id)

    def replaced(files: list[Attachment]) -> list[Attachment]:
        if all(_where(a) != place for a in files):
            return files
        return _unique([taken if _where(a) == place else a for a in files])

    comments = [
        c.model_copy(update={"attachments": replaced(c.attachments)}) for c in call.comments
    ]
    return with_changes(call, attachments=replaced(call.attachments), comments=comments)
