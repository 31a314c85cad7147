"""What the simulated site answers: JSON, Jira's error shape, or content that is not JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["NotJson", "Reply", "errors", "raw_reply"]


@dataclass(frozen=True)
class NotJson:
    """The :attr:`Reply.body` of an answer whose content is not JSON (a file's bytes, a
    plain-text refusal): what observers see instead of a JSON document."""

    media_type: str


@dataclass
class Reply:
    """What the site answers. ``drop`` closes the connection instead of answering; ``raw`` is
    content sent as it is (bytes, or an open file the server streams, then closes)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    raw: bytes | IO[bytes] | None = None
    #: How many bytes of a ``raw`` file to send from where it stands (all the rest: ``None``).
    raw_length: int | None = None


def errors(status: int, *messages: str, **fields: str) -> Reply:
    """Jira's error answer: ``{"errorMessages": [...], "errors": {field: message}}``."""
    return Reply(status, {"errorMessages": list(messages), "errors": fields})


def raw_reply(
    status: int,
    content: bytes | IO[bytes],
    media_type: str,
    headers: dict[str, str] | None = None,
    *,
    length: int | None = None,
) -> Reply:
    """An answer whose body is ``content`` of type ``media_type``, not JSON (``length``: only
    that many bytes of a file, from where it stands)."""
    return Reply(
        status,
        NotJson(media_type),
        {"Content-Type": media_type, **(headers or {})},
        raw=content,
        raw_length=length,
    )
