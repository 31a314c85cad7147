"""Taking one file in from a tool: the one call a connector makes for each attachment it reads.

:func:`take_in` puts together what the other modules do: the name made safe, the content
spooled (hashed, counted, cut at the policy's cap), its type sniffed, the policy's decision,
and for a refused file its :class:`~usm_bridge.attachments.refusals.Refusal` (and its copy in
the quarantine folder, where one is configured). The connector then lists
:attr:`Intake.attachment` on the call or comment, and either passes :attr:`Intake.spooled` on
(it is deleted at the end of the ``with`` block) or writes the refusal's note and dead letter::

    with take_in(response.iter_content(CHUNK_BYTES), name=item["filename"],
                 declared_type=item.get("mimeType"), policy=mapping.attachments,
                 instance=self.name, remote_id=item["id"], spool_dir=spool_dir) as intake:
        call.attachments.append(intake.attachment)
        if intake.refusal is not None:
            tx.add_dead_letter(**intake.refusal.dead_letter())    # and a note on the call
        else:
            target.upload(intake.attachment, intake.spooled.chunks())

A connector that knows the size before downloading (Jira's ``size``, ServiceNow's
``size_bytes``) checks :func:`~usm_bridge.attachments.policy.decide` with it first and does not
download a file already too large.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import AttachmentTooLarge
from ..model import Attachment, AttachmentSource
from .names import safe_file_name
from .policy import AttachmentPolicy, decide
from .quarantine import keep_refused
from .refusals import Refusal
from .sniffing import GENERIC_TYPE, normal_media_type, sniff_media_type
from .streams import DeletedOnExit, SpooledFile, spool

__all__ = ["Intake", "take_in"]

_log = logging.getLogger(__name__)


@dataclass
class Intake(DeletedOnExit):
    """One file taken in: what the call lists, and the content or the refusal."""

    attachment: Attachment
    #: The content, while the ``with`` block lasts; ``None`` for a refused file.
    spooled: SpooledFile | None
    refusal: Refusal | None
    #: Why a refused file could not be kept in the quarantine folder (it is refused all the same).
    quarantine_problem: str | None = None

    def delete(self) -> None:
        """Delete the spooled content (the ``with`` block's end does)."""
        if self.spooled is not None:
            self.spooled.delete()


def take_in(
    chunks: Iterable[bytes],
    *,
    name: str | None,
    declared_type: str | None,
    policy: AttachmentPolicy,
    instance: str,
    remote_id: str,
    spool_dir: Path,
    origin: str | None = None,
    inline: bool = False,
    call_id: str | None = None,
    quarantine_dir: Path | None = None,
) -> Intake:
    """Take in the file whose content is ``chunks``, as its sender named and typed it.

    :param origin: the instance the file was first read from (default: ``instance``); a copy
        the bridge wrote names its first instance, which is how it is recognised when read back.
    :raises OSError: the spool folder cannot be written (nothing was decided: try again).
    """
    safe_name = safe_file_name(name)
    declared = normal_media_type(declared_type)
    source = AttachmentSource(instance=instance, remote_id=remote_id)
    origin = origin or instance

    def refused(size: int, sha256: str | None, media_type: str, reason: str) -> Refusal:
        return Refusal(
            instance=instance, direction="read", name=safe_name, media_type=media_type,
            size=size, sha256=sha256, reason=reason, declared_type=declared, call_id=call_id,
            source=source, origin=origin,
        )  # fmt: skip

    # A file not read whole (travel off: not read at all; past the cap: cut) has no sniffed
    # type: it is listed as of unknown type, what its sender said kept beside.
    if not policy.travel:
        reason = decide(policy, name=safe_name, size=0, media_type=GENERIC_TYPE).reason
        refusal = refused(0, None, GENERIC_TYPE, reason or "attachments do not travel")
        return _refused(refusal, None, quarantine_dir)
    try:
        spooled = spool(chunks, directory=spool_dir, cap=policy.max_size)
    except AttachmentTooLarge as exc:
        reason = decide(policy, name=safe_name, size=exc.read, media_type=GENERIC_TYPE).reason
        refusal = refused(exc.read, None, GENERIC_TYPE, reason or str(exc))
        return _refused(refusal, None, quarantine_dir)
    try:
        media_type = sniff_media_type(spooled.head)
        decision = decide(
            policy, name=safe_name, size=spooled.size, media_type=media_type,
            declared_type=declared,
        )  # fmt: skip
        if decision.reason is not None:
            refusal = refused(spooled.size, spooled.sha256, media_type, decision.reason)
            return _refused(refusal, spooled, quarantine_dir)
        attachment = Attachment(
            name=safe_name, media_type=media_type,
            declared_type=declared if declared != media_type else None, size=spooled.size,
            sha256=spooled.sha256, source=source, origin=origin, inline=inline,
        )  # fmt: skip
    except BaseException:
        spooled.delete()
        raise
    return Intake(attachment, spooled, None)


def _refused(refusal: Refusal, spooled: SpooledFile | None, quarantine: Path | None) -> Intake:
    problem: str | None = None
    try:
        if quarantine is not None:
            keep_refused(quarantine, refusal, spooled.chunks() if spooled else None)
    except OSError as exc:
        # The note and the dead letter still record the refusal (the quarantine is an extra),
        # and say that its copy failed: an admin looking for it there finds why it is not.
        problem = f"not kept in the quarantine folder {quarantine}: {exc.strerror or exc}"
        _log.warning("attachment %s refused and %s", refusal.name, problem)
        refusal = replace(refusal, reason=f"{refusal.reason}; {problem}"[:1000])
    finally:
        if spooled is not None:
            spooled.delete()
    return Intake(refusal.attachment(), None, refusal, quarantine_problem=problem)
