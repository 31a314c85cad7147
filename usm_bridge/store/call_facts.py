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

Revision 0016 also keeps, as columns of the row (:data:`FACT_COLUMNS`, :func:`fact_columns`),
the members the data checks and the registry's answers read: so that a report can ask the
database for each unit's calls grouped by what a check judges, instead of building a model
object per call. The tool's times are kept as the document writes them (ISO 8601 with the
tool's own offset), not as timestamps: evidence repeats them byte for byte, and a timestamp
column would keep the instant but lose the offset. Like the facts, the columns are derived
from the document and written with it; a row without facts has none of them either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from usm_bridge.store.encoded_json import NO_CYCLE_CHECK, JsonText

__all__ = ["DERIVED", "FACT_COLUMNS", "LEFT_OUT", "TITLE_CHARS", "fact_columns", "facts_of"]

#: The members of a call's document its facts leave out: free text, people, comments, files and
#: the tool's own attributes (what no conformance check reads; each has a default in the model).
LEFT_OUT: Final = (
    "assignee", "attachments", "attributes", "comments", "customer", "description", "requester",
)  # fmt: skip

#: Members the model derives (from ``call_type``) and drops when it reads a document.
DERIVED: Final = ("process",)

_LEFT_OUT = frozenset(LEFT_OUT + DERIVED)

#: The facts' encoding: compact and ASCII, NaN refused (the document's own rules); a model's
#: dump has no cycle (:data:`.encoded_json.NO_CYCLE_CHECK`).
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=NO_CYCLE_CHECK
)


def facts_of(canonical: Mapping[str, Any]) -> JsonText:
    """The facts of a call whose document (``model_dump(mode="json")``) is ``canonical``."""
    # A copy less the members left out (in the document's order, as the text keeps it).
    facts = dict(canonical)
    for key in _LEFT_OUT:
        facts.pop(key, None)
    return JsonText(_ENCODER.encode(facts))


#: The characters of the title a column keeps: what a finding's evidence shows of it.
TITLE_CHARS: Final = 200


def fact_columns(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """The fact columns of a call whose document (``model_dump(mode="json")``) is
    ``canonical``: each member as the document has it (``None`` when absent), the title cut to
    :data:`TITLE_CHARS`, and the chain's forks as their JSON (``None`` when there are none)."""
    get = canonical.get
    source = get("source") or {}
    chain = get("chain") or {}
    confirmation = get("confirmation") or {}
    title = get("title")
    forks = chain.get("forks")
    return {
        "priority": get("priority"),
        "impact": get("impact"),
        "urgency": get("urgency"),
        "service": get("service"),
        "agreement": get("agreement"),
        "customer_unit": get("customer_unit"),
        "waiting_on": get("waiting_on"),
        "waiting_process": get("waiting_process"),
        "title": title[:TITLE_CHARS] if title is not None else None,
        "source_instance": source.get("instance"),
        "source_remote_id": source.get("remote_id"),
        "source_remote_key": source.get("remote_key"),
        "source_url": source.get("url"),
        "tool_created": get("created"),
        "tool_updated": get("updated"),
        "tool_fulfilled": get("fulfilled"),
        "tool_confirmed": get("confirmed"),
        "tool_closed": get("closed"),
        "upstream": chain.get("upstream"),
        "confirmation_kind": confirmation.get("kind"),
        "confirmation_at": confirmation.get("at"),
        "confirmation_how": confirmation.get("how"),
        "forks": _ENCODER.encode(forks) if forks else None,
    }


#: The columns :func:`fact_columns` sets (revision 0016), in the order of the table.
FACT_COLUMNS: Final = tuple(fact_columns({}))
