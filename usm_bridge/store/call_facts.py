"""A call's facts: its document without the texts, people and tool attributes (``calls.facts``).

A conformance report judges every stored call, and reading a call back through the model costs
most of a report over a million of them: the whole document is parsed and validated, comments,
descriptions and people included, though no check reads them (about 85 us of CPU per call of
``bench/fill_store.py``, against about 20 us for the rest). So every row also keeps its facts,
written with the document by the same encoding of the call: every member of the canonical
document except :data:`LEFT_OUT` (and :data:`DERIVED`, which the model computes). The model
reads the facts as a call (those members have defaults, and none of the model's rules between
fields involves them), so the report validates what it judges, in a fraction of the time.

The document stays the record: the facts are derived from it, never written on their own, and
a row without facts (its document not valid JSON when revision 0015 derived them) is read from
the document instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from usm_bridge.store.encoded_json import JsonText

__all__ = ["DERIVED", "LEFT_OUT", "facts_of"]

#: The members of a call's document its facts leave out: free text, people, comments and the
#: tool's own attributes (what no conformance check reads; each has a default in the model).
LEFT_OUT: Final = ("assignee", "attributes", "comments", "customer", "description", "requester")

#: Members the model derives (from ``call_type``) and drops when it reads a document.
DERIVED: Final = ("process",)

_LEFT_OUT = frozenset(LEFT_OUT + DERIVED)

#: The facts' encoding: compact and ASCII, NaN refused (the document's own rules).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def facts_of(canonical: Mapping[str, Any]) -> JsonText:
    """The facts of a call whose document (``model_dump(mode="json")``) is ``canonical``."""
    return JsonText(
        _ENCODER.encode({key: value for key, value in canonical.items() if key not in _LEFT_OUT})
    )
