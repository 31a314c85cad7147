"""JSON encoded once: text the store writes into a JSON column as it is.

SQLAlchemy's JSON columns encode every value they are given with the engine's
``json_serializer``. A call's document was encoded three times on its way into the store (for
its content hash, for its row, for the audit event of its creation), each a walk over the whole
document. :class:`JsonText` marks text that is already the JSON to store: :func:`store_dumps`,
the store's serializer, hands it through unchanged, and encodes anything else.

Every JSON the store writes is compact (no spaces after ``,`` and ``:``): SQL that matches a
column's text (revision 0011's search for open forks) accepts both spellings, since rows
written before were spaced.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["NO_CYCLE_CHECK", "JsonText", "encode_json", "store_dumps"]

#: ``check_circular`` of the store's encoders: off. The check keeps the id of every container
#: on the way down (about a sixth of an encoding's time); the text is the same without it for
#: any value without a cycle, which is all the store encodes (dumps of models and the rows'
#: own dicts). A value with a cycle would not be JSON either: it then fails with a
#: RecursionError instead of a ValueError, made the same ValueError where one is promised.
NO_CYCLE_CHECK: Final = False


class JsonText(str):
    """A value already encoded as JSON: the store writes these characters, not a JSON string
    holding them. Build one with :func:`encode_json`, or from text known to be JSON."""

    __slots__ = ()


#: The store's encoding, built once (``json.dumps`` builds an encoder per call).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=NO_CYCLE_CHECK)


def encode_json(value: Any) -> JsonText:
    """``value`` as compact JSON, marked as encoded.

    :raises ValueError: ``value`` holds a float NaN or infinity (not JSON: PostgreSQL would
        refuse it and SQLite would keep it), or something that is not JSON at all.
    """
    try:
        return JsonText(_ENCODER.encode(value))
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None


def store_dumps(value: Any) -> str:
    """The engine's ``json_serializer``: :class:`JsonText` as it is, anything else encoded."""
    if isinstance(value, JsonText):
        return str.__str__(value)
    return _ENCODER.encode(value)
