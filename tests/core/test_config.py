"""The config file: secrets resolved, references checked, every error located."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm_bridge.config import load_config
from usm_bridge.errors import ConfigurationError

GOOD = """\
[store]
url = "sqlite:///state/bridge.db"

[units.hr]
title = "HR"

[units.facilities]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "maps/mail.yaml"
interval = "5m"

[instances.hr-mail.settings]
password = "${MAIL_PASSWORD}"
user = "hr@${MAIL_DOMAIN}"
token = { file = "secret.txt" }

[instances.fac-jira]
unit = "facilities"
kind = "jira"
mapping = "/abs/jira.yaml"

[[routes]]
from = "hr"
to = "facilities"
when = { call_type = ["service_request"] }
"""

ENV = {"MAIL_PASSWORD": "s3cret", "MAIL_DOMAIN": "example.com"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("tok-123\n", encoding="utf-8")
    return path


def test_a_good_config_loads_with_secrets_and_paths_resolved(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ=ENV)
    mail = config.instances["hr-mail"]
    assert mail.settings == {"password": "s3cret", "user": "hr@example.com", "token": "tok-123"}
    assert mail.interval == 300.0
    assert mail.mapping == tmp_path / "maps" / "mail.yaml"
    assert config.instances["fac-jira"].mapping == Path("/abs/jira.yaml")
    assert config.instances["fac-jira"].interval == 60.0
    assert config.store.url == f"sqlite:///{tmp_path.resolve()}/state/bridge.db"
    assert config.units["hr"].name == "hr"
    (route,) = config.routes
    assert (route.name, route.from_unit, route.to_unit) == ("hr-to-facilities", "hr", "facilities")
    assert route.when == {"call_type": ["service_request"]}


@pytest.mark.parametrize(
    ("section", "spool", "quarantine"),
    [
        ("", "attachments-spool", None),  # the working directory's: the state folder
        ('[attachments]\nspool = "files/spool"\nquarantine = "files/refused"\n',
         "{base}/files/spool", "{base}/files/refused"),
        ('[attachments]\nspool = "/var/spool/usm"\nquarantine = "/var/q"\n',
         "/var/spool/usm", "/var/q"),
    ],
    ids=["default", "relative", "absolute"],
)  # fmt: skip
def test_the_attachment_folders_are_relative_to_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, spool: str,
    quarantine: str | None,
) -> None:  # fmt: skip
    """As every other relative path in the file: a daemon started from another folder (a
    systemd unit, cron) spools where the config's folder says, not where it was started. The
    default stays in the working directory: the state folder, where the service may write."""
    folder = tmp_path / "etc"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write(folder, GOOD + section), environ=ENV)
    base = str(folder.absolute())
    assert config.attachments.spool == Path(spool.format(base=base))
    assert config.attachments.quarantine == (
        None if quarantine is None else Path(quarantine.format(base=base))
    )


def located(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ=ENV if env is None else env)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_missing_environment_variable_names_key_and_line(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD, env={"MAIL_DOMAIN": "x"})
    assert ":16: key instances.hr-mail.settings.password" in message
    assert "MAIL_PASSWORD is not set" in message


def test_every_missing_environment_variable_is_named_at_once(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD, env={})
    assert ":16: key instances.hr-mail.settings.password" in message
    assert "MAIL_PASSWORD is not set" in message
    assert "also not set: MAIL_DOMAIN (" in message
    assert ":17: key instances.hr-mail.settings.user" in message
    assert "export MAIL_PASSWORD=... MAIL_DOMAIN=..." in message


def test_missing_secret_file(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace("secret.txt", "nope.txt"))
    assert "key instances.hr-mail.settings.token" in message and "nope.txt" in message


def test_a_secret_file_path_may_name_a_variable_such_as_systemds_credentials(
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text("tok-from-credentials\n", encoding="utf-8")
    text = GOOD.replace('{ file = "secret.txt" }', '{ file = "${CREDENTIALS_DIRECTORY}/token" }')
    env = {**ENV, "CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(write(tmp_path, text), environ=env)
    assert config.instances["hr-mail"].settings["token"] == "tok-from-credentials"
    message = located(tmp_path, text)  # the variable is not set: named with key and line
    assert "CREDENTIALS_DIRECTORY is not set" in message
    assert "key instances.hr-mail.settings.token" in message


def test_toml_syntax_error(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('unit = "hr"', 'unit = "hr'))
    assert "not valid TOML" in message and "line 10" in message


def test_unknown_key_is_a_typo(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('interval = "5m"', 'intervall = "5m"'))
    assert ":13: key instances.hr-mail.intervall" in message and "Extra inputs" in message


def test_wrong_type_and_bad_duration(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('interval = "5m"', 'interval = "soon"'))
    assert ":13: key instances.hr-mail.interval" in message and "duration" in message


def test_missing_required_key(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('kind = "jira"\n', ""))
    assert "key instances.fac-jira.kind" in message and "Field required" in message


def test_instance_of_unknown_unit(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('unit = "facilities"', 'unit = "finance"'))
    assert ":21: key instances.fac-jira.unit" in message and "'finance'" in message
    assert "expected one of ['facilities', 'hr']" in message


def test_route_to_unknown_unit(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('to = "facilities"', 'to = "it"'))
    assert ":27: key routes.0.to" in message


def test_route_to_a_unit_with_several_instances_needs_a_target(tmp_path: Path) -> None:
    extra = '\n[instances.fac-mail]\nunit = "facilities"\nkind = "email"\nmapping = "m.yaml"\n'
    message = located(tmp_path, GOOD + extra)
    assert "has 2 instances" in message and 'target = "INSTANCE"' in message


def test_route_to_own_unit(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace('to = "facilities"', 'to = "hr"'))
    assert "another unit" in message


def test_bad_unit_name(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD.replace("[units.facilities]", "[units.Facilities]"))
    assert "key units.Facilities.name" in message


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    # A resolved secret in a field of the wrong type must not be echoed back.
    text = GOOD.replace('interval = "5m"', 'interval = "${MAIL_PASSWORD}"')
    message = located(tmp_path, text)
    assert "s3cret" not in message


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found; create one with 'usm-bridge init'"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[units.hr]\ntitle = "\xe9"\n')
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_config(bad)


def test_incomplete_priority_matrix(tmp_path: Path) -> None:
    message = located(tmp_path, GOOD + '\n[priority]\nclasses = ["p1"]\n')
    assert "key priority" in message and "not one of the classes" in message


# -- commands that read the store only leave the tools' secrets unread ----------------------


def test_a_store_only_load_leaves_the_tools_secrets_unread_and_refuses_to_hand_them_out(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "secret.txt").unlink()  # not even the secret file is read
    config = load_config(path, environ={}, tool_secrets=False)
    assert config.instances["hr-mail"].settings == {}
    assert config.instances["hr-mail"].interval == 300.0  # the rest is read as always
    assert config.tool_settings("fac-jira") == {}  # names no secret: handed out
    with pytest.raises(ConfigurationError) as info:
        config.tool_settings("hr-mail")
    assert "instance 'hr-mail' name secrets, which this command does not read" in str(info.value)


def test_a_store_only_load_still_refuses_an_unset_variable_outside_the_tools_settings(
    tmp_path: Path,
) -> None:
    text = GOOD.replace('url = "sqlite:///state/bridge.db"', 'url = "${STORE_URL}"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ={}, tool_secrets=False)
    message = str(info.value)
    assert "environment variable STORE_URL is not set" in message
    assert ":2: key store.url" in message
    assert "MAIL_PASSWORD" not in message  # the tools' variables are not asked for
    url = "sqlite:////tmp/x.db"
    assert load_config(path, environ={"STORE_URL": url}, tool_secrets=False).store.url == url


def test_a_store_only_load_leaves_settings_the_environment_gives_unread_too(
    tmp_path: Path,
) -> None:
    env = {"USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD": "from-env"}
    config = load_config(write(tmp_path, GOOD), environ=env, tool_secrets=False)
    assert config.instances["hr-mail"].settings == {}
    with pytest.raises(ConfigurationError):
        config.tool_settings("hr-mail")


def test_the_kept_files_bound_is_read_and_keeping_can_be_turned_off(tmp_path: Path) -> None:
    section = '[attachments]\nspool = "spool"\nkeep_max_size = "20GiB"\nkeep_max_age = "6h"\n'
    kept = load_config(write(tmp_path, GOOD + section), environ=ENV).attachments.kept_files()
    assert kept is not None and kept.folder == tmp_path.absolute() / "spool" / "by-sha256"
    assert (kept.max_bytes, kept.max_age) == (20 * 1024**3, 6 * 3600.0)
    off = load_config(write(tmp_path, GOOD + "[attachments]\nkeep_files = false\n"), environ=ENV)
    assert off.attachments.kept_files() is None
    message = located(tmp_path, GOOD + '[attachments]\nkeep_max_size = "2000GiB"\n')
    assert "keep_max_size" in message and "1024GiB" in message
