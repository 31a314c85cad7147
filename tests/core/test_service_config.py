"""``check`` against the registry: a mapping's service table and routes choosing by service.

Each refusal is one line naming the file, the line and the key (``usm-bridge check`` exits 2).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from registry_toml import REGISTRY, matrix_toml, servicenow_instance

from usm_bridge.agreements import Agreements
from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.mapping import loads_mapping
from usm_bridge.mapping.service_values import service_value_problems
from usm_bridge.plugins import PluginHost
from usm_bridge.service_routes import receiving_instances
from usm_bridge.sync.instances import InstanceRegistry

MAPPING = """\
version: 1
tool: servicenow
fields:
  title: {path: short_description, required: true}
  service:
    path: service_offering
    fallback: [business_service]
    transform: servicenow_value
    values:
      off-1: laptops
      off-2: network
    default: laptops
"""

UNITS = (
    "[units.hr]\n[units.facilities]\n[units.it]\n"
    + matrix_toml("units.it", ("p1", "p2", "p3"))
    + servicenow_instance("hr-mail", "hr", "hr.yaml")
    + servicenow_instance("fac-snow", "facilities", "plain.yaml")
    + servicenow_instance("it-requests", "it", "it.yaml")
    + servicenow_instance("it-incidents", "it", "plain.yaml")
)

#: laptops and network of it, workplace of facilities (and agreements between them)
SERVICES = "\n" + REGISTRY

PLAIN = "version: 1\ntool: servicenow\nfields:\n  title: {path: short_description}\n"


def _write(tmp_path: Path, text: str, *, it_mapping: str = MAPPING) -> Path:
    (tmp_path / "it.yaml").write_text(it_mapping, encoding="utf-8")
    (tmp_path / "hr.yaml").write_text(PLAIN, encoding="utf-8")
    (tmp_path / "plain.yaml").write_text(PLAIN, encoding="utf-8")
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.strip()


def _refused(path: Path) -> str:
    code, err = _check(path)
    assert code == 2, err
    (line,) = err.splitlines()
    return line


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- a mapping's service table -------------------------------------------------------------


def test_a_service_table_of_the_units_services_is_accepted(tmp_path: Path) -> None:
    code, err = _check(_write(tmp_path, UNITS + SERVICES))
    assert code == 0, err


@pytest.mark.parametrize(
    ("old", "new", "key", "why"),
    [
        ("off-2: network", "off-2: netwrok", "fields.service.values.off-2",
         "service 'netwrok' is not a registered service"),
        ("off-2: network", "off-2: workplace", "fields.service.values.off-2",
         "service 'workplace' is a service of unit 'facilities'"),
        ("default: laptops", "default: payroll", "fields.service.default",
         "service 'payroll' is not a registered service"),
    ],
)  # fmt: skip
def test_a_mapped_service_that_is_not_the_units_is_refused_naming_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, why: str
) -> None:
    path = _write(tmp_path, UNITS + SERVICES, it_mapping=MAPPING.replace(old, new))
    line = _refused(path)
    mapping = tmp_path / "it.yaml"
    assert f"{mapping}:{_line_of(mapping, new)}: key {key}: {why}" in line
    assert "unit 'it'" in line and "its services: laptops, network" in line


def test_without_registered_services_any_service_value_is_taken(tmp_path: Path) -> None:
    path = _write(tmp_path, UNITS, it_mapping=MAPPING.replace("off-2: network", "off-2: x"))
    code, err = _check(path)
    assert code == 0, err


def test_every_wrong_value_of_a_table_is_found(tmp_path: Path) -> None:
    text = MAPPING.replace("off-1: laptops", "off-1: a").replace("off-2: network", "off-2: b")
    mapping = loads_mapping(text, source="it.yaml")
    config = load_config(_write(tmp_path, UNITS + SERVICES))
    problems = list(service_value_problems(mapping, "it", Agreements.of(config)))
    assert [where for where, _ in problems] == [
        "it.yaml:10: key fields.service.values.off-1",
        "it.yaml:11: key fields.service.values.off-2",
    ]


# -- routes choosing their supplier by service --------------------------------------------


BY_SERVICE = """
[[routes]]
name = "hr-by-service"
from = "hr"
to = "by-service"
when = { call_type = "service_request" }
targets = { it = "it-requests" }
"""
NO_TARGETS = BY_SERVICE.replace('targets = { it = "it-requests" }', "")


def test_a_by_service_route_naming_the_instance_of_each_provider_is_accepted(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, UNITS + SERVICES + BY_SERVICE)
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "route hr-by-service: hr -> by-service (fac-snow, it-requests)" in result.output
    config = load_config(path)
    # facilities has one instance, it names its own
    assert receiving_instances(config, config.routes[0]) == ["fac-snow", "it-requests"]


@pytest.mark.parametrize(
    ("services", "route", "key", "message"),
    [
        ("", BY_SERVICE, "routes.0.to", "no service is registered"),
        (SERVICES, NO_TARGETS, "routes.0.targets",
         "unit 'it' provides services but has 2 instances, and the route names none"),
        (SERVICES, BY_SERVICE.replace('it = "it-requests"', 'it = "fac-snow"'),
         "routes.0.targets.it", "'fac-snow' is not an instance of unit 'it'"),
        (SERVICES, BY_SERVICE.replace('it = "it-requests"', 'ops = "x"'), "routes.0.targets.ops",
         "unit 'ops' is not defined"),
        (SERVICES, BY_SERVICE + 'target = "it-requests"\n', "routes.0.target",
         "a by-service route has no single target"),
        ('[services.payroll]\nprovider = "hr"\n', NO_TARGETS, "routes.0.to",
         "every registered service is provided by unit 'hr'"),
        (SERVICES, '[[routes]]\nfrom = "hr"\nto = "facilities"\ntargets = { it = "it-requests" }\n',
         "routes.0.targets", "targets names an instance per provider unit"),
    ],
    ids=["no-services", "several-instances", "not-its-instance", "unknown-unit",
         "single-target", "only-own-services", "targets-without-by-service"],
)  # fmt: skip
def test_a_by_service_route_that_can_never_choose_is_refused_naming_the_key(
    tmp_path: Path, services: str, route: str, key: str, message: str
) -> None:
    path = _write(tmp_path, UNITS + services + route)
    line = _refused(path)
    assert f": key {key}: " in line and message in line, line
    assert line.startswith(f"error: {path}:")


# -- the unit's matrix at ingest ------------------------------------------------------------


def test_ingest_derives_priorities_with_the_units_own_matrix(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, UNITS + SERVICES))
    registry = InstanceRegistry(config, PluginHost())
    assert registry.context("it-requests").priority_matrix.classes == ("p1", "p2", "p3")
    assert registry.context("fac-snow").priority_matrix == config.priority
