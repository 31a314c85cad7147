"""Invalid connector settings are reported by key and problem, never with the value given.

Pydantic's own message quotes every input (``input_value=...``): a secret under a misspelled
key, or a password of the wrong type, would land in the cycle summary, the run record, the
logs, ``usm-bridge check`` and the conformance report. Each place that validates settings
words the error itself.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sync.memory_tool import IdleConnector, connector_host, write_instance_config

from usm_bridge.cli import cli
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.context import discover_vocabularies
from usm_bridge.connector import ConnectorSettings, build_connector
from usm_bridge.errors import ConfigurationError
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store

SECRET = "s3cret-Vault-passw0rd"


class VaultSettings(ConnectorSettings):
    url: str
    user: str = "bridge"
    password: SecretStr


class VaultConnector(IdleConnector):
    kind = "vault"
    settings_model = VaultSettings


def _host() -> PluginHost:
    return connector_host(VaultConnector)


#: A secret under a misspelled key, and a password given as a list (a TOML slip).
BAD_SETTINGS = {"url": "https://vault.example", "pasword": SECRET, "password": [SECRET]}


def _config(tmp_path: Path) -> BridgeConfig:
    settings = 'url = "https://vault.example"\npasword = "${VAULT_PASSWORD}"\n'
    settings += 'password = ["${VAULT_PASSWORD}"]'
    path = write_instance_config(tmp_path, unit="hr", kind="vault", settings=settings)
    return load_config(path, environ={"VAULT_PASSWORD": SECRET})


def _assert_names_the_problems(text: str) -> None:
    assert "settings.pasword: Extra inputs are not permitted" in text
    assert "settings.password: Input should be a valid string" in text


def test_build_connector_names_each_setting_and_never_its_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_connector(VaultConnector, "hr-vault", dict(BAD_SETTINGS), base_dir=None)
    error = caught.value
    _assert_names_the_problems(str(error))
    assert "'hr-vault' (vault)" in str(error)
    assert SECRET not in str(error)
    # Nor in a logged traceback: the ValidationError is not chained to it.
    assert SECRET not in "".join(traceback.format_exception(error))


def test_a_cycle_of_an_instance_with_bad_settings_keeps_the_secret_out_of_everything(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    engine = build_runtime(config, store, host=_host()).engine
    try:
        with caplog.at_level(logging.DEBUG):
            summary = engine.run_cycle("hr-vault")
    finally:
        engine.close()
    assert not summary.ok
    _assert_names_the_problems(summary.error or "")
    assert SECRET not in (summary.error or "")
    with store.begin(readonly=True) as tx:
        state = tx.get_instance_state("hr-vault")
    assert state is not None and state.last_error is not None
    assert "settings.pasword" in state.last_error and SECRET not in state.last_error
    assert "settings.pasword" in caplog.text  # logged, with its traceback
    assert SECRET not in caplog.text


def test_the_conformance_report_says_why_there_is_no_vocabulary_without_the_secret(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    ((vocabulary, source, note),) = discover_vocabularies(config, _host()).values()
    assert vocabulary is None and source == "none"
    assert note is not None and "settings.pasword: Extra inputs are not permitted" in note
    assert SECRET not in note


def test_check_names_the_setting_without_the_secret(tmp_path: Path) -> None:
    settings = 'base_url = "https://jira.example"\nemail = "bridge@example.org"\n'
    settings += 'api_token = ["${JIRA_TOKEN}"]\napi_tokn = "${JIRA_TOKEN}"'
    path = write_instance_config(tmp_path, unit="fac", kind="jira", settings=settings, store=False)
    result = CliRunner().invoke(cli, ["check", "--config", str(path)], env={"JIRA_TOKEN": SECRET})
    assert result.exit_code == 2, result.output
    assert "instances.fac-jira.settings.api_token: Input should be a valid string" in (
        result.output
    )
    assert "instances.fac-jira.settings.api_tokn: Extra inputs are not permitted" in result.output
    assert SECRET not in result.output


class LeakyConnector(VaultConnector):
    """A connector whose errors quote a URL with its credentials, as libraries' errors do."""

    kind = "leaky"

    def discover(self) -> Any:
        raise RuntimeError(f"GET https://bot:{SECRET}@vault.example/api/fields failed")


class BrokenConnector(VaultConnector):
    kind = "broken"

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        raise TypeError(f"cannot reach https://bot:{SECRET}@vault.example")


@pytest.mark.parametrize("kind", ["leaky", "broken"])
def test_a_connector_failing_for_the_report_is_noted_masked_and_the_report_goes_on(
    tmp_path: Path, kind: str
) -> None:
    settings = f'url = "https://vault.example"\npassword = "{SECRET}"'
    path = write_instance_config(tmp_path, unit="hr", kind=kind, settings=settings)
    config = load_config(path)
    host = connector_host(LeakyConnector, BrokenConnector)
    ((vocabulary, source, note),) = discover_vocabularies(config, host).values()
    assert vocabulary is None and source == "none"
    assert note is not None and "vault.example" in note and SECRET not in note
