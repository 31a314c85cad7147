"""Sending a file on: the target instance's policy has its say before any byte is written.

A file that travels from its source may still be refused by the target's mapping (a Jira
project that takes only PDFs, a mailbox with a smaller cap): :func:`may_send` answers with the
target's :class:`~usm_bridge.attachments.refusals.Refusal` (direction ``write``: its note, its
``push`` dead letter) or ``None`` when the connector may upload. The exactly-once rule comes
next, in the connector: the target record's attachments are listed and the file is written only
when none of them has its identity (SHA-256 and name).
"""

from __future__ import annotations

from ..model import Attachment
from .policy import AttachmentPolicy, decide
from .refusals import Refusal

__all__ = ["may_send"]


def may_send(
    policy: AttachmentPolicy, attachment: Attachment, *, instance: str, call_id: str | None = None
) -> Refusal | None:
    """Whether the target ``instance``'s ``policy`` takes ``attachment``: ``None``, or why not.

    :raises ValueError: the attachment was refused where it was read (it has no content to
        send; its refusal is already noted there).
    """
    if attachment.refused is not None or attachment.sha256 is None:
        raise ValueError(f"{attachment.name} was refused where it was read: it is never sent on")
    decision = decide(
        policy, name=attachment.name, size=attachment.size, media_type=attachment.media_type,
        declared_type=attachment.declared_type,
    )  # fmt: skip
    if decision.reason is None:
        return None
    return Refusal(
        instance=instance, direction="write", name=attachment.name,
        media_type=attachment.media_type, size=attachment.size, sha256=attachment.sha256,
        reason=decision.reason, declared_type=attachment.declared_type, call_id=call_id,
        source=attachment.source, origin=attachment.origin,
    )  # fmt: skip
