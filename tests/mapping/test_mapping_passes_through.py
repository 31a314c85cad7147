"""``fields.status.passes_through``: a mapping declares the USM states its tool's workflow skips.

ServiceNow closes a delivered requested item at once (Closed Complete): the table has no state
for fulfilled, so the bridge sees in_progress -> closed. The shipped mapping declares
``closed: [fulfilled]``; a declaration that could hide a real skip is refused at load time,
naming file, line and key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from usm_bridge.conformance.checks import MappingLifecycleCheck
from usm_bridge.conformance.context import InstanceInfo
from usm_bridge.errors import MappingFileError
from usm_bridge.mapping import load_mapping, loads_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.passes_through import legal_through, statuses_read
from usm_bridge.model import Status

SHIPPED = sorted(SHIPPED_MAPPINGS_DIR.glob("*.yaml"))
ENTERPRISE = Path(SHIPPED_MAPPINGS_DIR).parent / "enterprise" / "mappings"

_FILE = """\
version: 1
tool: servicenow
fields:
  title: {{path: short_description}}
  status:
    path: state
    values: {{"1": classified, "2": in_progress, "6": {six}, "3": closed, "4": cancelled}}
    passes_through:
{declaration}
"""


def _load(declaration: str, six: str) -> None:
    loads_mapping(_FILE.format(declaration=declaration, six=six), source="items.yaml")


def test_a_move_through_the_declared_states_is_legal() -> None:
    assert not legal_through(Status.IN_PROGRESS, Status.CLOSED)
    assert legal_through(Status.IN_PROGRESS, Status.CLOSED, [Status.FULFILLED])
    assert legal_through(Status.WAITING, Status.CLOSED, [Status.FULFILLED])
    assert legal_through(Status.REGISTERED, Status.CLOSED, [Status.FULFILLED])
    assert legal_through(Status.FULFILLED, Status.CLOSED, [Status.FULFILLED])
    # A state USM has no way out of stays closed to the declaration.
    assert not legal_through(Status.CANCELLED, Status.CLOSED, [Status.FULFILLED])
    assert not legal_through(Status.CLOSED, Status.IN_PROGRESS, [Status.FULFILLED])


def test_a_valid_declaration_loads() -> None:
    mapping = loads_mapping(
        _FILE.format(declaration="      closed: [fulfilled]", six="waiting:customer"),
        source="x.yaml",
    )
    assert mapping.spec.fields.status is not None
    assert mapping.spec.fields.status.passes_through == {Status.CLOSED: [Status.FULFILLED]}


@pytest.mark.parametrize(
    ("declaration", "six", "message"),
    [
        (
            "      closed: [fulfilled]\n      confirmed: [fulfilled]",
            "waiting:customer",
            "passes_through names 'confirmed', but no tool status reads as it",
        ),
        (
            "      closed: [fulfilled]",
            "fulfilled",
            "'fulfilled' has a tool status of its own, so a move that skips it is a real skip",
        ),
        (
            "      closed: [confirmed, fulfilled]",
            "waiting:customer",
            "confirmed -> fulfilled -> closed is not a lifecycle path: "
            "confirmed -> fulfilled is not a legal move",
        ),
        ("      closed: []", "waiting:customer", "passes_through of 'closed' lists no state"),
        (
            "      closed: [fulfilled, fulfilled]",
            "waiting:customer",
            "passes_through of 'closed' repeats a state",
        ),
        ("      closed: [done]", "waiting:customer", "Input should be"),
    ],
)
def test_a_declaration_that_could_hide_a_real_skip_is_refused(
    declaration: str, six: str, message: str
) -> None:
    with pytest.raises(MappingFileError) as caught:
        _load(declaration, six)
    text = str(caught.value)
    assert message in text
    # File, line and key: the first declaration is on line 9 of the file, the second on 10.
    where = (
        "10: key fields.status.passes_through.confirmed"
        if "confirmed:" in declaration
        else ("9: key fields.status.passes_through.closed")
    )
    assert text.startswith(f"items.yaml:{where}"), text


@pytest.mark.parametrize("path", [*SHIPPED, *ENTERPRISE.glob("*.yaml")], ids=lambda p: p.name)
def test_every_status_a_shipped_mapping_reads_is_reachable_in_the_lifecycle(path: Path) -> None:
    """Each shipped mapping checked against lifecycle.py: a status the tool reaches only by
    skipping a USM state (closed without fulfilled) is declared, so no call of that tool
    makes a normal move that the report calls illegal."""
    mapping = load_mapping(path)
    info = InstanceInfo(name="x", unit="u", kind=mapping.spec.tool, mapping=mapping)
    outcome = MappingLifecycleCheck().check(None, info, mapping)  # type: ignore[arg-type]
    assert not [e.detail for e in outcome.evidence if "cannot be reached" in e.detail]
    assert outcome.metrics["states_reachable"] == len(statuses_read(mapping.spec.fields.status))


@pytest.mark.parametrize(
    "path",
    [
        SHIPPED_MAPPINGS_DIR / "servicenow-sc-req-item.yaml",
        ENTERPRISE / "servicenow-sc-req-item.yaml",
    ],
    ids=["shipped", "enterprise"],
)
def test_servicenow_requested_items_declare_that_closing_passes_through_fulfilled(
    path: Path,
) -> None:
    mapping = load_mapping(path)
    status = mapping.spec.fields.status
    assert status is not None
    assert status.passes_through == {Status.CLOSED: [Status.FULFILLED]}
    info = InstanceInfo(name="it-requests", unit="it", kind="servicenow", mapping=mapping)
    outcome = MappingLifecycleCheck().check(None, info, mapping)  # type: ignore[arg-type]
    # Shown once, as a property of the mapping; fulfilled is not "missing".
    assert outcome.verdict == "warn"
    assert outcome.summary.endswith(
        "missing: waiting, confirmed; closed passes through fulfilled (declared by the mapping)"
    )
    assert outcome.metrics["passes_through"] == "closed passes through fulfilled"
    # Not a finding: the evidence lists only the states the tool has no status for.
    assert [e.detail for e in outcome.evidence] == [
        "state waiting has no status in the tool",
        "state confirmed has no status in the tool",
    ]
