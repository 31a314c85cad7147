"""A safe file name for an attachment, whatever name the sender gave it.

The name of a file comes from a ticket or an e-mail: untrusted. It ends up in a tool's upload
form, in a MIME header, and in the quarantine folder on disk, so it must never name a path
(``../../etc/cron.d/x``, ``C:\\Windows\\x``), hide its real extension (a right-to-left override
turning ``gpj.exe`` into ``exe.jpg`` on screen), hit a name Windows reserves (``CON``, ``NUL``,
``COM1``, also with an extension) or a file system's length limit. :func:`safe_file_name` makes
such a name, and is idempotent: a safe name stays as it is, so reading the bridge's own copy back
gives the same name, and with it the same identity (SHA-256 and name).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from ..model import MAX_ATTACHMENT_NAME_BYTES

__all__ = ["DEFAULT_FILE_NAME", "safe_file_name"]

#: The name given to a file whose name is empty or nothing but unsafe characters.
DEFAULT_FILE_NAME: Final = "attachment"
#: The longest extension kept whole when a long name is cut (``.tar.gz`` counts as ``.gz``).
_MAX_EXTENSION_BYTES: Final = 16
#: Characters Windows forbids in names (besides the separators and controls removed anyway);
#: ``:`` also names an NTFS alternate data stream.
_WINDOWS_FORBIDDEN: Final = re.compile(r'[<>:"|?*]')
#: Names Windows reserves for devices, with or without an extension, in any case.
_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789"}
)
#: Unicode categories removed: controls, format characters (bidirectional overrides, zero
#: widths), surrogates, private use, unassigned; line and paragraph separators.
_REMOVED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_EXTENSION: Final = re.compile(r"\.[A-Za-z0-9_+-]{1,15}$")


def safe_file_name(name: str | None, *, max_bytes: int = MAX_ATTACHMENT_NAME_BYTES) -> str:
    """``name`` made safe to store, send and write to disk (see the module docstring).

    - Unicode NFKC: look-alike separators (U+FF0F, a fullwidth solidus) become real ones;
    - only the last path component is kept (``C:\\x\\form.pdf`` -> ``form.pdf``);
    - control and format characters (C0, C1, DEL, bidirectional overrides, unassigned code
      points, lone surrogates) are removed, Windows' forbidden ``<>:"|?*`` become ``_``;
    - leading dots and blanks (hidden files, ``..``) and trailing dots and blanks (which Windows
      drops) are removed;
    - a Windows device name (``CON``, ``nul.txt``, ``COM1.log``) gets a leading ``_``;
    - the name is cut to ``max_bytes`` of UTF-8 at a character boundary, keeping its extension;
    - nothing left: :data:`DEFAULT_FILE_NAME`.
    """
    if max_bytes < _MAX_EXTENSION_BYTES + len(DEFAULT_FILE_NAME):
        raise ValueError(f"max_bytes must be at least {_MAX_EXTENSION_BYTES + 10}")
    result = name or ""
    # Each step can uncover work for an earlier one (a cut ends on a dot; normalising forms a
    # separator): repeat until nothing changes, which is what makes the function idempotent.
    for _ in range(8):
        cleaned = _one_pass(result, max_bytes)
        if cleaned == result:
            break
        result = cleaned
    return result or DEFAULT_FILE_NAME


def _one_pass(name: str, max_bytes: int) -> str:
    name = unicodedata.normalize("NFKC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _REMOVED_CATEGORIES)
    name = _WINDOWS_FORBIDDEN.sub("_", name)
    name = name.strip(" .")
    if not name:
        return DEFAULT_FILE_NAME
    stem = name.split(".", 1)[0].rstrip(" ")
    if stem.upper() in _RESERVED:
        name = "_" + name
    return _cut(name, max_bytes)


def _cut(name: str, max_bytes: int) -> str:
    """``name`` within ``max_bytes`` of UTF-8, its extension kept when it has a short one."""
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    match = _EXTENSION.search(name)
    extension = match.group(0) if match else ""
    stem = name[: len(name) - len(extension)]
    room = max_bytes - len(extension.encode("ascii"))
    # Cut by bytes, then drop a character the cut split (errors="ignore" keeps whole ones).
    cut = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return cut.rstrip(" .") + extension
