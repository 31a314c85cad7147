"""Who wrote a copied comment: the first line of every copy, in every tool.

A copy is posted by the bridge's integration account (a Jira user, a ServiceNow user, the
desk's mailbox), so the tool shows that account as its author. The line above the body names
the person who wrote the original and their unit, for example::

    Hannah Hiring (Human Resources) wrote:
    Near the window, please.

The line is made here only, from the original canonical comment (whose ``author`` stays a
:class:`~usm_bridge.model.Person`), so a comment relayed over several links (A -> B -> C) names
its original author and unit at every hop, never an intermediate integration account. A
connector adds no author line of its own.
"""

from __future__ import annotations

from typing import Final

from ..config import BridgeConfig
from ..model import Comment, Person

__all__ = ["attributed", "author_line", "unit_title"]

#: How the line ends; it reads as a quote header in every tool and in mail.
_WROTE: Final = " wrote:"


def unit_title(config: BridgeConfig, instance: str) -> str | None:
    """The title of the unit whose tool ``instance`` is (its name when it has no title)."""
    inst = config.instances.get(instance)
    if inst is None:
        return None
    unit = config.units.get(inst.unit)
    return (unit.title or unit.name) if unit is not None else inst.unit


def author_line(author: Person | None, unit: str | None) -> str | None:
    """``Name (Unit) wrote:``; ``None`` when neither who nor where is known."""
    who = (author.name or author.email or author.ref) if author is not None else None
    if who is None and unit is None:
        return None
    if who is None:
        return f"Someone at {unit}{_WROTE}"
    return f"{who} ({unit}){_WROTE}" if unit else f"{who}{_WROTE}"


def attributed(comment: Comment, config: BridgeConfig) -> str:
    """The body of ``comment``'s copy: the author line, then the original body.

    ``comment`` is the original (read from the tool of ``comment.origin``). A body that
    already starts with the same line gets no second one.
    """
    line = author_line(comment.author, unit_title(config, comment.origin))
    if line is None:
        return comment.body
    first = comment.body.lstrip().split("\n", 1)[0].strip()
    if first == line:
        return comment.body
    return f"{line}\n{comment.body}"
