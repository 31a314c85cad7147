"""``usm-bridge init``: a starter config generated from the installed connectors.

Every expectation about settings is computed from the connectors' settings models, so a
setting added to a connector is expected in the starter without touching these tests.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel, Field, SecretStr, TypeAdapter

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.connector import ConnectorSettings
from usm_bridge.mapping.files import shipped_mappings
from usm_bridge.plugins import PluginHost
from usm_bridge.starter import render_starter
from usm_bridge.starter.example import example_units
from usm_bridge.starter.settings_docs import describe_settings, is_secret_name
from usm_bridge.starter.toml_lines import settings_lines

ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.fixture(scope="module")
def starter_text(host: PluginHost) -> str:
    return render_starter(host).text


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def env_refs(value: Any) -> set[str]:
    """The variables a parsed TOML value references."""
    if isinstance(value, dict):
        return set().union(*(env_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_refs(v) for v in value))
    if isinstance(value, str):
        return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value))
    return set()


def settings_block(text: str, kind: str) -> tuple[str, str]:
    """The settings table of the instance of ``kind`` (the example's, or the commented one of a
    connector the example does not use): its header and its lines, up to the next blank line."""
    instances = {
        unit.kind: f"[instances.{unit.instance}.settings]"
        for unit in example_units()
        if f"[instances.{unit.instance}.settings]" in text
    }
    header = instances.get(kind, f"# [instances.{kind}.settings]")
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("", start)
    return header, "\n".join(lines[start:end]) + "\n"


def uncomment(block: str) -> str:
    """Remove one "# " from every setting line; "##" prose stays a comment."""
    return "".join(
        line[2:] if line.startswith("# ") else line for line in block.splitlines(keepends=True)
    )


def table_of(parsed: dict[str, Any], header: str) -> dict[str, Any]:
    table: Any = parsed
    for key in header.strip("# []").split("."):
        table = table[key]
    assert isinstance(table, dict)
    return table


def nested_model(annotation: Any) -> type[BaseModel] | None:
    options = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    if len(options) == 1 and isinstance(options[0], type) and issubclass(options[0], BaseModel):
        return options[0]
    return None


def is_secret(name: str, annotation: Any) -> bool:
    options = getattr(annotation, "__args__", (annotation,))
    return SecretStr in options or is_secret_name(name)


def check_every_value(model: type[BaseModel], table: dict[str, Any], where: str) -> None:
    """Every setting of ``model`` is in ``table`` with a value its own type accepts, and every
    secret is an environment reference or a file."""
    context = {"base_dir": Path("/etc/usm-bridge")}
    for name, field in model.model_fields.items():
        assert name in table, f"{where}.{name} is not in the starter"
        value = table[name]
        inner = nested_model(field.annotation)
        if inner is not None:
            check_every_value(inner, value, f"{where}.{name}")
            continue
        if is_secret(name, field.annotation):
            assert (isinstance(value, str) and ENV_REF.match(value)) or (
                isinstance(value, dict) and set(value) == {"file"}
            ), f"{where}.{name} shows a secret value"
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])
        adapter.validate_python(value, context=context)


def set_and_defaults(
    model: type[BaseModel], given: dict[str, Any], shown: dict[str, Any]
) -> dict[str, Any]:
    """What an admin gets by removing the "# " of the defaults: the values given, the required
    ones shown, and every default shown; settings unset by default stay unset."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        inner = nested_model(field.annotation)
        if name in given and inner is not None:
            out[name] = set_and_defaults(inner, given[name], shown[name])
        elif name in given:
            out[name] = given[name]
        elif field.is_required() or field.get_default(call_default_factory=True) is not None:
            out[name] = shown[name]
    return out


def test_the_starter_is_valid_toml_with_three_units_and_two_routes(starter_text: str) -> None:
    parsed = tomllib.loads(starter_text)
    assert set(parsed["units"]) == {"hr", "facilities", "it"}
    kinds = {name: inst["kind"] for name, inst in parsed["instances"].items()}
    assert sorted(kinds.values()) == ["email", "jira", "servicenow"]
    routes = [(r["from"], r["to"]) for r in parsed["routes"]]
    assert routes == [("hr", "facilities"), ("facilities", "it")]


def test_every_installed_connector_appears_with_every_setting_and_no_secret_value(
    host: PluginHost, starter_text: str
) -> None:
    kinds = host.connector_types()
    assert {"email", "jira", "servicenow", "acme"} <= set(kinds), "make install installs these"
    for kind, connector in kinds.items():
        header, block = settings_block(starter_text, kind)
        shown = table_of(tomllib.loads(uncomment(block)), header)
        check_every_value(connector.settings_model, shown, f"{kind} settings")


def test_uncommenting_the_defaults_gives_settings_the_connector_accepts(
    host: PluginHost, starter_text: str
) -> None:
    """The comments do not lie: the defaults shown are the connector's own."""
    for kind, connector in host.connector_types().items():
        header, block = settings_block(starter_text, kind)
        model = connector.settings_model
        active = tomllib.loads(block) if not header.startswith("#") else {}
        given = table_of(active, header) if active else {}
        shown = table_of(tomllib.loads(uncomment(block)), header)
        uncommented = set_and_defaults(model, given, shown)
        required = {k: shown[k] for k, f in model.model_fields.items() if f.is_required()}
        as_given = model.model_validate({**required, **given})
        assert model.model_validate(uncommented) == as_given, kind
        assert set(uncommented) - set(given) - set(required), f"{kind}: no default shown"


def test_a_third_party_connector_appears_commented_out(starter_text: str) -> None:
    assert "## acme: ACME ticket tool (test only) (usm-bridge-acme 1.2.3)" in starter_text
    assert '# kind = "acme"' in starter_text
    assert "acme" not in tomllib.loads(starter_text)["instances"]


def test_the_shipped_connectors_describe_every_setting(host: PluginHost) -> None:
    def undescribed(model: type[BaseModel], where: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{where}.{name}")
            inner = nested_model(field.annotation)
            if inner is not None:
                missing += undescribed(inner, f"{where}.{name}")
        return missing

    for kind in ("email", "jira", "servicenow"):
        assert undescribed(host.connector_type(kind).settings_model, kind) == []


def test_the_example_names_shipped_mappings() -> None:
    shipped = {path.name for path in shipped_mappings()}
    assert {unit.mapping for unit in example_units()} <= shipped


def test_init_writes_a_config_that_check_offline_accepts_once_its_variables_are_set(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bridge" / "usm-bridge.toml"
    result = invoke("init", str(path))
    assert result.exit_code == 0, result.output
    variables = env_refs(tomllib.loads(path.read_text(encoding="utf-8")))
    assert len(variables) >= 3
    for name in variables:
        assert f"{name}=..." in result.output
    assert f"usm-bridge check -c {path} --offline" in result.output
    assert f"usm-bridge sync -c {path} --once" in result.output

    missing = invoke("check", "--offline", "-c", str(path), env=dict.fromkeys(variables))
    assert missing.exit_code == 2
    named = re.search(r"environment variable (\w+) is not set", missing.output)
    assert named is not None and named.group(1) in variables

    env = {name: f"value-of-{name}" for name in variables}
    checked = invoke("check", "--offline", "-c", str(path), env=env)
    assert checked.exit_code == 0, checked.output
    assert "3 units, 3 instances, 2 routes: valid" in checked.output
    config = load_config(path, environ=env)
    assert (len(config.units), len(config.instances), len(config.routes)) == (3, 3, 2)
    for instance in config.instances.values():
        assert instance.mapping.is_file()


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.toml"
    path.write_text("# mine\n", encoding="utf-8")
    refused = invoke("init", str(path))
    assert refused.exit_code == 2
    assert "file exists; pass --force" in refused.output
    assert path.read_text(encoding="utf-8") == "# mine\n"
    assert invoke("init", "--force", str(path)).exit_code == 0
    assert "[units.hr]" in path.read_text(encoding="utf-8")


def test_init_print_writes_nothing(tmp_path: Path, host: PluginHost) -> None:
    path = tmp_path / "usm-bridge.toml"
    result = invoke("init", "--print", str(path))
    assert result.exit_code == 0
    assert result.output == render_starter(host).text
    assert list(tmp_path.iterdir()) == []


def test_init_connector_keeps_only_those_units_and_their_routes(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.toml"
    result = invoke("init", "--connector", "jira", "--connector", "servicenow", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    parsed = tomllib.loads(text)
    assert set(parsed["units"]) == {"facilities", "it"}
    assert [(r["from"], r["to"]) for r in parsed["routes"]] == [("facilities", "it")]
    assert "acme" not in text and "email" not in parsed["instances"]
    env = {name: "x" for name in env_refs(parsed)}
    assert invoke("check", "--offline", "-c", str(path), env=env).exit_code == 0


def test_init_refuses_a_connector_that_is_not_installed(tmp_path: Path) -> None:
    result = invoke("init", "--connector", "remedy", str(tmp_path / "x.toml"))
    assert result.exit_code == 2
    assert "no connector of kind 'remedy' is installed" in result.output
    assert "jira" in result.output
    assert not (tmp_path / "x.toml").exists()


class _Odd(ConnectorSettings):
    """A third-party connector's settings of every shape the starter must spell."""

    endpoint: str
    """Where the tool answers."""
    retries: int
    window: float = 1.5
    home: Path = Path("/var/lib/odd")
    mode: Literal["fast", "safe"] = "safe"
    labels: dict[str, str] = Field(default_factory=lambda: {"a b": "c"})
    access_key_token: str | None = None


def test_any_settings_model_renders_as_toml_its_model_accepts() -> None:
    lines = settings_lines("odd", describe_settings(_Odd), {}, env_prefix="odd", active=False)
    shown = tomllib.loads(uncomment("\n".join(lines) + "\n"))["odd"]
    required = {"endpoint": shown["endpoint"], "retries": shown["retries"]}
    defaults = {k: v for k, v in shown.items() if k != "access_key_token"}
    assert _Odd.model_validate(defaults) == _Odd.model_validate(required)
    assert shown["access_key_token"] == "${ODD_ACCESS_KEY_TOKEN}"
    assert shown["home"] == "/var/lib/odd" and shown["labels"] == {"a b": "c"}
    assert "## Where the tool answers. (text; required)" in lines


def test_a_secret_given_as_a_plain_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"odd\.access_key_token is a secret"):
        settings_lines(
            "odd", describe_settings(_Odd), {"access_key_token": "hunter2"}, env_prefix="odd"
        )
