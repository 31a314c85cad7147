"""Fuzzing the config loader: any file gives a valid config or one clean line, never a crash.

Mutations of a valid config (values swapped for hostile ones, lines dropped, doubled or cut,
characters inserted, tables nested deep) are loaded; each must either load or raise a
:class:`ConfigurationError` whose message is one line naming the file. Anything else would
reach the user as exit 70, "internal error". A sample also goes through the real command line
(``usm-bridge check``), asserting exit 0 or 2 and one line on standard error.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usm_bridge.cli import main
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.errors import ConfigurationError

VALID = """\
[store]
url = "sqlite:///state/bridge.db"

[units.hr]
title = "HR"

[units.facilities]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "mail.yaml"
interval = "5m"

[instances.hr-mail.settings]
password = "${MAIL_PASSWORD}"
token = { file = "secret.txt" }
page_size = 10

[instances.fac-jira]
unit = "facilities"
kind = "jira"
mapping = "jira.yaml"
interval = 60

[daemon]
listen = "127.0.0.1:9464"
census_interval = "1d"
max_workers = 2

[[routes]]
from = "hr"
to = "facilities"
when = { call_type = ["service_request"], status = "registered" }
owners = { description = "supplier", title = "hr" }
relay_comments = true
"""

ENV = {"MAIL_PASSWORD": "s3cret"}

#: Values a hostile or careless file may hold where a value was.
HOSTILE_VALUES = [
    "inf",
    "-inf",
    "nan",
    "1e308",
    "-1",
    "0",
    "1" + "0" * 400,
    '""',
    '"\\u0000"',
    '"a\\u0000b"',
    '"${UNSET_VARIABLE}"',
    '{ file = "/dev/zero" }',
    '{ file = "/nonexistent/secret" }',
    '{ file = "\\u0000" }',
    "{ file = 7 }",
    "[]",
    "{}",
    "[[[[[[[[]]]]]]]]",
    "[" * 200 + "]" * 200,
    "{ a = " * 40 + "1" + " }" * 40,
    "true",
    "1979-05-27T07:32:00Z",
    '"' + "x" * 5000 + '"',
    '"\\uff15m"',  # a full-width 5
    '"\U0001f600"',
    '"sqlite:///\\u0000"',
    '"postgresql://[::1"',
    '"\\\\"',
]

#: Characters inserted at random places.
NOISE = ["\x00", "[", "]", "=", '"', "'", "{", "}", "\n", ".", "#", "\\", "\ufeff", "\x7f", " "]

LINES = VALID.splitlines()


def mutate(rng: random.Random) -> str:
    """A few random mutations of :data:`VALID`."""
    lines = list(LINES)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["value", "drop", "double", "noise", "cut", "nest"])
        index = rng.randrange(len(lines))
        line = lines[index]
        if kind == "value" and "=" in line:
            key = line.split("=", 1)[0]
            lines[index] = f"{key}= {rng.choice(HOSTILE_VALUES)}"
        elif kind == "drop":
            del lines[index]
        elif kind == "double":
            lines.insert(index, line)
        elif kind == "noise":
            at = rng.randint(0, len(line))
            lines[index] = line[:at] + rng.choice(NOISE) + line[at:]
        elif kind == "cut":
            lines[index] = line[: rng.randint(0, len(line))]
        elif kind == "nest":
            depth = rng.randint(30, 300)
            lines.insert(index, "deep = " + "[" * depth + "]" * depth)
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


def _outcome(tmp_path: Path, text: str) -> BridgeConfig | ConfigurationError:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    (tmp_path / "secret.txt").write_text("tok-123\n", encoding="utf-8")
    try:
        return load_config(path, environ=ENV)
    except ConfigurationError as exc:
        return exc


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rng=st.randoms(use_true_random=False))
def test_every_mutated_config_loads_or_is_refused_in_one_line(
    tmp_path: Path, rng: random.Random
) -> None:
    outcome = _outcome(tmp_path, mutate(rng))  # anything but a ConfigurationError fails the test
    if isinstance(outcome, ConfigurationError):
        message = str(outcome)
        assert "\n" not in message, message
        assert str(tmp_path / "usm-bridge.toml") in message, message
        assert "s3cret" not in message and "tok-123" not in message
    else:
        assert isinstance(outcome, BridgeConfig)
        for inst in outcome.instances.values():
            assert 1 <= inst.interval <= 86_400


def test_the_unmutated_config_is_valid(tmp_path: Path) -> None:
    config = _outcome(tmp_path, VALID)
    assert isinstance(config, BridgeConfig), config
    assert config.routes[0].owners == {"description": "supplier", "title": "customer"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("deep = " + "[" * 33 + "]" * 33 + "\n", "nested more than 32 deep"),
        ("deep = " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 deep"),
        ("a" + ".a" * 40 + " = 1\n", "nested more than 32 deep"),
        ("[units.hr]\ntitle = 'HR'\x00\n", "not text: a NUL byte"),
        ("\ufeff[units.hr]\n", "not valid TOML"),
        ('[units.hr]\ntitle = "\\u0000"\n', ":2: key units.hr.title: a NUL character"),
        ('[store]\nurl = "sqlite:///a\\u0000b.db"\n', ":2: key store.url: a NUL character"),
        ('[units."a\\u0000b"]\n', "a key holds a NUL character"),
        (
            '[store]\nurl = "postgresql://[::1"\n',
            ":2: key store.url: Value error, not a database URL",
        ),
    ],
)
def test_hostile_files_are_refused_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    outcome = _outcome(tmp_path, text)
    assert isinstance(outcome, ConfigurationError), outcome
    assert says in str(outcome) and "\n" not in str(outcome)


def test_nesting_of_32_is_still_taken(tmp_path: Path) -> None:
    # The top-level table is depth 1; 31 arrays inside it reach 32.
    outcome = _outcome(tmp_path, "deep = " + "[" * 31 + "]" * 31 + "\n")
    assert not isinstance(outcome, ConfigurationError) or "nested" not in str(outcome)


def test_locating_keys_in_a_megabyte_of_near_misses_is_answered(tmp_path: Path) -> None:
    # Valid TOML (the lines sit in a multi-line string) that the key locator still scans. A
    # quadratic pattern took minutes here; speed itself is not asserted (no timed tests).
    near_miss = "[a" + " " * 60_000
    text = 'x = """\n' + "\n".join([near_miss] * 15) + '\n"""\n[units.hr]\ntitle = 1\n'
    outcome = _outcome(tmp_path, text)
    assert isinstance(outcome, ConfigurationError) and "units.hr.title" in str(outcome)


@pytest.mark.parametrize("seed", range(12))
def test_the_command_line_never_answers_a_config_with_an_internal_error(
    tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = mutate(random.Random(seed)) if seed else VALID  # seed 0: the valid file itself
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("tok-123\n", encoding="utf-8")
    monkeypatch.setenv("MAIL_PASSWORD", "s3cret")
    with pytest.raises(SystemExit) as info:
        main(["check", "-c", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2, err  # mapping files are missing even in the valid one
    assert len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err


def test_a_megabyte_of_broken_routes_is_refused_in_one_short_line(tmp_path: Path) -> None:
    # No timed assertion (the brief keeps speed in bench/): a quadratic locator made this run
    # for minutes, which the suite's own timeout would show.
    outcome = _outcome(tmp_path, "[units.hr]\n" + "[[routes]]\n" * 90_000)
    assert isinstance(outcome, ConfigurationError)
    message = str(outcome)
    assert message.count("; also ") == 9 and message.endswith("; and 179990 more"), message
    assert ":2: key routes.0.from: Field required" in message
