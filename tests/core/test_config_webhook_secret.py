"""``webhook_secret``: from the environment or a file like every other secret, never shown,
and not needed by the commands that only read the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm_bridge.config import load_config
from usm_bridge.errors import ConfigurationError

CONFIG = """\
[units.facilities]

[instances.fac-jira]
unit = "facilities"
kind = "jira"
mapping = "/abs/jira.yaml"
webhook_secret = {secret}
"""


def write(tmp_path: Path, secret: str) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG.format(secret=secret), encoding="utf-8")
    (tmp_path / "hook.txt").write_text("from-a-file\n", encoding="utf-8")
    return path


def test_the_secret_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '"${HOOK}"'), environ={"HOOK": "hunter2-webhook"})
    secret = config.instances["fac-jira"].webhook_secret
    assert secret is not None and secret.get_secret_value() == "hunter2-webhook"
    assert "hunter2-webhook" not in repr(config) and "hunter2-webhook" not in str(config)


def test_the_secret_comes_from_a_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '{ file = "hook.txt" }'), environ={})
    secret = config.instances["fac-jira"].webhook_secret
    assert secret is not None and secret.get_secret_value() == "from-a-file"


def test_an_unset_variable_is_named_unless_the_command_only_reads_the_store(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '"${HOOK}"')
    with pytest.raises(ConfigurationError, match="HOOK"):
        load_config(path, environ={})
    config = load_config(path, environ={}, tool_secrets=False)
    assert config.instances["fac-jira"].webhook_secret is None


def test_no_secret_means_no_events(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG.replace("webhook_secret = {secret}\n", ""), encoding="utf-8")
    assert load_config(path, environ={}).instances["fac-jira"].webhook_secret is None


@pytest.mark.parametrize("tool_secrets", [True, False])
def test_a_secret_on_a_kind_that_takes_no_events_is_refused_naming_the_instance(
    tmp_path: Path, tool_secrets: bool
) -> None:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        CONFIG.format(secret='"${HOOK}"').replace('kind = "jira"', 'kind = "email"'),
        encoding="utf-8",
    )
    # Refused also where a read-only command would leave the secret unread.
    with pytest.raises(ConfigurationError) as refused:
        load_config(path, environ={"HOOK": "hunter2-webhook"}, tool_secrets=tool_secrets)
    message = str(refused.value)
    assert "'fac-jira'" in message and "kind 'email', which takes no events" in message
    assert "webhook_secret" in message and "hunter2-webhook" not in message


def test_a_servicenow_instance_takes_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.toml"
    text = CONFIG.format(secret='"${HOOK}"').replace('kind = "jira"', 'kind = "servicenow"')
    path.write_text(text, encoding="utf-8")
    secret = load_config(path, environ={"HOOK": "snow-hook"}).instances["fac-jira"].webhook_secret
    assert secret is not None and secret.get_secret_value() == "snow-hook"


def test_serve_reads_the_webhook_secret_but_not_the_tools_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, '"${HOOK}"')
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '[instances.fac-jira.settings]\napi_token = "${TOKEN}"\n', "utf-8")
    config = load_config(
        path, environ={"HOOK": "hunter2-webhook"}, tool_secrets=False, webhook_secrets=True
    )
    secret = config.instances["fac-jira"].webhook_secret
    assert secret is not None and secret.get_secret_value() == "hunter2-webhook"
    with pytest.raises(ConfigurationError, match="name secrets"):
        config.tool_settings("fac-jira")  # TOKEN was never needed, nor read


def test_serve_needs_no_store_url_secret_but_other_commands_do(tmp_path: Path) -> None:
    path = write(tmp_path, '"${HOOK}"')
    text = path.read_text(encoding="utf-8")
    missing = tmp_path / "credentials" / "store-url"
    path.write_text(f'[store]\nurl = {{ file = "{missing}" }}\n' + text, encoding="utf-8")
    environ = {"HOOK": "hunter2-webhook"}
    with pytest.raises(ConfigurationError, match=r"store\.url: cannot read secret file"):
        load_config(path, environ=environ, tool_secrets=False)
    config = load_config(
        path, environ=environ, tool_secrets=False, webhook_secrets=True, store_secret=False
    )
    secret = config.instances["fac-jira"].webhook_secret
    assert secret is not None and secret.get_secret_value() == "hunter2-webhook"
    assert "credentials" not in config.store.url  # the default stands in; never opened
    # A URL naming no secret is kept as written.
    path.write_text('[store]\nurl = "sqlite:///kept.db"\n' + text, encoding="utf-8")
    kept = load_config(path, environ=environ, tool_secrets=False, store_secret=False)
    assert kept.store.url.endswith("kept.db")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('webhook_auth = "query"', "webhook_auth"),
        ('webhook_url = "https://bridge.example.com/events/jira/x?secret=1"', "webhook_url"),
        ('webhook_url = "bridge.example.com/x"', "webhook_url"),
    ],
)
def test_the_receiver_settings_are_checked(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path, '"s"')
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=problem):
        load_config(path, environ={})


def test_a_public_url_with_a_query_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '"s"')
    text = path.read_text(encoding="utf-8") + '\n[daemon]\npublic_url = "https://b.example?x=1"\n'
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="public_url"):
        load_config(path, environ={})
    path.write_text(text.replace("?x=1", ""), encoding="utf-8")
    assert load_config(path, environ={}).daemon.public_url == "https://b.example"


def test_check_says_where_each_instance_takes_events_and_never_the_secret(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from usm_bridge.cli import cli
    from usm_bridge.demo import EXAMPLE_DIR, render_config
    from usm_bridge.demo_events import with_webhook_secret

    variables = {
        "USM_DEMO_MAIL": str(tmp_path / "mail"),
        "USM_DEMO_SMTP_PORT": "2525",
        "USM_DEMO_JIRA_URL": "http://127.0.0.1:8081",
        "USM_DEMO_JIRA_TOKEN": "a-token",
        "USM_DEMO_SNOW_URL": "http://127.0.0.1:8082",
        "USM_DEMO_SNOW_USER": "admin",
        "USM_DEMO_SNOW_PASSWORD": "a-password",
    }
    text = render_config(
        (EXAMPLE_DIR / "usm-bridge.toml").read_text(encoding="utf-8"),
        variables,
        mappings_base=EXAMPLE_DIR,
        secrets_dir=tmp_path / "secrets",
    )
    text, secret = with_webhook_secret(text, tmp_path / "secrets")
    path = tmp_path / "usm-bridge.toml"
    # The sample's daemon serves no port: as the demo runs it, only `serve` could take events.
    assert 'listen = "off"' in text
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "events: POST /events/jira/facilities-jira (signed); the daemon's [daemon] listen " \
        "is off, so only `usm-bridge serve`" in said  # fmt: skip
    assert secret not in result.output

    path.write_text(text.replace('listen = "off"', 'listen = "0.0.0.0:9464"'), encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        "events: POST /events/jira/facilities-jira (signed) on [daemon] listen 0.0.0.0:9464" in said
    )
    assert "events: POST /events/servicenow/it-requests (signed) on [daemon] listen" in said
    assert said.count("events: POST") == 2  # not the mailbox, not IT's incidents
    assert secret not in result.output
