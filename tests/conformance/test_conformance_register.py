"""The accepted-exceptions register: parsing and refusals, matching, expiry, and what an
accepted finding does to the rate, verdict and score, in every output."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import jsonschema
import openpyxl
import pytest
from click.testing import CliRunner
from conformance_enterprise import Enterprise, make_enterprise

from usm_bridge.cli import cli
from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.exceptions_export import write_exports
from usm_bridge.conformance.register import load_register
from usm_bridge.conformance.renderers import HtmlRenderer, JsonRenderer, MarkdownRenderer
from usm_bridge.conformance.report import ConformanceReport, published_schema
from usm_bridge.conformance.sampling import SampleRequest
from usm_bridge.conformance.scoring import RULE
from usm_bridge.errors import ConfigurationError
from usm_bridge.plugins import PluginHost

# The enterprise's reports are made "now" = 2026-03-10 12:00 UTC (conformance_enterprise.NOW).
ENTRY = """\
  - check: {check}
    {covers}
    reason: {reason}
    approver: J. Smit
    approved: 2026-01-10
    expires: {expires}
"""


def _register(tmp_path: Path, *entries: dict[str, str], name: str = "reg.yaml") -> Path:
    text = "accepted:\n" + "".join(
        ENTRY.format(**{"reason": "accepted by the board", "expires": "2026-12-31", **entry})
        for entry in entries
    )
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _ref(check: str, reference: str, **more: str) -> dict[str, str]:
    """An entry covering one record by its reference."""
    return {"check": check, "covers": f"reference: {reference}", **more}


@pytest.fixture(scope="module")
def sqlite_enterprise_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Enterprise]:
    root = tmp_path_factory.mktemp("register")
    built = make_enterprise(f"sqlite:///{root / 'store.db'}", root)
    try:
        yield built
    finally:
        built.store.close()


def _report(enterprise: Enterprise, register: Path | None) -> ConformanceReport:
    loaded = load_register(register) if register is not None else None
    return build_report(enterprise.context(), PluginHost(), register=loaded)


def _outcome(report: ConformanceReport, check: str, unit: str | None) -> CheckOutcome:
    return next(o for o in report.outcomes if o.check_id == check and o.unit == unit)


# -- parsing and refusals -----------------------------------------------------------------------


def test_a_valid_register_loads_with_the_line_of_each_entry(tmp_path: Path) -> None:
    filtered = {"check": "data.service-agreement", "covers": "filter: {unit: hr, detail: x}"}
    loaded = load_register(_register(tmp_path, _ref("data.priority", "FAC-1"), filtered))
    assert loaded.lines == [2, 8]
    assert loaded.entries[0].reference == "FAC-1"
    assert loaded.entries[1].filter is not None and loaded.entries[1].filter.unit == "hr"
    assert loaded.entries[1].expires == date(2026, 12, 31)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "accepted:\n  - check: data.priority\n    referense: FAC-1\n",
            ":3: key accepted.0.referense",
            "unknown key 'referense'; did you mean 'reference'?",
        ),
        (
            "accepted:\n  - check: data.priority\n    reference: FAC-1\n    approver: A\n"
            "    approved: 2026-01-01\n    expires: 2026-02-01\n",
            ":2: key accepted.0.reason",
            "required key is missing",
        ),
        (
            "accepted:\n  - check: data.priority\n    reference: FAC-1\n    reason: r\n"
            "    approver: A\n    approved: 2026-01-01\n    expires: someday\n",
            ":7: key accepted.0.expires",
            "someday",
        ),
        (
            "accepted:\n  - check: data.priority\n    reference: FAC-1\n    reason: r\n"
            "    approver: A\n    approved: 2026-03-01\n    expires: 2026-02-01\n",
            ":2: key accepted.0",
            "expires is before approved",
        ),
        (
            "accepted:\n  - check: data.priority\n    reference: FAC-1\n    filter: {unit: hr}\n"
            "    reason: r\n    approver: A\n    approved: 2026-01-01\n    expires: 2026-02-01\n",
            ":2: key accepted.0",
            "give either reference or filter",
        ),
        (
            "accepted:\n  - check: data.priority\n    filter: {}\n    reason: r\n"
            "    approver: A\n    approved: 2026-01-01\n    expires: 2026-02-01\n",
            ":3: key accepted.0.filter",
            "a filter needs at least one of",
        ),
        (
            "accepted:\n  - check: data.priority\n    filter: {code: 'import os'}\n    reason: r\n"
            "    approver: A\n    approved: 2026-01-01\n    expires: 2026-02-01\n",
            ":3: key accepted.0.filter.code",
            "unknown key 'code'",
        ),
        ("accepted: [\n", ":2", "not valid YAML"),
        ("- a\n", ":1", "the top level is a list"),
    ],
)
def test_a_wrong_register_is_refused_naming_line_and_key(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = tmp_path / "reg.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_register(path)
    shown = str(caught.value)
    assert shown.startswith(f"{path}{where}"), shown
    assert message in shown


def test_a_missing_register_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exceptions register not found"):
        load_register(tmp_path / "nowhere.yaml")


def test_an_entry_naming_an_unknown_check_is_refused(tmp_path: Path) -> None:
    path = _register(tmp_path, _ref("data.priority", "FAC-1"), _ref("data.priorty", "FAC-1"))
    loaded = load_register(path)
    known = {check.id for check in PluginHost().conformance_checks()}
    with pytest.raises(ConfigurationError) as caught:
        loaded.check_ids(known)
    assert str(caught.value).startswith(f"{path}:8: key accepted.1.check: no installed check")
    assert "'data.priorty'" in str(caught.value)


# -- matching, expiry, and the counts -----------------------------------------------------------


def test_an_accepted_reference_leaves_the_rate_and_score(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    enterprise = sqlite_enterprise_open
    before = _outcome(_report(enterprise, None), "data.service-agreement", "hr")
    assert before.population is not None and before.population.exceptions == 2
    path = _register(tmp_path, {"check": "data.service-agreement", "covers": "reference: HR-3"})
    report = _report(enterprise, path)
    after = _outcome(report, "data.service-agreement", "hr")
    tested = after.population
    assert tested is not None and tested.exceptions == 1 and tested.size == before.population.size
    assert tested.rate == pytest.approx(1 / tested.size)
    assert [item.remote_key for item in after.evidence] == ["HR-5"]
    assert [(a.item.remote_key, a.entry, a.approver) for a in after.accepted] == [
        ("HR-3", 1, "J. Smit")
    ]
    assert after.verdict == "fail"  # the threshold is 0: one exception still fails
    assert after.score == round(100 * (1 - tested.rate), 2)
    # The unit's score recomputed from the report's own numbers.
    unit = report.unit("hr")
    assert unit is not None
    counted = [
        (o.weight, o.score) for o in report.outcomes_of("hr") if o.weight and o.score is not None
    ]
    total = sum(w for w, _ in counted)
    assert unit.score.score == round(sum(w * s for w, s in counted) / total, 1)
    assert report.exceptions_register is not None
    assert [(e.status, e.matched) for e in report.exceptions_register.entries] == [("applied", 1)]


def test_a_filter_accepting_every_exception_turns_the_verdict_and_the_unit_score(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    enterprise = sqlite_enterprise_open
    plain = _report(enterprise, None)
    path = _register(
        tmp_path,
        {"check": "data.service-agreement", "covers": "filter: {unit: hr, detail: NO SERVICE}"},
    )
    report = _report(enterprise, path)
    after = _outcome(report, "data.service-agreement", "hr")
    assert after.verdict == "pass" and after.score == 100.0 and after.evidence == []
    assert {a.item.remote_key for a in after.accepted} == {"HR-3", "HR-5"}
    assert "(2 accepted in the exceptions register)" in after.summary
    # The IT outcome of the same check is another unit: untouched.
    assert _outcome(report, "data.service-agreement", "it").verdict == "fail"
    old_unit, new_unit = plain.unit("hr"), report.unit("hr")
    assert old_unit is not None and new_unit is not None
    assert new_unit.score.score is not None and old_unit.score.score is not None
    assert new_unit.score.score > old_unit.score.score
    assert new_unit.score.failed == old_unit.score.failed - 1


@pytest.mark.parametrize(
    ("covers", "accepted"),
    [
        ("filter: {instance: it-snow, detail: service}", {"service"}),
        ("filter: {detail: lifecycle}", set()),
        ("filter: {unit: hr, detail: service}", set()),
    ],
)
def test_a_filter_by_instance_and_detail_on_a_mapping_check(
    sqlite_enterprise_open: Enterprise, tmp_path: Path, covers: str, accepted: set[str]
) -> None:
    path = _register(tmp_path, {"check": "mapping.fields", "covers": covers})
    after = _outcome(_report(sqlite_enterprise_open, path), "mapping.fields", "it")
    assert {a.item.detail.split()[2] for a in after.accepted} == accepted
    assert after.verdict == ("pass" if accepted else "warn")


@pytest.mark.parametrize(
    ("window", "accepted"),
    [
        ("{opened_since: 2026-03-07, opened_until: 2026-03-07}", {"FAC-3", "FAC-4", "FAC-6"}),
        ("{opened_since: 2026-03-08}", set()),
        ("{opened_until: 2026-03-06}", set()),
    ],
)
def test_a_filter_by_the_date_a_call_was_opened(
    sqlite_enterprise_open: Enterprise, tmp_path: Path, window: str, accepted: set[str]
) -> None:
    path = _register(tmp_path, {"check": "data.supplier-links", "covers": f"filter: {window}"})
    after = _outcome(_report(sqlite_enterprise_open, path), "data.supplier-links", "facilities")
    assert {a.item.remote_key for a in after.accepted} == accepted
    assert after.verdict == ("pass" if accepted else "fail")
    assert all(a.item.opened is not None and a.item.opened.date() == date(2026, 3, 7)
               for a in after.accepted)  # fmt: skip


def test_an_expired_entry_accepts_nothing_and_is_flagged(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    path = _register(
        tmp_path,
        # Expired the day before the report: IT-1 counts again.
        _ref("data.incident-confirmation", "IT-1", expires="2026-03-09"),
        # Expires on the report's day: still in force.
        _ref("data.priority", "FAC-1", expires="2026-03-10"),
        # In force, but names no finding: stale.
        _ref("data.priority", "FAC-99"),
    )
    report = _report(sqlite_enterprise_open, path)
    confirmation = _outcome(report, "data.incident-confirmation", "it")
    assert confirmation.accepted == [] and confirmation.verdict == "fail"
    assert [item.remote_key for item in confirmation.evidence] == ["IT-1"]
    priority = _outcome(report, "data.priority", "facilities")
    assert [a.item.remote_key for a in priority.accepted] == ["FAC-1"]
    assert priority.verdict == "pass"
    register = report.exceptions_register
    assert register is not None
    assert [(e.entry, e.status, e.matched) for e in register.entries] == [
        (1, "expired", 1),
        (2, "applied", 1),
        (3, "unmatched", 0),
    ]
    assert [e.entry for e in register.flagged()] == [1, 3]


# -- outputs --------------------------------------------------------------------------------


@pytest.fixture
def accepted_report(sqlite_enterprise_open: Enterprise, tmp_path: Path) -> ConformanceReport:
    path = _register(
        tmp_path,
        _ref("data.service-agreement", "HR-3", reason='"signed \u202eevil\u202c later"'),
        _ref("data.priority", "FAC-1", expires="2026-03-01"),
        _ref("data.priority", "FAC-99"),
    )
    return _report(sqlite_enterprise_open, path)


def test_the_json_holds_the_accepted_findings_and_the_register(
    accepted_report: ConformanceReport,
) -> None:
    data = json.loads(JsonRenderer().render(accepted_report))
    jsonschema.Draft202012Validator(json.loads(published_schema())).validate(data)
    outcome = next(
        o
        for o in data["outcomes"]
        if o["check_id"] == "data.service-agreement" and o["unit"] == "hr"
    )
    assert outcome["accepted"][0]["item"]["remote_key"] == "HR-3"
    assert outcome["accepted"][0]["expires"] == "2026-12-31"
    statuses = [e["status"] for e in data["exceptions_register"]["entries"]]
    assert statuses == ["applied", "expired", "unmatched"]
    assert data["scoring"]["text"] == RULE
    assert "accepted-exceptions register" in RULE


def test_html_and_markdown_show_accepted_findings_and_flagged_entries(
    accepted_report: ConformanceReport,
) -> None:
    html = HtmlRenderer().render(accepted_report)
    assert 'data-accepted="1"' in html
    # Ticket text from the register goes through the bdi filter: isolated, never raw.
    assert "<bdi>signed \u202eevil\u202c later</bdi>" in html
    assert 'data-entry="2" data-status="expired"' in html
    assert 'data-entry="3" data-status="unmatched"' in html
    markdown = MarkdownRenderer().render(accepted_report)
    assert "## Accepted exceptions register" in markdown
    assert "| 2 | EXPIRED | data.priority | reference FAC-1 | 1 |" in markdown
    assert "| 3 | UNMATCHED | data.priority | reference FAC-99 | 0 |" in markdown
    assert "Accepted in the exceptions register, not counted: 1" in markdown


def test_the_exports_mark_accepted_rows(accepted_report: ConformanceReport, tmp_path: Path) -> None:
    csv_path, xlsx_path = tmp_path / "e.csv", tmp_path / "e.xlsx"
    written = write_exports(accepted_report, [csv_path, xlsx_path])
    counted = sum(len(o.evidence) for o in accepted_report.outcomes)
    assert written == {csv_path: counted, xlsx_path: counted}
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    accepted = [row for row in rows if row["accepted"]]
    assert len(rows) == counted + 1
    assert [(row["reference"], row["check"]) for row in accepted] == [
        ("HR-3", "data.service-agreement")
    ]
    assert accepted[0]["accepted"].startswith("entry 1: signed ")
    assert "approved by J. Smit, expires 2026-12-31" in accepted[0]["accepted"]
    sheet = openpyxl.load_workbook(xlsx_path).active
    assert sheet is not None
    header = [cell.value for cell in sheet[1]]
    column = header.index("accepted")
    marked = [row for row in sheet.iter_rows(min_row=2, values_only=True) if row[column]]
    assert [(row[header.index("reference")], row[column]) for row in marked] == [
        ("HR-3", accepted[0]["accepted"])
    ]
    assert sheet.max_row == counted + 2


# -- the command: the config's register, --register, provenance -----------------------------


def _invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(config), "--offline", "--period", "2026-03", *args]
    )
    return result.exit_code, result.stderr


def test_the_config_names_the_register_and_provenance_records_its_digest(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    enterprise = sqlite_enterprise_open
    folder = enterprise.config_path.parent
    register = _register(
        folder,
        {"check": "data.priority", "covers": "reference: FAC-1", "expires": "2099-12-31"},
        name="accepted-exceptions.yaml",
    )
    config = folder / "with-register.toml"
    config.write_text(
        enterprise.config_path.read_text(encoding="utf-8")
        + '\n[conformance]\nexceptions_register = "accepted-exceptions.yaml"\n',
        encoding="utf-8",
    )
    out = tmp_path / "r.json"
    code, err = _invoke(config, "-f", "json", "-o", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    digest = data["provenance"]["exceptions_register"]
    assert digest["path"] == str(register)
    assert digest["sha256"] == hashlib.sha256(register.read_bytes()).hexdigest()
    assert data["exceptions_register"]["entries"][0]["status"] == "applied"

    # --register wins over the config's; an unknown check in it stops the report (exit 2).
    other = _register(tmp_path, {"check": "acme.nothing", "covers": "reference: X-1"})
    code, err = _invoke(config, "-f", "json", "-o", str(out), "--register", str(other))
    assert code == 2
    assert f"{other}:2: key accepted.0.check: no installed check 'acme.nothing'" in err.replace(
        "\n", ""
    )


def test_without_a_register_the_report_says_none_was_used(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    code, err = _invoke(sqlite_enterprise_open.config_path, "-f", "json", "-o", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["exceptions_register"] is None
    assert data["provenance"]["exceptions_register"] is None
    assert all(outcome["accepted"] == [] for outcome in data["outcomes"])


def test_a_sampled_item_the_register_accepts_is_marked_accepted_not_an_exception(
    sqlite_enterprise_open: Enterprise, tmp_path: Path
) -> None:
    path = _register(
        tmp_path,
        {"check": "data.service-agreement", "covers": "filter: {unit: hr, detail: NO SERVICE}"},
    )
    context = sqlite_enterprise_open.context()
    context.sample = SampleRequest(size=1000, seed="audit")  # every item of the population
    report = build_report(context, PluginHost(), register=load_register(path))
    outcome = _outcome(report, "data.service-agreement", "hr")
    by_key = {item.remote_key: item.detail for item in outcome.sample}
    for key in ("HR-3", "HR-5"):
        assert by_key[key].startswith("accepted exception (register entry 1): "), by_key[key]
    assert not any(detail.startswith("exception: ") for detail in by_key.values()), by_key
