"""A refused attachment is never dropped in silence: it becomes a note on the call, a dead letter
with the reason, and (where the config names a quarantine folder) a kept copy.

:class:`Refusal` carries what a connector knows when the policy says no, and gives the three
forms: :meth:`Refusal.note` (the text of a comment on the call: the people on both ends see
that a file did not travel and why), :meth:`Refusal.dead_letter` (the keyword arguments of the
store's ``add_dead_letter``, so that ``usm-bridge dead-letters`` lists it for an admin) and
:meth:`Refusal.attachment` (the call's :class:`~usm_bridge.model.Attachment` marked refused, so
that reading the same file again changes nothing and no second note is written).

Dead letters of refused files use the existing stages (``map`` for a file read from a tool,
``push`` for one a target's policy refused) and a subject of their own,
``attachment:<call id>:<sha256>:<name>``: one open letter per file, instance and call (the same
file refused on two calls is two letters, each pointing at its call), a repeat counts an
attempt. The conformance report counts files, not letters: one per file and instance
(:func:`refused_file`).
``usm-bridge dead-letters retry`` reads the file of a ``map`` one again now, under the policy
now, and resolves it if the file is accepted (:mod:`usm_bridge.sync.file_retry`); a ``push``
one (a target refused the file) it skips with the reason; ``dismiss`` closes them. A file read
again and accepted on its record's read resolves its letter too; so does a file not read for
now (a 401, a 403) once it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import JsonValue

from ..model import Attachment, AttachmentSource
from ..store.records import DeadLetterStage

__all__ = ["ATTACHMENT_SUBJECT_PREFIX", "Refusal", "is_attachment_subject", "refused_file"]

#: The subject of every dead letter of a refused file starts so.
ATTACHMENT_SUBJECT_PREFIX: Final = "attachment:"


def is_attachment_subject(subject: str | None) -> bool:
    """Whether a dead letter's subject is a refused file's (see the module docstring)."""
    return subject is not None and subject.startswith(ATTACHMENT_SUBJECT_PREFIX)


def refused_file(subject: str, call_id: str | None) -> str:
    """The file a refused file's dead letter names (its subject without its call): what tells
    one file from another across calls."""
    return subject.removeprefix(f"{ATTACHMENT_SUBJECT_PREFIX}{call_id}:") if call_id else subject


@dataclass(frozen=True)
class Refusal:
    """One file the policy (or its size cap) refused, with what is known of it.

    ``sha256`` and ``size`` are those of the content read; for a stream cut at its cap,
    ``None`` (the content was not read whole) and the count when it was cut.
    """

    #: The instance whose policy refused it (the source's for a read, the target's for a write).
    instance: str
    direction: Literal["read", "write"]
    name: str
    media_type: str
    size: int
    sha256: str | None
    reason: str
    declared_type: str | None = None
    call_id: str | None = None
    #: Where the file is in its tool (the remote id of the attachment or the MIME part).
    source: AttachmentSource | None = None
    origin: str = "bridge"

    def note(self) -> str:
        """The text of the note on the call (the reason names the file)."""
        where = "read from" if self.direction == "read" else "sent to"
        return f"An attachment was not {where} {self.instance}: {self.reason}."

    def attachment(self) -> Attachment:
        """The file as the call lists it: refused, with the reason."""
        declared = self.declared_type if self.declared_type != self.media_type else None
        return Attachment(
            name=self.name,
            media_type=self.media_type,
            declared_type=declared,
            size=self.size,
            sha256=self.sha256,
            source=self.source,
            origin=self.origin,
            refused=self.reason,
        )

    def metadata(self) -> dict[str, JsonValue]:
        """What is known of the file, as JSON (a dead letter's payload, a quarantine sidecar)."""
        return {
            "attachment": self.attachment().model_dump(mode="json"),
            "instance": self.instance,
            "direction": self.direction,
            "call_id": self.call_id,
            "reason": self.reason,
        }

    @property
    def key(self) -> str:
        """What tells this file from others: its SHA-256, or for a file never read whole, where
        it is (``instance/remote id``)."""
        if self.sha256 is not None:
            return self.sha256
        return f"{self.source.instance}/{self.source.remote_id}" if self.source else "unread"

    def dead_letter(self) -> dict[str, Any]:
        """The keyword arguments of ``Transaction.add_dead_letter`` for this refusal."""
        stage = DeadLetterStage.MAP if self.direction == "read" else DeadLetterStage.PUSH
        return {
            "instance": self.instance,
            "stage": stage,
            "payload": self.metadata(),
            "reason": f"attachment refused: {self.reason}",
            "call_id": self.call_id,
            "subject": self.subject,
        }

    @property
    def subject(self) -> str:
        """Its dead letter's subject: the call (when known), the file (:attr:`key`), its name."""
        call = f"{self.call_id}:" if self.call_id else ""
        return f"{ATTACHMENT_SUBJECT_PREFIX}{call}{self.key}:{self.name}"[:300]
