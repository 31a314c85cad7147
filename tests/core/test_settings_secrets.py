"""Invalid connector settings are reported by key and problem, never with the value given.

Pydantic's own message quotes every input (``input_value=...``): a secret under a misspelled
key, or a password of the wrong type, would land in the cycle summary, the run record, the
logs, ``usm-bridge check`` and the conformance report. Each place that validates settings
words the error itself.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from usm_bridge.cli import cli
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.context import discover_vocabularies
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    RawRecord,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
    build_connector,
)
from usm_bridge.errors import ConfigurationError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine

SECRET = "s3cret-Vault-passw0rd"

MAPPING = """\
version: 1
tool: vault
fields:
  title: {path: name, required: true}
"""


class VaultSettings(ConnectorSettings):
    url: str
    user: str = "bridge"
    password: SecretStr


class VaultConnector(Connector):
    kind = "vault"
    settings_model = VaultSettings

    def check(self) -> CheckResult:
        return CheckResult(ok=True)

    def discover(self) -> Vocabulary:
        return Vocabulary()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        yield Checkpoint(cursor="0")

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        return None

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        raise NotImplementedError

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        raise NotImplementedError

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        raise NotImplementedError


class VaultPlugin:
    @hookimpl
    def usm_bridge_connector_types(self) -> list[type[Connector]]:
        return [VaultConnector]


def _host() -> PluginHost:
    return PluginHost(load_entrypoints=False, plugins=[VaultPlugin()])


#: A secret under a misspelled key, and a password given as a list (a TOML slip).
BAD_SETTINGS = {"url": "https://vault.example", "pasword": SECRET, "password": [SECRET]}


def _config(tmp_path: Path) -> BridgeConfig:
    (tmp_path / "vault.yaml").write_text(MAPPING, encoding="utf-8")
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        """\
[store]
url = "sqlite:///state.db"

[units.hr]

[instances.hr-vault]
unit = "hr"
kind = "vault"
mapping = "vault.yaml"

[instances.hr-vault.settings]
url = "https://vault.example"
pasword = "${VAULT_PASSWORD}"
password = ["${VAULT_PASSWORD}"]
""",
        encoding="utf-8",
    )
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
    engine = SyncEngine(config, store, _host())
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
    (tmp_path / "jira.yaml").write_text(MAPPING.replace("vault", "jira"), encoding="utf-8")
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        """\
[units.fac]

[instances.fac-jira]
unit = "fac"
kind = "jira"
mapping = "jira.yaml"

[instances.fac-jira.settings]
base_url = "https://jira.example"
email = "bridge@example.org"
api_token = ["${JIRA_TOKEN}"]
api_tokn = "${JIRA_TOKEN}"
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(path)], env={"JIRA_TOKEN": SECRET})
    assert result.exit_code == 2, result.output
    assert "instances.fac-jira.settings.api_token: Input should be a valid string" in (
        result.output
    )
    assert "instances.fac-jira.settings.api_tokn: Extra inputs are not permitted" in result.output
    assert SECRET not in result.output
