"""Attachments: the files calls and comments carry from tool to tool, safely and in chunks.

What a connector calls (each module's docstring says more):

- :func:`take_in` (:mod:`.intake`): one file read from a tool -> its canonical
  :class:`~usm_bridge.model.Attachment` (name made safe, type sniffed, SHA-256 and size) and
  its spooled content, or its :class:`Refusal` under the instance's :class:`AttachmentPolicy`;
- :func:`may_send` (:mod:`.sending`): whether a target instance's policy takes a file, before
  any byte is written (``None``, or the write's :class:`Refusal`);
- :func:`decide` (:mod:`.policy`): the policy's decision itself (e.g. on a size the tool states
  before a download);
- :class:`Refusal` (:mod:`.refusals`): a refused file as a note on the call, a dead letter and
  a refused entry in the call's attachments; :func:`keep_refused` (:mod:`.quarantine`) keeps it
  in the quarantine folder;
- :func:`copy_stream`, :func:`spool`, :func:`sweep_stale_spools` (:mod:`.streams`): content in
  chunks, hashed and counted, cut at the cap, spooled under the state folder, swept at start-up;
- :func:`safe_file_name` (:mod:`.names`), :func:`sniff_media_type` (:mod:`.sniffing`).

Identity and echo (the rule the connectors keep): an attachment is its SHA-256 with its safe
name (:attr:`~usm_bridge.model.Attachment.identity`). Before writing a file to a target, a
connector lists the target record's attachments and writes only when none has that identity
(a crash between upload and commit then leaves no second copy); a file read from a tool whose
identity is already on the call is the same attachment (the bridge's own copy read back), and is
not routed again. ``origin`` names the instance a file was first read from.
"""

from __future__ import annotations

from ..errors import AttachmentTooLarge
from .intake import Intake, take_in
from .names import DEFAULT_FILE_NAME, safe_file_name
from .policy import AttachmentPolicy, Decision, decide, parse_size, policy_basis
from .quarantine import Quarantined, keep_refused
from .refusals import Refusal, is_attachment_subject
from .sending import may_send
from .sniffing import (
    GENERIC_TYPE,
    SNIFF_BYTES,
    SnifferMissing,
    normal_media_type,
    sniff_media_type,
)
from .streams import (
    CHUNK_BYTES,
    SpooledFile,
    StreamTally,
    copy_stream,
    spool,
    sweep_stale_spools,
)

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_FILE_NAME",
    "GENERIC_TYPE",
    "SNIFF_BYTES",
    "AttachmentPolicy",
    "AttachmentTooLarge",
    "Decision",
    "Intake",
    "Quarantined",
    "Refusal",
    "SnifferMissing",
    "SpooledFile",
    "StreamTally",
    "copy_stream",
    "decide",
    "is_attachment_subject",
    "keep_refused",
    "may_send",
    "normal_media_type",
    "parse_size",
    "policy_basis",
    "safe_file_name",
    "sniff_media_type",
    "spool",
    "sweep_stale_spools",
    "take_in",
]
