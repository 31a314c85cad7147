"""Small helpers on the files a call carries, shared by the inbound and outbound file flows
(:mod:`.attachment_intake`, :mod:`.attachment_push`) and the router."""

from __future__ import annotations

import hashlib
from typing import Literal

from ..attachments import Refusal
from ..model import Attachment, Call
from ..store import OutboxOperation, Transaction

__all__ = ["NotTravelled", "all_attachments", "record_refusal", "refusal_of"]


def all_attachments(call: Call) -> list[Attachment]:
    """The call's files and its comments' files."""
    return [*call.attachments, *(a for comment in call.comments for a in comment.attachments)]


def refusal_of(
    attachment: Attachment,
    instance: str,
    call_id: str,
    reason: str,
    direction: Literal["read", "write"] = "write",
) -> Refusal:
    """A file refused where it was read, or one that could not be written to ``instance``: for
    its note and dead letter."""
    return Refusal(
        instance=instance, direction=direction, name=attachment.name,
        media_type=attachment.media_type, size=attachment.size, sha256=attachment.sha256,
        reason=reason[:1000], declared_type=attachment.declared_type, call_id=call_id,
        source=attachment.source, origin=attachment.origin,
    )  # fmt: skip


#: Why a file could not travel, as its dead letter's payload says (``could_not_travel``) and
#: the conformance report counts per unit: a policy refused it (where it was read, or the
#: target's), the target's tool does not carry files, or writing it failed for good.
NotTravelled = Literal["refused", "not_carried", "failed"]


def record_refusal(
    tx: Transaction, refusal: Refusal, *, home: str | None, why: NotTravelled = "refused"
) -> None:
    """The refusal's dead letter and (with ``home``, the instance holding the call) its note,
    an internal comment written once (its key names the call, the file and the instance)."""
    letter = refusal.dead_letter()
    letter["payload"] = {**letter["payload"], "could_not_travel": why}
    tx.add_dead_letter(**letter)
    if home is None or refusal.call_id is None:
        return
    digest = hashlib.sha256(f"{refusal.call_id}\0{refusal.key}\0{refusal.instance}".encode())
    comment_id = "note_" + digest.hexdigest()[:32]
    tx.enqueue(
        home, refusal.call_id, OutboxOperation.COMMENT,
        {"comment_id": comment_id, "body": refusal.note(), "public": False},
        f"{refusal.call_id}:{home}:comment:{comment_id}",
    )  # fmt: skip
