"""Config that cannot do what it says is refused by ``usm-bridge check``: exit 2, one line naming
the file, the line and the key, and never an internal error (exit 70)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError
from usm_bridge_email.settings import EmailSettings
from usm_bridge_servicenow.connector import ServiceNowSettings

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.durations import parse_seconds
from usm_bridge.errors import ConfigurationError
from usm_bridge.http_connector import HttpConnectorSettings

BASE = """\
[units.hr]

[units.facilities]

[instances.hr-jira]
unit = "hr"
kind = "jira"
mapping = "jira.yaml"
interval = 60

[instances.hr-jira.settings]
base_url = "https://jira.example"
deployment = "datacenter"
personal_access_token = "t"
projects = ["HR"]

[instances.fac-jira]
unit = "facilities"
kind = "jira"
mapping = "jira.yaml"

[instances.fac-jira.settings]
base_url = "https://jira.example"
deployment = "datacenter"
personal_access_token = "t"
projects = ["FAC"]

[[routes]]
from = "hr"
to = "facilities"
when = { call_type = ["service_request"] }
"""
#: BASE whose route has no conditions yet: a test adds its own ``when``.
BASE_NO_WHEN = BASE.removesuffix('when = { call_type = ["service_request"] }\n')


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, *, about: Path | None = None) -> str:
    """``usm-bridge check`` on ``path``: exit 2 and exactly one line, which is returned; it
    names ``about`` (default: the config file)."""
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {about or path}:"), lines[0]
    return lines[0]


# -- 3. durations -----------------------------------------------------------------------------

BAD_DURATIONS = [
    "inf",
    "nan",
    "-inf",
    "1e308",
    "-5",
    "0",
    "0.5",
    '"0.5s"',
    '"500ms"',
    '"2d"',
    "86401",
    "1" + "0" * 400,  # an integer no float holds
    '"5 parsecs"',
    '"soon"',
    '""',
    "true",
    '"1e3"',
    '"\\uff19"',  # a full-width 9 (TOML unescapes it): \d would take it, the bridge does not
]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_an_interval_that_is_not_a_duration_of_1_s_to_1_day_is_refused(
    tmp_path: Path, value: str
) -> None:
    path = write(tmp_path, BASE.replace("interval = 60", f"interval = {value}"))
    line = refused(path)
    assert ":9: key instances.hr-jira.interval:" in line
    assert "duration" in line


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_a_census_interval_out_of_bounds_is_refused(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, BASE + f"\n[daemon]\ncensus_interval = {value}\n")
    line = refused(path)
    assert ":34: key daemon.census_interval:" in line


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        ('"1s"', 1.0),
        ('"1000ms"', 1.0),
        ('"90s"', 90.0),
        ('"5m"', 300.0),
        ('"1.5h"', 5400.0),
        ('"1d"', 86400.0),
        ("86400", 86400.0),
        ("2.5", 2.5),
    ],
)
def test_durations_from_1_s_to_1_day_are_taken(tmp_path: Path, value: str, seconds: float) -> None:
    config = load_config(write(tmp_path, BASE.replace("interval = 60", f"interval = {value}")))
    assert config.instances["hr-jira"].interval == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ('"250ms"', 0.25),
        ("0.25", 0.25),
        ('"0.5s"', 0.5),
        ("0", 0.0),
        ('"1s"', 1.0),
        ('"1m"', 60.0),
    ],
)
def test_an_event_debounce_may_be_under_a_second(
    tmp_path: Path, value: str, seconds: float
) -> None:
    # Unlike an interval, a sub-second debounce is meant: it is the floor under an event's lag.
    config = load_config(write(tmp_path, BASE + f"\n[daemon]\nevent_debounce = {value}\n"))
    assert config.daemon.event_debounce == seconds


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("-0.25", "between 0 s and 60 s, not -0.25 s"),
        ('"61s"', "between 0 s and 60 s, not 61 s"),
        ('"2m"', "between 0 s and 60 s, not 120 s"),
        ("inf", "finite"),
        ("nan", "finite"),
        ('"250 msec"', "a duration such as"),
        ("true", "a duration such as"),
    ],
)
def test_an_event_debounce_out_of_bounds_is_refused_on_its_line(
    tmp_path: Path, value: str, said: str
) -> None:
    path = write(tmp_path, BASE + f"\n[daemon]\nevent_debounce = {value}\n")
    line = refused(path)
    assert ":34: key daemon.event_debounce:" in line
    assert said in line


def test_parse_seconds_spells_out_what_it_expects() -> None:
    with pytest.raises(ValueError, match=r"between 1 s and 86400 s, not 0\.5 s"):
        parse_seconds(0.5)
    with pytest.raises(ValueError, match="finite"):
        parse_seconds(float("nan"))
    with pytest.raises(ValueError, match="such as 60, '90s'"):
        parse_seconds("5 parsecs")
    assert parse_seconds(0, minimum=0) == 0.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("connect_timeout", "0.2"),
        ("connect_timeout", "inf"),
        ("read_timeout", "nan"),
        ("read_timeout", "1e308"),
        ("retry_budget", "-1"),
        ("backoff_initial", "inf"),
        ("backoff_max", "1e308"),
        ("max_attempts", "0"),
        ("max_attempts", "1000000"),
        ("page_size", "0"),
        ("page_size", "100000000"),
        ("max_pages", "1" + "0" * 30),
        ("overlap_minutes", "nan"),
    ],
)
def test_check_refuses_connector_numbers_out_of_bounds_on_their_line(
    tmp_path: Path, key: str, value: str
) -> None:
    text = BASE.replace('projects = ["HR"]', f'projects = ["HR"]\n{key} = {value}')
    line = refused(write(tmp_path, text))
    assert f":16: key instances.hr-jira.settings.{key}:" in line, line


def _email(**extra: Any) -> dict[str, Any]:
    return {"address": "hr@example.com", "maildir": {"path": "/tmp/md"}, **extra}


def _servicenow(**extra: Any) -> dict[str, Any]:
    return {"instance_url": "https://x.service-now.com", "username": "u", "password": "p", **extra}


@pytest.mark.parametrize(
    ("model", "settings", "key"),
    [
        (HttpConnectorSettings, {"connect_timeout": float("inf")}, "connect_timeout"),
        (HttpConnectorSettings, {"read_timeout": 0.5}, "read_timeout"),
        (HttpConnectorSettings, {"retry_budget": float("nan")}, "retry_budget"),
        (HttpConnectorSettings, {"max_attempts": 10**9}, "max_attempts"),
        (ServiceNowSettings, _servicenow(token_margin=float("inf")), "token_margin"),
        (ServiceNowSettings, _servicenow(page_size=0), "page_size"),
        (ServiceNowSettings, _servicenow(journal_batch=10**6), "journal_batch"),
        (EmailSettings, _email(page_size=0), "page_size"),
        (EmailSettings, _email(page_size=10**9), "page_size"),
        (EmailSettings, _email(max_attempts=0), "max_attempts"),
        (EmailSettings, _email(backoff_max=float("inf")), "backoff_max"),
        (EmailSettings, _email(acknowledge_max_age_hours=float("nan")), "acknowledge_max_age"),
        (EmailSettings, _email(acknowledge_max_age_hours=-1), "acknowledge_max_age"),
        (EmailSettings, _email(answers_per_sender_per_hour=-1), "answers_per_sender"),
        (EmailSettings, _email(max_message_bytes=0), "max_message_bytes"),
        (EmailSettings, _email(max_received_hops=10**9), "max_received_hops"),
        (EmailSettings, _email(maildir=None, imap={"host": "h", "port": 0}), "imap.port"),
        (
            EmailSettings,
            _email(
                maildir=None, imap={"host": "h", "username": "u", "password": "p", "timeout": 0}
            ),
            "imap.timeout",
        ),
        (
            EmailSettings,
            _email(smtp={"host": "h", "timeout": float("inf")}),
            "smtp.timeout",
        ),
    ],
)
def test_connector_settings_refuse_numbers_no_tool_could_use(
    model: type[BaseModel], settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(settings)
    where = [".".join(map(str, e["loc"])) for e in info.value.errors()]
    assert any(w.startswith(key) for w in where), where


def test_connector_settings_at_their_bounds_are_taken() -> None:
    http = HttpConnectorSettings(
        connect_timeout=1, read_timeout=86400, retry_budget=1, backoff_initial=0, max_attempts=100
    )
    assert (http.connect_timeout, http.read_timeout, http.backoff_initial) == (1.0, 86400.0, 0.0)
    email = EmailSettings.model_validate(_email(page_size=10_000, backoff_initial=0))
    assert (email.page_size, email.backoff_initial) == (10_000, 0.0)


# -- 4. secret files --------------------------------------------------------------------------


def _secret_config(tmp_path: Path, secret: str) -> Path:
    return write(
        tmp_path,
        BASE.replace(
            'personal_access_token = "t"', f'personal_access_token = {{ file = "{secret}" }}', 1
        ),
    )


def test_a_secret_file_larger_than_64_kib_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    line = refused(_secret_config(tmp_path, "big"))
    assert ":14: key instances.hr-jira.settings.personal_access_token:" in line
    assert "larger than 64 KiB" in line


def test_a_secret_file_of_exactly_64_kib_is_read(tmp_path: Path) -> None:
    (tmp_path / "fits").write_bytes(b"y" * (64 * 1024))
    config = load_config(_secret_config(tmp_path, "fits"))
    assert config.instances["hr-jira"].settings["personal_access_token"] == "y" * 64 * 1024


def test_dev_zero_as_a_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    line = refused(_secret_config(tmp_path, "/dev/zero"))
    assert "not a regular file (a character device)" in line


def test_a_fifo_as_a_secret_file_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    path = _secret_config(tmp_path, "pipe")
    lines: list[str] = []
    worker = threading.Thread(target=lambda: lines.append(refused(path)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "loading the config waited on the FIFO"
    (line,) = lines
    assert "not a regular file (a FIFO)" in line


def test_a_directory_as_a_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    assert "not a regular file (a directory)" in refused(_secret_config(tmp_path, "folder"))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe binary", "not UTF-8 text"),
        (b"latin-1 caf\xe9", "not UTF-8 text"),
        (b"tok\x00en", "NUL byte"),
    ],
)
def test_a_secret_file_that_is_not_utf8_text_is_refused(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "secret").write_bytes(content)
    line = refused(_secret_config(tmp_path, "secret"))
    assert reason in line
    assert "binary" not in line and "caf" not in line  # no secret content in the message


def test_a_missing_secret_file_is_one_clean_line(tmp_path: Path) -> None:
    assert "cannot read secret file" in refused(_secret_config(tmp_path, "nope"))


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_the_config_file_itself_must_be_a_regular_file(tmp_path: Path, special: str) -> None:
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")
    target = tmp_path / special if special == "fifo" else Path(special)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        load_config(target)


# -- 1. route conditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "key", "says"),
    [
        ('{ cal_type = "incident" }', "cal_type", "'cal_type' is not a field of a call"),
        ('{ call_type = "incidnet" }', "call_type", "'incidnet' is not a value of this field"),
        ('{ call_type = ["incident", "outage"] }', "call_type", "'outage' is not a value"),
        ("{ call_type = [] }", "call_type", "an empty list matches no call"),
        ('{ status = "done" }', "status", "use one of registered, classified"),
        ("{ impact = 3 }", "impact", "3 is not a value of this field"),
        ('{ "requester.mail" = "a@b.example" }', "requester.mail", "'mail' is not a field of"),
        ('{ requester = "a@b.example" }', "requester", "test one of its fields"),
        ('{ requester.email = "a@b.example" }', "requester", 'quote the dotted key: "requester'),
        ('{ "title.x" = "y" }', "title.x", "'title' is a value, not a table"),
        ('{ attributes = "x" }', "attributes", "attributes.<tool>.<field>"),
        ('{ comments = "x" }', "comments", "'comments' is not a field of a call"),
        ("{ service = 7 }", "service", "7 is not text"),
        ('{ call_type = [["incident"]] }', "call_type", "holds values, not tables or lists"),
        ('{ process = "recovery" }', "process", "use one of agree, change, recover, operate"),
    ],
)
def test_a_route_condition_no_call_can_meet_is_refused(
    tmp_path: Path, when: str, key: str, says: str
) -> None:
    path = write(tmp_path, BASE_NO_WHEN + f"when = {when}\n")
    line = refused(path)
    assert f":31: key routes.0.when.{key}:" in line, line
    assert says in line, line


@pytest.mark.parametrize(
    "when",
    [
        '{ call_type = ["service_request", "incident"] }',
        # Every route says which support requests it passes on (section 1b).
        '{ call_type = "incident", status = "in_progress", impact = ["high", "medium"] }',
        '{ call_type = "wish", "requester.email" = "a@b.example", "source.instance" = "hr-jira" }',
        '{ call_type = "rfc", "attributes.jira.labels" = "needs-it", service = "laptops" }',
        '{ call_type = "service_request", unit = "hr" }',
        '{ call_type = "incident", process = "recover" }',  # computed from the type
        '{ call_type = ["rfc", "service_request"], process = ["change", "operate"] }',
    ],
)
def test_route_conditions_on_canonical_fields_and_values_are_taken(
    tmp_path: Path, when: str
) -> None:
    config = load_config(write(tmp_path, BASE_NO_WHEN + f"when = {when}\n"))
    assert config.routes[0].when


# -- 1b. routes USM rules out (usm_bridge.route_types) ----------------------------------------
# A route opens a supplier call: never of type risk, never for an unclassified call (a route
# without a call_type condition admits those).

#: The line of the first key written after BASE_NO_WHEN (the route's own keys follow it).
AFTER_ROUTE = BASE_NO_WHEN.count("\n") + 1


@pytest.mark.parametrize(
    ("lines", "at", "key", "says"),
    [
        # The supplier call's own type.
        (
            ['when = { call_type = "incident" }', 'call_type = "risk"'],
            1,
            "routes.0.call_type",
            "would open supplier calls of type 'risk': a supplier call is one of the four "
            "support requests (incident, rfc, service_request, wish)",
        ),
        (
            ['when = { call_type = "incident" }', 'call_type = "unclassified"'],
            1,
            "routes.0.call_type",
            "supplier calls of type 'unclassified'",
        ),
        # Inherited from the upstream: a risk (alone or in a list) would pass on as risk.
        (
            ['when = { call_type = "risk" }'],
            0,
            "routes.0.when.call_type",
            "admits risk calls and its supplier call takes the upstream's type, so it would "
            "open a supplier call of type risk",
        ),
        (
            ['when = { call_type = ["service_request", "risk"] }'],
            0,
            "routes.0.when.call_type",
            "would open a supplier call of type risk",
        ),
        # Unclassified calls, named or admitted by having no call_type condition at all.
        (
            ['when = { call_type = ["unclassified", "incident"] }', 'call_type = "incident"'],
            0,
            "routes.0.when.call_type",
            "admits unclassified calls: USM does no work on a call before it is classified",
        ),
        (
            ['when = { service = "desk" }', 'call_type = "service_request"'],
            0,
            "routes.0.when",
            "has no call_type condition, so it admits unclassified calls (and risk)",
        ),
    ],
)
def test_a_route_usm_rules_out_is_refused_naming_its_key(
    tmp_path: Path, lines: list[str], at: int, key: str, says: str
) -> None:
    line = refused(write(tmp_path, BASE_NO_WHEN + "".join(f"{text}\n" for text in lines)))
    assert f":{AFTER_ROUTE + at}: key {key}: route 'hr-to-facilities' " in line, line
    assert says in line, line


def test_a_route_without_any_condition_is_refused_at_the_route(tmp_path: Path) -> None:
    line = refused(write(tmp_path, BASE_NO_WHEN))
    header = BASE_NO_WHEN.splitlines().index("[[routes]]") + 1
    assert f":{header}: key routes.0: route 'hr-to-facilities' has no call_type" in line, line
    assert 'e.g. when = { call_type = ["service_request"] }' in line


@pytest.mark.parametrize(
    ("lines", "supplier"),
    [
        (['when = { call_type = ["service_request", "incident"] }'], None),
        (['when = { call_type = "wish" }'], None),
        # A risk may lead to a support request at another unit (W7: risk -> change).
        (['when = { call_type = "risk" }', 'call_type = "rfc"'], "rfc"),
    ],
)
def test_routes_of_support_requests_are_taken(
    tmp_path: Path, lines: list[str], supplier: str | None
) -> None:
    text = BASE_NO_WHEN + "".join(f"{line}\n" for line in lines)
    (route,) = load_config(write(tmp_path, text)).routes
    assert route.supplier_call_type == supplier


def test_a_route_from_the_environment_is_checked_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASE)
    monkeypatch.setenv(
        "USM_BRIDGE_ROUTES", '[{"name": "env", "from": "hr", "to": "facilities", "when": {}}]'
    )
    with pytest.raises(ConfigurationError) as refusal:
        load_config(path)
    assert "environment variable USM_BRIDGE_ROUTES (key routes.0" in str(refusal.value)
    assert "route 'env' has no call_type condition" in str(refusal.value)


# -- 2. owners the router cannot honour -------------------------------------------------------

CHAIN = BASE.replace("[units.facilities]\n", "[units.facilities]\n\n[units.it]\n") + (
    '\n[instances.it-jira]\nunit = "it"\nkind = "jira"\nmapping = "jira.yaml"\n'
    '\n[[routes]]\nfrom = "facilities"\nto = "it"\nwhen = { call_type = ["service_request"] }\n'
)


@pytest.mark.parametrize(
    ("owners", "says"),
    [
        ('{ colour = "supplier" }', "'colour' is not a field a link shares"),
        ('{ waiting_on = "supplier" }', "waiting_on goes with status"),
        ('{ status = "it" }', "status = 'it' is neither side of this route"),
        ('{ status = "boss" }', "('hr' or 'facilities')"),
        ("{ status = 1 }", "is neither side of this route"),
    ],
)
def test_an_owner_entry_naming_no_side_or_no_shared_field_is_refused(
    tmp_path: Path, owners: str, says: str
) -> None:
    line = refused(write(tmp_path, BASE + f"owners = {owners}\n"))
    assert ":32: key routes.0.owners:" in line, line
    assert says in line, line


def test_an_owner_may_be_named_by_its_unit(tmp_path: Path) -> None:
    text = BASE + 'owners = { description = "facilities", title = "hr", service = "supplier" }\n'
    (route,) = load_config(write(tmp_path, text)).routes
    assert route.owners == {"description": "supplier", "title": "customer", "service": "supplier"}


@pytest.mark.parametrize(
    ("first", "second", "route", "field"),
    [
        # facilities takes the description from hr above and from it below.
        ("", 'owners = { description = "supplier" }', 1, "description"),
        # facilities takes its status from hr above and from it below.
        ('owners = { status = "customer" }', "", 0, "status"),
        ('owners = { service = "hr" }', 'owners = { service = "it" }', 1, "service"),
    ],
)
def test_a_middle_unit_taking_a_field_from_both_ends_of_the_chain_is_refused(
    tmp_path: Path, first: str, second: str, route: int, field: str
) -> None:
    text = CHAIN.replace('to = "facilities"\n', f'to = "facilities"\n{first}\n', 1)
    text = text.replace('to = "it"\n', f'to = "it"\n{second}\n', 1)
    line = refused(write(tmp_path, text))
    assert f"key routes.{route}.owners" in line, line
    assert f"unit 'facilities' would take {field} both from 'hr' above it" in line, line


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('owners = { status = "customer" }', 'owners = { status = "customer" }'),
        ('owners = { description = "supplier" }', 'owners = { description = "supplier" }'),
        ('owners = { assignee = "customer" }', ""),  # copied down, then kept by the middle
        ("", 'owners = { status = "customer" }'),  # facilities decides it for it
    ],
)
def test_owners_one_way_along_the_chain_are_taken(tmp_path: Path, first: str, second: str) -> None:
    text = CHAIN.replace('to = "facilities"\n', f'to = "facilities"\n{first}\n', 1)
    text = text.replace('to = "it"\n', f'to = "it"\n{second}\n', 1)
    assert len(load_config(write(tmp_path, text)).routes) == 2


FAN_OUT = BASE.replace("[units.facilities]\n", "[units.facilities]\n\n[units.it]\n") + (
    '\n[instances.it-jira]\nunit = "it"\nkind = "jira"\nmapping = "jira.yaml"\n'
    '\n[[routes]]\nfrom = "hr"\nto = "it"\nowners = { title = "supplier" }\n'
    'when = { call_type = ["service_request"] }\n'
)


def test_two_suppliers_owning_one_field_of_the_same_call_are_refused(tmp_path: Path) -> None:
    text = FAN_OUT.replace('to = "facilities"\n', 'to = "facilities"\nowners = { title = "it" }\n')
    line = refused(write(tmp_path, text.replace('title = "it"', 'title = "facilities"')))
    assert "key routes.1.owners" in line, line
    assert "both give title to their supplier" in line, line


def test_two_suppliers_owning_a_field_of_calls_that_never_meet_both_routes_are_taken(
    tmp_path: Path,
) -> None:
    # FAN_OUT's routes both take service requests: here they take types that never meet.
    first, second = FAN_OUT.split('to = "it"\n')
    text = (
        first.replace(
            'to = "facilities"\nwhen = { call_type = ["service_request"] }\n',
            'to = "facilities"\nowners = { title = "supplier" }\nwhen = { call_type = ["rfc"] }\n',
        )
        + 'to = "it"\n'
        + second.replace('call_type = ["service_request"]', 'call_type = "incident"')
    )
    assert len(load_config(write(tmp_path, text)).routes) == 2


def test_a_mapping_file_with_several_problems_is_still_one_line(tmp_path: Path) -> None:
    (tmp_path / "jira.yaml").write_text(
        "version: 1\ntool: jira\nfields:\n  title: {path: a, requird: true}\n"
        "  description: {path: b, colour: red}\n",
        encoding="utf-8",
    )
    line = refused(write(tmp_path, BASE), about=tmp_path / "jira.yaml")
    assert ":4: key fields.title.requird" in line and "; also " in line, line


def test_a_unit_that_is_not_a_table_is_refused_naming_the_form_expected(tmp_path: Path) -> None:
    path = write(tmp_path, 'units = { hr = "Human Resources" }\n')
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    assert "must be a table" in str(caught.value)
    assert "(expected [units.NAME])" in str(caught.value)
