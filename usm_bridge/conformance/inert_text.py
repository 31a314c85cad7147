"""Ticket text that cannot rearrange the report around it.

A ticket's title may hold Unicode's bidirectional controls. An unclosed right-to-left override
(U+202E) in a title reverses everything after it on the same line, so a report's own sentence
("closed without a customer confirmation") would read backwards. The renderers keep such text
in its place:

* HTML isolates every piece of ticket text in ``<bdi>`` (:func:`bdi`, the ``bdi`` filter of
  the templates): the controls still apply inside it, as in the tool, and end with it.
* Markdown, CSV, XLSX and JUnit cannot isolate, so :func:`neutralise_bidi` makes each control
  visible as its code point in brackets (``[U+202E]``): nothing is reordered, and a reader
  still sees that the ticket held a control.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

__all__ = ["BIDI_CONTROLS", "bdi", "neutralise_bidi"]

#: The embeddings, overrides and isolates with their terminators, and the three marks.
BIDI_CONTROLS = frozenset(
    [
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
        "\u200e",
        "\u200f",
        "\u061c",
    ]
)
_VISIBLE = str.maketrans({char: f"[U+{ord(char):04X}]" for char in BIDI_CONTROLS})


def neutralise_bidi(text: str) -> str:
    """``text`` with every bidirectional control replaced by its visible code point."""
    return text.translate(_VISIBLE)


def bdi(value: Any) -> Markup:
    """``value`` escaped for HTML and isolated for bidirectional layout."""
    return Markup("<bdi>%s</bdi>") % escape("" if value is None else value)
