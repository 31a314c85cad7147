"""``[conformance]`` thresholds: read from the config, per check and per unit, changing the
verdict a data check's exception rate gives; refused with file, line and key when wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conformance_enterprise import Enterprise

from usm_bridge.config import load_config
from usm_bridge.conformance.api import Threshold
from usm_bridge.conformance.checks import BUILTIN_CHECKS, ServiceAgreementCheck
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import run_checks
from usm_bridge.conformance.thresholds import ConformanceSettings
from usm_bridge.errors import ConfigurationError

UNITS = "[units.hr]\n\n[units.it]\n\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(UNITS + text, encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def test_thresholds_are_read_per_check_and_per_unit(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[conformance.thresholds]\n"
        '"data.priority" = { pass_up_to = 0.02, warn_up_to = 0.1 }\n'
        '"data.transitions" = 0.01\n\n'
        "[conformance.units.hr.thresholds]\n"
        '"data.priority" = 0.5\n',
    )
    settings = load_config(path).conformance
    default = Threshold(pass_up_to=0, warn_up_to=0)
    assert settings.threshold("data.priority", "it", default) == Threshold(
        pass_up_to=0.02, warn_up_to=0.1
    )
    # a bare number passes up to it and fails above: no warn band
    assert settings.threshold("data.transitions", "it", default) == Threshold(
        pass_up_to=0.01, warn_up_to=0.01
    )
    assert settings.threshold("data.priority", "hr", default) == Threshold(
        pass_up_to=0.5, warn_up_to=0.5
    )
    assert settings.threshold("data.classified", "hr", default) is default


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1.5", "less than or equal to 1"),
        ("-0.1", "greater than or equal to 0"),
        ("{ pass_up_to = 0.2, warn_up_to = 0.1 }", "warn_up_to must not be below pass_up_to"),
        ("{ pass = 0.2 }", "Field required"),
        ('"5%"', "valid dictionary"),
        ("true", "valid dictionary"),  # not the number 1
    ],
)
def test_a_bad_threshold_is_refused_on_its_line(tmp_path: Path, value: str, problem: str) -> None:
    path = _write(tmp_path, f'[conformance.thresholds]\n"data.priority" = {value}\n')
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    message = str(caught.value)
    line = _line_of(path, '"data.priority"')
    assert f"{path}:{line}: key conformance.thresholds.data.priority" in message
    assert problem in message


def test_thresholds_for_an_unknown_unit_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[conformance.units.finance.thresholds]\n"data.priority" = 0.1\n')
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    line = _line_of(path, "[conformance.units.finance")
    assert f"{path}:{line}: key conformance.units.finance.thresholds" in str(caught.value)
    assert "'finance'" in str(caught.value)


def _service_outcomes(context: ReportContext) -> dict[str | None, tuple[str, float]]:
    outcomes = run_checks(context, [ServiceAgreementCheck()])
    found = {}
    for outcome in outcomes:
        assert outcome.population is not None
        found[outcome.unit] = (outcome.verdict, outcome.population.rate)
    return found


def test_the_threshold_decides_the_verdict_per_check_and_per_unit(
    context: ReportContext,
) -> None:
    before = _service_outcomes(context)
    failing = {unit: rate for unit, (verdict, rate) in before.items() if verdict == "fail"}
    assert len(failing) >= 2, before  # the enterprise has defects in several units
    (first, first_rate), (second, second_rate) = sorted(failing.items())[:2]
    # every unit: warn up to the larger of the two rates
    context.conformance = ConformanceSettings.model_validate(
        {
            "thresholds": {
                "data.service-agreement": {
                    "pass_up_to": 0,
                    "warn_up_to": max(first_rate, second_rate),
                }
            },
            # the first unit only: pass up to its own rate (the unit's entry wins)
            "units": {first: {"thresholds": {"data.service-agreement": first_rate}}},
        }
    )
    after = _service_outcomes(context)
    assert after[first] == ("pass", first_rate)
    assert after[second] == ("warn", second_rate)
    sources = {
        o.unit: o.population.threshold_from
        for o in run_checks(context, [ServiceAgreementCheck()])
        if o.population is not None
    }
    assert sources[first] == f"[conformance.units.{first}.thresholds]"
    assert sources[second] == "[conformance.thresholds]"
    # just below the rate, the same unit fails again
    context.conformance = ConformanceSettings.model_validate(
        {"units": {first: {"thresholds": {"data.service-agreement": first_rate * 0.99}}}}
    )
    assert _service_outcomes(context)[first] == ("fail", first_rate)


def test_the_outcome_states_the_threshold_and_the_rule(context: ReportContext) -> None:
    outcomes = run_checks(context, BUILTIN_CHECKS())
    for outcome in outcomes:
        if outcome.category == "mapping":
            assert outcome.population is not None and outcome.population.threshold is None
            assert outcome.population.rule.startswith("By the check's own rule")
            continue
        assert outcome.population is not None, outcome.check_id
        tested = outcome.population
        assert tested.exceptions <= tested.size
        if outcome.check_id == "data.dead-letters":
            continue
        assert tested.threshold is not None
        assert tested.threshold_from == "the check's default"
        if tested.size and outcome.check_id != "data.classified":
            assert tested.rate is not None
            assert outcome.verdict == tested.threshold.verdict(tested.rate)
            assert tested.rule == tested.threshold.sentence()


def test_the_report_command_applies_the_config_file(sqlite_enterprise: Enterprise) -> None:
    def verdicts() -> dict[str, str]:
        code, out, err = sqlite_enterprise.report_command("-f", "json")
        assert code == 0, err
        outcomes = json.loads(out)["outcomes"]
        return {
            o["unit"]: o["verdict"] for o in outcomes if o["check_id"] == "data.service-agreement"
        }

    strict = verdicts()
    assert "fail" in strict.values()
    with sqlite_enterprise.config_path.open("a", encoding="utf-8") as handle:
        handle.write('\n[conformance.thresholds]\n"data.service-agreement" = 1.0\n')
    loose = verdicts()
    assert set(loose) == set(strict)
    assert set(loose.values()) == {"pass"}


@pytest.mark.parametrize("check", ["acme.nothing", "mapping.fields"])
def test_a_threshold_for_a_check_that_takes_none_is_refused(
    sqlite_enterprise: Enterprise, check: str
) -> None:
    with sqlite_enterprise.config_path.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[conformance.thresholds]\n"{check}" = 0.1\n')
    code, out, err = sqlite_enterprise.report_command("-f", "json")
    assert code == 2
    assert out == ""
    line = _line_of(sqlite_enterprise.config_path, f'"{check}"')
    text = " ".join(err.split())
    assert f"{sqlite_enterprise.config_path}:{line}: key conformance.thresholds.{check}" in text
    assert f"no installed check '{check}' takes a threshold" in text
    assert "Traceback" not in err


def test_the_report_command_draws_a_sample(sqlite_enterprise: Enterprise) -> None:
    def samples(*args: str) -> dict[str, list[str | None]]:
        code, out, err = sqlite_enterprise.report_command("-f", "json", *args)
        assert code == 0, err
        data = json.loads(out)
        assert data["sampling"]["size"] == 2
        return {
            f"{o['check_id']}@{o['unit']}": [item["remote_key"] for item in o["sample"]]
            for o in data["outcomes"]
            if o["category"] == "data" and o["check_id"] != "data.dead-letters"
        }

    first = samples("--sample", "2", "--seed", "audit-2026")
    assert first == samples("--sample", "2", "--seed", "audit-2026")
    assert any(first.values())
    assert all(len(keys) <= 2 for keys in first.values())
    code, _, err = sqlite_enterprise.report_command("--sample", "0")
    assert code == 2 and "--sample" in err and "Traceback" not in err


def test_the_samples_export_lists_each_sampled_item(
    sqlite_enterprise: Enterprise, tmp_path: Path
) -> None:
    import csv

    from openpyxl import load_workbook

    target = tmp_path / "out"
    code, out, err = sqlite_enterprise.report_command(
        "-f", "json", "--sample", "2", "--seed", "s", "--samples", str(target / "sample.csv"),
        "--samples", str(target / "sample.xlsx"),
    )  # fmt: skip
    assert code == 0, err
    drawn = [
        (o["check_id"], o["unit"], item["remote_key"], item["detail"])
        for o in json.loads(out)["outcomes"]
        for item in o["sample"]
    ]
    assert drawn
    assert f"wrote {target / 'sample.csv'}: {len(drawn)} sampled items" in " ".join(err.split())
    with (target / "sample.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["check"], r["unit"], r["reference"], r["observed"]) for r in rows] == drawn
    # Closed here: a read-only workbook keeps its file open, and the warning of its collection
    # fails whichever test runs at that moment.
    book = load_workbook(target / "sample.xlsx", read_only=True)
    try:
        header, *cells = book["Sample"].iter_rows(values_only=True)
    finally:
        book.close()
    at = {name: header.index(name) for name in ("check", "unit", "reference", "observed")}
    assert [tuple(row[at[name]] for name in at) for row in cells] == drawn
    code, _, err = sqlite_enterprise.report_command("--samples", str(target / "s.csv"))
    assert code == 2 and "--sample N" in err
    code, _, err = sqlite_enterprise.report_command("--sample", "1", "--samples", "s.txt")
    assert code == 2 and "--samples s.txt" in " ".join(err.split())
