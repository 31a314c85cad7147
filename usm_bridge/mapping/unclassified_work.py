"""No work while unclassified: what inbound mapping does with a record the tool works on but
neither the file's rules nor a classifier gave a type.

USM classifies a call before anyone works on it (the type decides the process), so the model
refuses ``in_progress`` and ``waiting`` on an ``unclassified`` call
(:data:`~usm_bridge.model.UNCLASSIFIED_FORBIDS`). A tool knows no such rule: a Jira issue of
a custom work type can be In Progress. Inbound mapping therefore

1. asks the unit's classifier plugins *before* the call is validated (they used to see a valid
   call only, so an unclassified record in progress never reached them), and
2. when nobody classified it, refuses the record with a :class:`~usm_bridge.errors.MappingError`
   that names the record, its status and the two ways out (a classify rule in the mapping
   file, or classifying it in the tool). The sync engine keeps it as a ``map`` dead letter:
   accounted for, never stored as an invalid call nor dropped; ``dead-letters retry`` maps it
   again once the file or the record is fixed.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..connector import RawRecord
from ..errors import MappingError
from ..model import UNCLASSIFIED_FORBIDS, Call, CallType, Status
from .types import Classifier

__all__ = ["classify_before_validation", "refuse_unclassified_work"]

#: Keys of a call's values that belong to its status: the provisional call the classifier sees
#: is the record as registered, which every type may be.
_STATUS_KEYS = ("status", "waiting_on", "waiting_process")


def classify_before_validation(
    values: dict[str, Any], record: RawRecord, classifier: Classifier | None
) -> None:
    """Let ``classifier`` type the call ``values`` describe when the rules left it unclassified.

    The classifier is shown the call as registered (its status left out), so that a record in
    progress can be classified at all; the type it gives goes into ``values``. A call whose
    other values are invalid is left alone here: validating ``values`` names the problem.
    """
    if classifier is None or values.get("call_type") is not CallType.UNCLASSIFIED:
        return
    registered = {k: v for k, v in values.items() if k not in _STATUS_KEYS and v is not None}
    try:
        provisional = Call.model_validate(registered)
    except ValidationError:
        return
    verdict = classifier(provisional, record)
    if verdict is not None and verdict is not CallType.UNCLASSIFIED:
        values["call_type"] = CallType(verdict)


def refuse_unclassified_work(values: dict[str, Any], record: RawRecord) -> None:
    """Refuse a record mapped as unclassified but in a status of work, naming it.

    :raises MappingError: the record's reason to be a dead letter.
    """
    if values.get("call_type") is not CallType.UNCLASSIFIED:
        return
    try:
        status = Status(values.get("status") or Status.REGISTERED)
    except ValueError:
        return  # not a status at all: the call's own validation names the bad value
    if status not in UNCLASSIFIED_FORBIDS:
        return
    name = record.remote_key or record.remote_id
    raise MappingError(
        f"record {name!r} is {status.value} but unclassified: USM does no work on a call "
        "before it is classified; add a classify rule to the mapping file that gives it a "
        "type, or classify it in the tool, then retry the dead letter"
    )
