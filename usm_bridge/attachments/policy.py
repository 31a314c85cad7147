"""Which attachments may travel to and from one connector instance: the mapping's ``attachments``
section, and the decision it gives for one file.

A mapping file says, for the instance that uses it (the policy applies to files read from the
tool and to files written into it)::

    attachments:
      travel: true                  # default true: files are part of the request (a signed form)
      max_size: 25MiB               # default 25 MiB: bytes, or KB/KiB/MB/MiB/GB/GiB
      allow: [application/pdf, "image/*"]   # default: any type not refused
      refuse: [application/zip]     # added to the built-in refused types (executables, scripts)
      refuse_extensions: [.docm]    # added to the built-in refused extensions (.exe, .js, ...)
      default_refusals: true        # false: only the file's own refuse lists apply

Attachments travel unless a mapping says not: a department that receives a request without its
form sends it back, which is the failure the bridge exists to prevent; what is dangerous
(executables, scripts, shortcuts) is refused by default, and the 25 MiB cap is what common mail
relays accept, the narrowest link of a chain with a mailbox in it. A refused file is never
dropped in silence: :func:`decide` gives the reason, which becomes a note on the call and a dead
letter (:mod:`usm_bridge.attachments.refusals`).

:func:`decide` checks, in this order: whether files travel at all, the size, the extension of the
sanitised name, then the types (the sniffed type against ``refuse`` and ``allow``, the declared
type against ``refuse`` only: see :mod:`usm_bridge.attachments.sniffing`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_REFUSED_EXTENSIONS",
    "DEFAULT_REFUSED_TYPES",
    "MAX_MAX_SIZE",
    "AttachmentPolicy",
    "Decision",
    "decide",
    "parse_size",
    "policy_basis",
]

#: The default cap: what common mail relays accept (25 MiB).
DEFAULT_MAX_SIZE: Final = 25 * 1024 * 1024
#: The largest cap a mapping may set (4 GiB): beyond it no tool of the chain takes a file.
MAX_MAX_SIZE: Final = 4 * 1024**3

#: Types refused unless a mapping says ``default_refusals: false``: programs and scripts, as
#: libmagic names them (Windows, ELF, Mach-O executables and libraries; installers; shell,
#: batch and PowerShell scripts; shortcuts; Java archives), and as senders declare them.
DEFAULT_REFUSED_TYPES: Final = (
    "application/vnd.microsoft.portable-executable",
    "application/x-dosexec",
    "application/x-msdownload",
    "application/x-executable",
    "application/x-pie-executable",
    "application/x-sharedlib",
    "application/x-mach-binary",
    "application/x-msi",
    "application/x-ms-installer",
    "application/x-ms-shortcut",
    "application/java-archive",
    "application/x-sh",
    "application/x-csh",
    "text/x-shellscript",
    "text/x-msdos-batch",
    "application/x-bat",
    "text/x-powershell",
    "application/hta",
    "application/x-ms-application",
)
#: Extensions refused unless a mapping says ``default_refusals: false``: what mail systems
#: block because Windows runs it on a double click, whatever its content.
DEFAULT_REFUSED_EXTENSIONS: Final = (
    ".exe", ".com", ".scr", ".pif", ".bat", ".cmd", ".vbs", ".vbe", ".js", ".jse", ".wsf",
    ".wsh", ".ps1", ".psm1", ".msi", ".msp", ".mst", ".hta", ".cpl", ".jar", ".lnk", ".reg",
    ".dll", ".sys", ".application", ".gadget", ".msc", ".scf", ".inf", ".appx", ".msix",
)  # fmt: skip

_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNITS: Final = {
    None: 1, "B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9,
    "GiB": 2**30,
}  # fmt: skip


def parse_size(value: object, *, maximum: int = MAX_MAX_SIZE) -> int:
    """A size in bytes from ``25MiB``, ``10 MB``, ``512KiB`` or a plain number of bytes.

    :raises ValueError: not a size, or outside 1 byte .. ``maximum`` (:data:`MAX_MAX_SIZE`).
    """
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a text like 25MiB, not true/false")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a size: write bytes (1048576) or a number with B, KB, KiB, MB, "
            "MiB, GB or GiB (25MiB)"
        )
    if not 1 <= size <= maximum:
        most = f"{maximum // 1024**3}GiB"
        raise ValueError(f"a size must be between 1 byte and {most}, not {size} bytes")
    return size


def _disk_size(value: object) -> int:
    return parse_size(value, maximum=MAX_DISK_SIZE)


_TYPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$")


def _type_pattern(value: str) -> str:
    lowered = value.strip().lower()
    if not _TYPE_PATTERN.match(lowered):
        raise ValueError(
            f"{value!r} is not a media type or pattern: write type/subtype (application/pdf) "
            "or type/* (image/*)"
        )
    return lowered


def _extension(value: str) -> str:
    lowered = value.strip().lower()
    if not lowered.startswith("."):
        lowered = "." + lowered
    if not re.fullmatch(r"\.[a-z0-9_+-]{1,15}", lowered):
        raise ValueError(f"{value!r} is not a file extension: write .exe (letters and digits)")
    return lowered


TypePattern = Annotated[str, AfterValidator(_type_pattern)]
Extension = Annotated[str, AfterValidator(_extension)]
Size = Annotated[int, BeforeValidator(parse_size)]
#: The most a folder of files may be given to hold (the kept attachments' bound): 1 TiB.
MAX_DISK_SIZE: Final = 1024**4
#: A size of files on disk, as :data:`Size` is written, up to :data:`MAX_DISK_SIZE`.
DiskSize = Annotated[int, BeforeValidator(_disk_size)]


class AttachmentPolicy(BaseModel):
    """The mapping's ``attachments`` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Whether files travel to and from this instance at all.
    travel: bool = True
    #: The largest file that travels, in bytes (the mapping may write ``25MiB``).
    max_size: Size = DEFAULT_MAX_SIZE
    #: Types that travel (``image/*`` patterns); empty: every type not refused.
    allow: list[TypePattern] = Field(default_factory=list)
    #: Types refused, besides :data:`DEFAULT_REFUSED_TYPES`.
    refuse: list[TypePattern] = Field(default_factory=list)
    #: Extensions refused, besides :data:`DEFAULT_REFUSED_EXTENSIONS`.
    refuse_extensions: list[Extension] = Field(default_factory=list)
    #: ``false``: the built-in refused types and extensions do not apply, only the file's own.
    default_refusals: bool = True

    def refused_types(self) -> tuple[str, ...]:
        """Every refused type pattern: the file's, then the built-in ones if they apply."""
        return (*self.refuse, *(DEFAULT_REFUSED_TYPES if self.default_refusals else ()))

    def refused_extensions(self) -> tuple[str, ...]:
        """Every refused extension (lower case, with its dot)."""
        return (
            *self.refuse_extensions,
            *(DEFAULT_REFUSED_EXTENSIONS if self.default_refusals else ()),
        )


@dataclass(frozen=True)
class Decision:
    """What the policy says of one file: it travels, or it is refused and why."""

    accepted: bool
    #: Why it is refused, in words fit for a note on the call; ``None`` when accepted.
    reason: str | None = None

    @classmethod
    def refuse(cls, reason: str) -> Decision:
        return cls(False, reason)


ACCEPT: Final = Decision(True)


def _matches(media_type: str, patterns: tuple[str, ...] | list[str]) -> str | None:
    for pattern in patterns:
        if fnmatch.fnmatchcase(media_type, pattern):
            return pattern
    return None


def decide(
    policy: AttachmentPolicy,
    *,
    name: str,
    size: int,
    media_type: str,
    declared_type: str | None = None,
) -> Decision:
    """Whether the file ``name`` (already sanitised), of ``size`` bytes and sniffed
    ``media_type``, travels under ``policy``; ``declared_type`` is what its sender said.

    ``size`` may be a lower bound (a stream cut off at the cap counts ``max_size + 1``).
    """
    if not policy.travel:
        return Decision.refuse(f"{name}: attachments do not travel for this instance")
    if size > policy.max_size:
        return Decision.refuse(
            f"{name}: larger than the {_size_text(policy.max_size)} this instance takes"
        )
    lowered = name.lower()
    for extension in policy.refused_extensions():
        if lowered.endswith(extension):
            return Decision.refuse(f"{name}: files ending in {extension} are refused")
    refused = _matches(media_type, policy.refused_types())
    if refused is not None:
        return Decision.refuse(f"{name}: its content is {media_type}, which is refused")
    if declared_type is not None and _matches(declared_type, policy.refused_types()):
        # What the sender declared is theirs to write: shown quoted and escaped unless it is
        # spelt as a type (the policy's own pattern), so no control or direction mark reaches
        # the note.
        plain = _TYPE_PATTERN.fullmatch(declared_type.lower()) is not None
        shown = declared_type if plain else f"{declared_type!a}"
        return Decision.refuse(f"{name}: its sender declared {shown}, which is refused")
    if policy.allow and _matches(media_type, policy.allow) is None:
        return Decision.refuse(
            f"{name}: its content is {media_type}, not one of the allowed types "
            f"({', '.join(policy.allow)})"
        )
    return ACCEPT


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def policy_basis(policy: AttachmentPolicy) -> str:
    """What a refusal by ``policy`` rests on (``policy:`` and a digest of the section): kept on
    the refused file, so that a policy that differs later has the file read and decided again
    (:mod:`usm_bridge.sync.attachment_intake`)."""
    section = policy.model_dump_json().encode("utf-8")
    return "policy:" + hashlib.sha256(section).hexdigest()[:32]
