"""Copies of a validated call with some fields changed, checked without validating it again.

Validating a :class:`~usm_bridge.model.Call` (``Call.model_validate``) checks each field's value
with that field's validators, then the model's one check across fields (its ``after``
validator: a waiting call says whom it waits on, an unclassified call is not worked on,
``updated`` is not before ``created``); the ``before`` validator only drops a derived
``process`` key. A copy of a validated call whose changed fields hold values that already
passed those fields' validators (another validated call's values, enum members of the field's
type) is therefore valid exactly when the check across fields holds on it:
:func:`consistent_copy` runs only that check, so a record is validated once on the way in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .model import Call

__all__ = ["consistent_copy"]

#: The model's check across fields (raises ``ValueError``); typed here, as its decorator hides
#: that it is a plain function of the call.
_CHECK_ACROSS_FIELDS = cast("Callable[[Call], Call]", Call._consistent)


def consistent_copy(call: Call, update: dict[str, Any]) -> Call | None:
    """``call`` with ``update`` (a shallow copy), when the model's check across fields holds on
    it; ``None`` when it does not (validating the same values then names the problem).

    Every value in ``update`` must be one the field's own validators already accepted (see the
    module docstring); the copy shares the nested objects of ``call`` and of ``update``, which
    nothing in the bridge changes in place.
    """
    copied = call.model_copy(update=update)
    try:
        _CHECK_ACROSS_FIELDS(copied)
    except ValueError:
        return None
    return copied
