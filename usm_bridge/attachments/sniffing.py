"""An attachment's media type, read from its content, never taken from the sender.

The sender's ``Content-Type`` (a MIME part's, Jira's ``mimeType``, ServiceNow's
``content_type``) is whatever the sending program or person said: an executable declared
``image/png`` is the oldest trick there is. The type that counts is sniffed from the first bytes
of the content by libmagic (the ``file`` command's library, through ``python-magic``): it reads
bytes in memory and only compares them with its signatures; nothing is opened by a program,
rendered or executed, here or anywhere in the bridge.

The rule between the two types (:func:`~usm_bridge.attachments.policy.decide` applies it):
the sniffed type *is* the attachment's type, and the only one an ``allow`` list is checked
against; the declared type is kept as evidence when it differs, and can only make a decision
stricter: a file whose sender declares a refused type is refused whatever its content looks
like. So a disguise (``image/png`` declared, an executable inside) is caught by its content,
and a sender saying "this is an executable" is believed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import magic

__all__ = [
    "GENERIC_TYPE",
    "SNIFF_BYTES",
    "SnifferMissing",
    "normal_media_type",
    "sniff_media_type",
]

#: How much of the head of a file is sniffed: libmagic's own default window. Formats that keep
#: their directory further in (an OLE2 file: ``.doc``, ``.xls``, ``.ppt``) need more than the
#: first 64 KiB (the sample ``.ppt`` of the tests does); one MiB is the most kept in memory.
SNIFF_BYTES: Final = 1024 * 1024
#: The type of content nothing more is known of.
GENERIC_TYPE: Final = "application/octet-stream"

_lock = threading.Lock()
_magic: magic.Magic | None = None


class SnifferMissing(RuntimeError):
    """libmagic (the system's ``libmagic1``) is not installed: no attachment can be judged."""


def _detector() -> magic.Magic:
    # One libmagic handle per process, made on first use (loading its database costs some ms);
    # python-magic serialises calls on a handle, the lock guards making it. Imported here, not
    # at the top: python-magic loads the system's libmagic as it is imported, and a machine
    # without it must still run everything that moves no attachment (and say what is missing
    # when one comes, instead of failing every command at start-up).
    global _magic
    with _lock:
        if _magic is None:
            try:
                import magic
            except ImportError as exc:
                raise SnifferMissing(
                    f"attachments cannot be judged: libmagic is missing ({exc}); install the "
                    "system package libmagic1 (Debian, Ubuntu) or libmagic (Alpine, Homebrew)"
                ) from None
            _magic = magic.Magic(mime=True)
        return _magic


def sniff_media_type(head: bytes) -> str:
    """The media type of content whose first bytes (up to :data:`SNIFF_BYTES`) are ``head``:
    lower case, without parameters; :data:`GENERIC_TYPE` when libmagic cannot tell (or answers
    something that is not a media type), ``application/x-empty`` for no content."""
    detector = _detector()
    try:
        detected = detector.from_buffer(bytes(head[:SNIFF_BYTES]))
    except _magic_error():
        # libmagic gave up on these bytes: of unknown type, which the policy then judges (an
        # allow list without application/octet-stream refuses it).
        return GENERIC_TYPE
    return normal_media_type(detected) or GENERIC_TYPE


def _magic_error() -> type[Exception]:
    import magic  # loaded by _detector already

    return magic.MagicException


def normal_media_type(value: str | None) -> str | None:
    """``value`` (a ``Content-Type`` as a sender wrote it) as ``type/subtype`` in lower case,
    without parameters; ``None`` when it is missing or not a media type."""
    if not value:
        return None
    bare = value.split(";", 1)[0].strip().lower()
    kind, slash, subtype = bare.partition("/")
    if not slash or not _token(kind) or not _token(subtype):
        return None
    return bare


_TOKEN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&^_.+-")


def _token(part: str) -> bool:
    # RFC 6838's restricted names: what the model's MediaType takes.
    return 0 < len(part) <= 127 and part[0].isalnum() and set(part) <= _TOKEN_CHARS
