"""Settings from the environment: ``USM_BRIDGE_SECTION__KEY`` overrides the config file.

Each value is validated by the same models as the file's, an error names the variable (never
its value, which may be a secret), and a variable that names nothing the file defines is
refused rather than ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import Field, SecretStr
from sync.memory_tool import (
    Clock,
    IdleConnector,
    MemoryConnector,
    MemoryTool,
    connector_host,
    write_config_file,
    write_mapping,
)

from usm_bridge import plugins
from usm_bridge import runtime as runtime_module
from usm_bridge.cli import cli
from usm_bridge.config import CONFIG_ENV, BridgeConfig, load_config, starter_config
from usm_bridge.connector import ConnectorSettings, SettingsPath, build_connector
from usm_bridge.env_overrides import OTHER_VARIABLES, with_environment_note
from usm_bridge.errors import ConfigurationError
from usm_bridge.runtime import Runtime
from usm_bridge.store import Store

SECRET = "s3cret-from-the-env"

CONFIG = """\
[store]
url = "sqlite:///file.db"

[daemon]
listen = "127.0.0.1:9464"

[units.hr]
title = "HR"

[units.facilities]

[instances.hr-mail]
unit = "hr"
kind = "tool"
mapping = "tool.yaml"
interval = "5m"

[instances.hr-mail.settings]
base_url = "https://file.example"
port = 993
verify = true
ca_file = "file-ca.pem"
folders = ["INBOX"]
password = "${FILE_PASSWORD}"

[instances.fac-jira]
unit = "facilities"
kind = "tool"
mapping = "tool.yaml"
settings = { base_url = "https://jira.example", port = 443, verify = true, ca_file = "ca.pem" }

[[routes]]
from = "hr"
to = "facilities"
when = { call_type = ["service_request"] }
"""

FILE_ENV = {"FILE_PASSWORD": "file-pw"}


class ToolSettings(ConnectorSettings):
    """A setting of each type a connector takes."""

    base_url: str
    port: int
    verify: bool
    ca_file: SettingsPath
    folders: list[str] = Field(default_factory=list)
    password: SecretStr | None = None


class ToolConnector(IdleConnector):
    kind = "tool"
    settings_model = ToolSettings


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    (tmp_path / "tool.yaml").write_text(
        "version: 1\ntool: tool\nfields:\n  title: {path: name, required: true}\n",
        encoding="utf-8",
    )
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = CONFIG, **env: str) -> BridgeConfig:
    return load_config(write(tmp_path, text), environ={**FILE_ENV, **env})


def refused(tmp_path: Path, variable: str, value: str, text: str = CONFIG) -> str:
    """The error loading ``text`` with ``variable=value``, which must name the variable and
    never quote the value (it may be a secret)."""
    with pytest.raises(ConfigurationError) as caught:
        load(tmp_path, text, **{variable: value})
    message = str(caught.value)
    assert f"environment variable {variable}" in message
    assert value not in message
    return message


# --- overrides -------------------------------------------------------------------------------


def test_store_daemon_and_instance_settings_are_overridden(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        USM_BRIDGE_STORE__URL="postgresql+psycopg://bridge@db.internal/usm",
        USM_BRIDGE_DAEMON__LISTEN="0.0.0.0:9500",
        USM_BRIDGE_DAEMON__MAX_WORKERS="2",
        USM_BRIDGE_INSTANCES__HR_MAIL__INTERVAL="30s",
        USM_BRIDGE_INSTANCES__FAC_JIRA__ENABLED="false",
    )
    assert config.store.url == "postgresql+psycopg://bridge@db.internal/usm"
    assert config.daemon.address == ("0.0.0.0", 9500)
    assert config.daemon.max_workers == 2
    assert config.instances["hr-mail"].interval == 30.0
    assert config.instances["fac-jira"].enabled is False
    # What the environment did not set is the file's.
    assert config.instances["fac-jira"].interval == 60.0
    assert config.units["hr"].title == "HR"


def test_a_table_as_json_merges_and_a_nested_variable_wins_over_it(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        USM_BRIDGE_DAEMON='{"listen": "off", "max_workers": 3}',
        USM_BRIDGE_DAEMON__MAX_WORKERS="5",
    )
    assert (config.daemon.address, config.daemon.max_workers) == (None, 5)
    assert [o.variable for o in config.from_environment] == [
        "USM_BRIDGE_DAEMON",
        "USM_BRIDGE_DAEMON__MAX_WORKERS",
    ]


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    assert load(tmp_path).instances["hr-mail"].interval == 300.0
    config = load(tmp_path, USM_BRIDGE_INSTANCES__HR_MAIL__INTERVAL="10m")
    assert config.instances["hr-mail"].interval == 600.0


def test_a_relative_store_path_from_the_environment_is_relative_to_the_config_file(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, USM_BRIDGE_STORE__URL="sqlite:///env.db")
    assert config.store.url == f"sqlite:///{tmp_path.resolve()}/env.db"


def test_connector_settings_of_each_type_reach_the_connector(tmp_path: Path) -> None:
    given = {
        "BASE_URL": "https://env.example",
        "PORT": "1143",
        "VERIFY": "false",
        "CA_FILE": "certs/env-ca.pem",
        "FOLDERS": '["INBOX", "Service desk"]',
        "PASSWORD": "12345",
    }
    config = load(
        tmp_path, **{f"USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__{k}": v for k, v in given.items()}
    )
    inst = config.instances["hr-mail"]
    connector = build_connector(ToolConnector, "hr-mail", inst.settings, base_dir=config.base_dir)
    settings = connector.settings
    assert isinstance(settings, ToolSettings)
    assert settings.base_url == "https://env.example"
    assert settings.port == 1143
    assert settings.verify is False
    assert settings.ca_file == tmp_path / "certs" / "env-ca.pem"  # relative to the file
    assert settings.folders == ["INBOX", "Service desk"]
    # A password of digits stays the text given, not a number.
    assert settings.password.get_secret_value() == "12345"


def test_unit_settings_are_overridden_and_a_list_is_json(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        USM_BRIDGE_UNITS__HR__ALLOWED_DOMAINS='["example.com", "example.org"]',
        USM_BRIDGE_UNITS__FACILITIES__TITLE="Facilities",
    )
    assert config.units["hr"].allowed_domains == ["example.com", "example.org"]
    assert config.units["facilities"].title == "Facilities"
    message = refused(tmp_path, "USM_BRIDGE_UNITS__HR__ALLOWED_DOMAINS", "example.com")
    assert "valid list" in message


def test_routes_are_replaced_whole_and_never_entry_by_entry(tmp_path: Path) -> None:
    routes = json.dumps(
        [
            {
                "from": "facilities",
                "to": "hr",
                "when": {"call_type": ["incident"]},
                "relay_comments": True,
            }
        ]
    )
    config = load(tmp_path, USM_BRIDGE_ROUTES=routes)
    (route,) = config.routes
    assert (route.from_unit, route.to_unit, route.relay_comments) == ("facilities", "hr", True)
    message = refused(tmp_path, "USM_BRIDGE_ROUTES__0__FROM", "facilities")
    assert "replaced whole" in message
    # A route from the environment is checked like one of the file's, naming the variable.
    message = refused(tmp_path, "USM_BRIDGE_ROUTES", '[{"from": "hr", "to": "finance"}]')
    assert "environment variable USM_BRIDGE_ROUTES (key routes.0.to)" in message
    assert "'finance', which is not defined" in message


# --- names -----------------------------------------------------------------------------------


def test_names_match_case_insensitively_with_dashes_written_as_underscores(
    tmp_path: Path,
) -> None:
    config = load(
        tmp_path,
        usm_bridge_instances__hr_mail__interval="2m",
        USM_Bridge_Instances__Fac_Jira__Settings__Port="8443",
    )
    assert config.instances["hr-mail"].interval == 120.0
    assert config.instances["fac-jira"].settings["port"] == "8443"
    assert [(o.variable, o.dotted) for o in config.from_environment] == [
        ("USM_Bridge_Instances__Fac_Jira__Settings__Port", "instances.fac-jira.settings.port"),
        ("usm_bridge_instances__hr_mail__interval", "instances.hr-mail.interval"),
    ]


def test_two_instances_that_read_the_same_are_refused_when_a_variable_names_them(
    tmp_path: Path,
) -> None:
    twin = CONFIG + '\n[instances.hr_mail]\nunit = "hr"\nkind = "tool"\nmapping = "tool.yaml"\n'
    assert set(load(tmp_path, twin).instances) == {"hr-mail", "hr_mail", "fac-jira"}
    message = refused(tmp_path, "USM_BRIDGE_INSTANCES__HR_MAIL__INTERVAL", "2m", twin)
    assert "'hr-mail' and 'hr_mail'" in message


def test_an_instance_or_unit_the_file_does_not_define_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "USM_BRIDGE_INSTANCES__HR_MALE__INTERVAL", "2m")
    assert "defines no instance HR_MALE" in message
    assert "HR_MAIL, FAC_JIRA" in message  # what it could have named
    message = refused(tmp_path, "USM_BRIDGE_UNITS__FINANCE__TITLE", "Finance")
    assert "defines no unit FINANCE" in message


def test_a_name_is_not_a_setting(tmp_path: Path) -> None:
    message = refused(tmp_path, "USM_BRIDGE_INSTANCES__HR_MAIL__NAME", "other")
    assert "cannot be set from the environment" in message


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("USM_BRIDGE_STORE_URL", "joined by two underscores"),
        ("USM_BRIDGE_LOG_FORMAT__COLOUR", "names no setting"),
        ("USM_BRIDGE_STORE__URI", "key store.uri): Extra inputs are not permitted"),
        ("USM_BRIDGE_INSTANCES__HR_MAIL__INTERVALL", "Extra inputs are not permitted"),
    ],
)
def test_a_misspelt_variable_is_refused_not_ignored(
    tmp_path: Path, variable: str, problem: str
) -> None:
    assert problem in refused(tmp_path, variable, "sqlite:///x.db")


def test_the_variables_the_project_reads_otherwise_are_listed_as_not_settings() -> None:
    assert set(OTHER_VARIABLES) == {CONFIG_ENV, plugins.DISABLE_ENV, plugins.TRACE_ENV}


def test_the_starter_config_states_the_rule_at_the_end_of_its_header() -> None:
    noted = with_environment_note("# title\n# more\n\n[store]\n")
    assert noted.startswith("# title\n# more\n# Any setting can be overridden")
    assert noted.endswith("\n\n[store]\n")
    assert "USM_BRIDGE_STORE__URL" in starter_config()


def test_variables_that_are_not_settings_are_left_alone(tmp_path: Path) -> None:
    others = dict.fromkeys(OTHER_VARIABLES, "x")
    config = load(tmp_path, **others, USM_BRIDGE_TEST_POSTGRES_URL="postgresql://x/y")
    assert config.from_environment == ()
    assert config.instances["hr-mail"].interval == 300.0


# --- errors and secrets ----------------------------------------------------------------------


def test_an_invalid_value_names_the_variable_not_the_value_nor_a_file_line(
    tmp_path: Path,
) -> None:
    message = refused(tmp_path, "USM_BRIDGE_DAEMON__LISTEN", "every-port-please")
    assert message.startswith("environment variable USM_BRIDGE_DAEMON__LISTEN (key daemon.listen)")
    assert "HOST:PORT" in message
    assert "usm-bridge.toml" not in message


def test_a_secret_given_by_the_environment_stays_out_of_every_error(tmp_path: Path) -> None:
    # The secret where a list belongs: the model's message must not quote it.
    assert "valid list" in refused(tmp_path, "USM_BRIDGE_UNITS__HR__ALLOWED_DOMAINS", SECRET)
    # A secret in a connector setting, with another setting wrong: named, never quoted.
    config = load(
        tmp_path,
        USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD=SECRET,
        USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PORT=f"not-{SECRET}",
    )
    with pytest.raises(ConfigurationError) as caught:
        inst = config.instances["hr-mail"]
        build_connector(ToolConnector, "hr-mail", inst.settings, base_dir=config.base_dir)
    assert "port" in str(caught.value) and SECRET not in str(caught.value)


def test_a_secret_file_can_be_named_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "mail-password").write_text(f"{SECRET}\n", encoding="utf-8")
    config = load(
        tmp_path, USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD='{"file": "mail-password"}'
    )
    assert config.instances["hr-mail"].settings["password"] == SECRET
    message = refused(
        tmp_path, "USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD", '{"file": "missing"}'
    )
    assert "cannot read secret file" in message


def test_a_value_from_the_environment_is_taken_as_written(tmp_path: Path) -> None:
    # No ${VAR} is expanded in it: a password may well contain "${".
    config = load(tmp_path, USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD="a${FILE_PASSWORD}")
    assert config.instances["hr-mail"].settings["password"] == "a${FILE_PASSWORD}"


# --- through the command line ----------------------------------------------------------------


@pytest.fixture
def tool_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check`` finds the test connector as if it were installed."""
    monkeypatch.setattr(plugins, "default_host", lambda: connector_host(ToolConnector))


@pytest.mark.usefixtures("tool_host")
def test_check_offline_sees_the_overrides_and_lists_them_by_name_only(tmp_path: Path) -> None:
    path = write(tmp_path)
    env = {
        **FILE_ENV,
        "USM_BRIDGE_STORE__URL": f"postgresql+psycopg://bridge:{SECRET}@db.internal/usm",
        "USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD": SECRET,
    }
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "store: postgresql+psycopg://bridge:***@db.internal/usm" in result.output
    assert "from the environment: USM_BRIDGE_STORE__URL sets store.url" in result.output
    assert (
        "from the environment: USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD sets "
        "instances.hr-mail.settings.password"
    ) in result.output
    assert SECRET not in result.output

    result = CliRunner().invoke(cli, ["check", "--offline", "--json", "-c", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["environment"] == [
        {
            "variable": "USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD",
            "key": "instances.hr-mail.settings.password",
        },
        {"variable": "USM_BRIDGE_STORE__URL", "key": "store.url"},
    ]
    assert SECRET not in result.output


@pytest.mark.usefixtures("tool_host")
def test_check_names_the_variable_of_a_bad_connector_setting_and_hides_the_secret(
    tmp_path: Path,
) -> None:
    path = write(tmp_path)
    env = {
        **FILE_ENV,
        "USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD": SECRET,
        "USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__VERIFY": "perhaps",
    }
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)], env=env)
    assert result.exit_code == 2, result.output
    assert (
        "environment variable USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__VERIFY "
        "(key instances.hr-mail.settings.verify)"
    ) in result.output
    assert SECRET not in result.output and "perhaps" not in result.output


@pytest.mark.usefixtures("tool_host")
def test_check_reads_the_file_named_by_usm_bridge_config_and_takes_it_for_no_override(
    tmp_path: Path,
) -> None:
    path = write(tmp_path)
    env = {**FILE_ENV, "USM_BRIDGE_CONFIG": str(path)}
    result = CliRunner().invoke(cli, ["check", "--offline", "--json"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["config"] == str(path)
    assert document["environment"] == []


def test_sync_runs_with_the_overridden_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mapping(tmp_path / "memory.yaml")
    path = write_config_file(
        tmp_path, {"hr-tool": "hr"}, kind="memory", store="sqlite:///file.db", settings=""
    )
    tool = MemoryTool("hr-tool", Clock())
    tool.add(title="Broken lamp", kind="incident")
    seen: list[BridgeConfig] = []
    build_runtime = runtime_module.build_runtime

    def build(config: BridgeConfig, store: Store, **kwargs: Any) -> Runtime:
        seen.append(config)
        connectors = {"hr-tool": MemoryConnector(tool)}
        return build_runtime(config, store, **{**kwargs, "connectors": connectors})

    monkeypatch.setattr(runtime_module, "build_runtime", build)
    env = {
        "USM_BRIDGE_STORE__URL": "sqlite:///env.db",
        "USM_BRIDGE_INSTANCES__HR_TOOL__SETTINGS__REGION": "eu",
    }
    result = CliRunner().invoke(cli, ["sync", "--once", "-c", str(path)], env=env)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.instances["hr-tool"].settings == {"region": "eu"}
    # The cycle went to the store the environment named, not the file's.
    assert not (tmp_path / "file.db").exists()
    with Store.open(f"sqlite:///{tmp_path / 'env.db'}") as store, store.begin() as tx:
        (call,) = tx.list_calls()
    assert call.call.title == "Broken lamp"
