"""Connector settings paths are relative to the config file's folder (issue #6, point 3).

A connector's settings model types its paths ``SettingsPath``; ``from_config`` gets the config
file's folder as ``base_dir``, so a daemon started from another working directory (systemd,
cron) reads the same files. These tests use a third-party-style connector defined here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError, model_validator
from sync.memory_tool import IdleConnector, connector_host, write_instance_config

from usm_bridge.checks import check_config
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.context import discover_vocabularies
from usm_bridge.connector import (
    CheckResult,
    Connector,
    ConnectorSettings,
    SettingsPath,
    Vocabulary,
    VocabularyValue,
    build_connector,
)
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store


class FolderSettings(ConnectorSettings):
    folder: SettingsPath
    key_file: SettingsPath | None = None
    #: Not a path: a plain string must be left as it is.
    label: str = "folder"


class FolderConnector(IdleConnector):
    """Reads nothing remote: its vocabulary is the names of the files in ``folder``."""

    kind = "folder"
    settings_model = FolderSettings

    @property
    def folder_settings(self) -> FolderSettings:
        assert isinstance(self.settings, FolderSettings)
        return self.settings

    def check(self) -> CheckResult:
        return CheckResult(ok=self.folder_settings.folder.is_dir())

    def discover(self) -> Vocabulary:
        names = sorted(p.name for p in self.folder_settings.folder.iterdir())
        return Vocabulary(statuses=[VocabularyValue(value=name) for name in names])


def _host() -> PluginHost:
    return connector_host(FolderConnector)


def _config(root: Path, settings: str) -> Path:
    return write_instance_config(root, unit="hr", kind="folder", settings=settings)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the config's folder, holding decoy folders."""
    cwd = tmp_path / "elsewhere"
    (cwd / "data").mkdir(parents=True)
    (cwd / "data" / "decoy").write_text("wrong folder\n", encoding="utf-8")
    monkeypatch.chdir(cwd)
    return cwd


def _engine_connector(config: BridgeConfig) -> FolderConnector:
    """The connector the sync engine builds for the instance, as the daemon would."""
    store = Store.open(config.store.url)
    engine = build_runtime(config, store, host=_host()).engine
    try:
        connector = engine.instances.connector("hr-folder")
        assert isinstance(connector, FolderConnector)
        return connector
    finally:
        engine.close()
        store.close()


def test_the_engine_takes_relative_settings_paths_against_the_config_folder(
    tmp_path: Path, elsewhere: Path
) -> None:
    root = tmp_path / "etc" / "usm-bridge"
    path = _config(root, 'folder = "data"\nkey_file = "keys/bridge.pem"')
    (root / "data").mkdir()
    (root / "data" / "right").write_text("", encoding="utf-8")
    config = load_config(path)

    connector = _engine_connector(config)

    settings = connector.folder_settings
    assert settings.folder == root / "data"
    assert settings.key_file == root / "keys" / "bridge.pem"
    assert settings.label == "folder"
    # It reads the config's folder, not the working directory's "data" (the decoy).
    assert [v.value for v in connector.discover().statuses] == ["right"]


def test_a_config_named_relative_to_the_working_directory_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "conf"
    _config(root, 'folder = "data"')
    monkeypatch.chdir(root)
    config = load_config("usm-bridge.toml")  # as `usm-bridge -c usm-bridge.toml` gives it

    settings = _engine_connector(config).folder_settings

    # Absolute, so that a later change of working directory cannot move it.
    assert settings.folder == root / "data"
    assert settings.folder.is_absolute()


def test_an_absolute_settings_path_is_unchanged(tmp_path: Path, elsewhere: Path) -> None:
    target = tmp_path / "srv" / "data"
    config = load_config(_config(tmp_path / "conf", f'folder = "{target}"'))

    assert _engine_connector(config).folder_settings.folder == target


def test_a_home_relative_settings_path_expands(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home" / "bridge"
    monkeypatch.setenv("HOME", str(home))
    config = load_config(_config(tmp_path / "conf", 'folder = "~/mail"'))

    assert _engine_connector(config).folder_settings.folder == home / "mail"
    # Expanded without a config file too: a leading ~ is never meant literally.
    built = FolderConnector.from_config("x", {"folder": "~/mail"})
    assert isinstance(built.settings, FolderSettings)
    assert built.settings.folder == home / "mail"


def test_an_unknown_users_home_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot expand"):
        FolderConnector.from_config(
            "x", {"folder": "~no-such-user-usm-bridge/mail"}, base_dir=tmp_path
        )


def test_from_config_without_base_dir_keeps_working_directory_paths(elsewhere: Path) -> None:
    built = FolderConnector.from_config("x", {"folder": "data"})

    assert isinstance(built.settings, FolderSettings)
    assert built.settings.folder == Path("data")  # relative, as before: the working directory
    assert built.settings.folder.resolve() == elsewhere / "data"
    assert built.check().ok


def test_from_config_with_base_dir(tmp_path: Path) -> None:
    built = FolderConnector.from_config("x", {"folder": "a/../b"}, base_dir=tmp_path)

    assert isinstance(built.settings, FolderSettings)
    assert built.settings.folder == tmp_path / "a" / ".." / "b"


def test_a_config_built_in_code_has_no_base_dir() -> None:
    assert BridgeConfig().base_dir is None


def test_check_and_discovery_see_the_same_folder_as_the_engine(
    tmp_path: Path, elsewhere: Path
) -> None:
    class CheckedSettings(FolderSettings):
        # A third-party validator that looks at the file system: `check` must validate with
        # the config's folder too, or it would refuse a config the daemon runs fine.
        @model_validator(mode="after")
        def _exists(self) -> CheckedSettings:
            if not self.folder.is_dir():
                raise ValueError(f"{self.folder} is not a folder")
            return self

    class CheckedConnector(FolderConnector):
        settings_model = CheckedSettings

    root = tmp_path / "conf"
    # "spool" exists in the config's folder only, not in the working directory.
    config = load_config(_config(root, 'folder = "spool"'))
    (root / "spool").mkdir()
    (root / "spool" / "right").write_text("", encoding="utf-8")
    host = connector_host(CheckedConnector)

    assert any(line.startswith("instance hr-folder") for line in check_config(config, host))
    vocabulary, source, note = discover_vocabularies(config, host)["hr-folder"]
    assert (source, note) == ("live", None)
    assert vocabulary is not None
    assert [v.value for v in vocabulary.statuses] == ["right"]


def test_a_connector_overriding_from_config_the_old_way_still_builds(
    tmp_path: Path, elsewhere: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class LegacyConnector(FolderConnector):
        @classmethod
        def from_config(cls, name: str, raw_settings: dict[str, Any]) -> Connector:  # type: ignore[override]
            return cls(name, cls.settings_model.model_validate(raw_settings))

    with caplog.at_level(logging.WARNING, logger="usm_bridge.connector"):
        built = build_connector(LegacyConnector, "old", {"folder": "data"}, base_dir=tmp_path)

    assert isinstance(built.settings, FolderSettings)
    assert built.settings.folder == Path("data")  # as that connector always did
    assert "takes no base_dir" in caplog.text
