"""Reading a small text file an admin names (the config, a secret), refusing what is not one.

``Path.read_text`` on ``/dev/zero`` grows without bound, on a FIFO nobody writes to it waits
forever, and on a binary file it fails deep inside a decoder. A config or a secret is a small
regular file of UTF-8 text, so anything else is refused with a reason a person can act on.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["NotATextFile", "UnreadableFile", "read_small_text", "read_text_or_explain"]


class NotATextFile(Exception):
    """The file cannot be read as small UTF-8 text; the message says why (no contents)."""


class UnreadableFile(Exception):
    """A file a command was given cannot be read: ``reason`` says why in words a person can
    act on, ``where`` names the file; ``missing`` when it does not exist."""

    def __init__(self, reason: str, where: str, *, missing: bool = False) -> None:
        self.reason = reason
        self.where = where
        self.missing = missing
        super().__init__(f"{where}: {reason}")


def read_text_or_explain(path: Path, *, limit: int, use: str) -> str:
    """:func:`read_small_text`, with every failure an :class:`UnreadableFile`.

    :param use: what the file was to be, for the reason: ``"a config file"``.
    """
    try:
        return read_small_text(path, limit=limit)
    except NotATextFile as exc:
        raise UnreadableFile(f"cannot use as {use}: {exc}", str(path)) from None
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise UnreadableFile(f"cannot read: {exc.strerror}", str(path), missing=missing) from None
    except ValueError as exc:  # a NUL byte in the path
        raise UnreadableFile(f"cannot read: {exc}", repr(str(path))) from None


def read_small_text(path: Path, *, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes.

    :raises NotATextFile: when it is not a regular file, is larger than ``limit``, is not
        UTF-8 or holds a NUL byte.
    :raises OSError: when it cannot be opened (missing, no permission).
    """
    # Non-blocking, so that opening a FIFO without a writer returns at once instead of hanging;
    # the type check below then refuses it before anything is read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotATextFile(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise NotATextFile(f"larger than {_size(limit)}")
        # One byte more than allowed tells a file that grew after fstat from one that fits.
        data = _read_up_to(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotATextFile(f"larger than {_size(limit)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotATextFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise NotATextFile(f"not text: a NUL byte at offset {text.index(chr(0))}")
    return text


def _read_up_to(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 65_536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
