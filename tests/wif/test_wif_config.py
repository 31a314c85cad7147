"""The ``[workflows]`` section: every reference that does not hold is refused with the file,
the line and the key, like the rest of the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from wif_configs import FULL, UNITS, config_of, line_of, write_config

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.errors import ConfigurationError

# (name, TOML added to the units, the line the error names, the key and the whole message)
REFUSED = [
    (
        "unknown unit",
        '[workflows.ops.W2]\nname = "x"\n',
        "[workflows.ops.W2]",
        "workflows.ops.W2: [workflows.ops] names unit 'ops', which is not defined",
    ),
    (
        "unknown pattern id",
        '[workflows.it.W9]\nname = "x"\n',
        "[workflows.it.W9]",
        "workflows.it.W9: 'W9' is not a workflow pattern; use W1, W2, W3, W4, W5, W6, W7, W8",
    ),
    (
        "unknown pattern in the list",
        '[workflows.it]\npatterns = ["W2", "W0"]\n',
        'patterns = ["W2", "W0"]',
        "workflows.it.patterns: 'W0' is not a workflow pattern; use W1, W2, W3, W4, W5, W6, W7, W8",
    ),
    (
        "a pattern configured but not run",
        '[workflows.it]\npatterns = ["W2"]\n[workflows.it.W5]\nname = "x"\n',
        "[workflows.it.W5]",
        "workflows.it.W5: unit 'it' does not run W5 (patterns = ['W2'])",
    ),
    (
        "a step in a process the pattern does not pass through",
        '[workflows.it.W5.steps.s]\nprocess = "change"\n',
        'process = "change"',
        "workflows.it.W5.steps.s.process: W5 (service request) does not pass through change: "
        "its path is operate",
    ),
    (
        "steps out of the pattern's order",
        "[workflows.it.W1.steps.build]\nprocess = "
        '"change"\n[workflows.it.W1.steps.agree]\nprocess = "agree"\n',
        'process = "agree"',
        "workflows.it.W1.steps.agree.process: step 'agree' (agree) is out of order: the steps "
        "of W1 follow its path agree -> change",
    ),
    (
        "a letter that is not RACI",
        '[workflows.it.profiles]\nop = "Operator"\n'
        '[workflows.it.W5.steps.s]\nprocess = "operate"\n'
        '[workflows.it.W5.steps.s.activities.a]\nraci = { op = ["R", "X"] }\n',
        'raci = { op = ["R", "X"] }',
        "workflows.it.W5.steps.s.activities.a.raci: Value error, op: 'X' is not a RACI letter; "
        "use R (responsible), A (accountable), C (consulted) or I (informed)",
    ),
    (
        "an activity naming an unknown profile",
        '[workflows.it.profiles]\nop = "Operator"\n'
        '[workflows.it.W5.steps.s]\nprocess = "operate"\n'
        '[workflows.it.W5.steps.s.activities.a]\nraci = { boss = "A" }\n',
        'raci = { boss = "A" }',
        "workflows.it.W5.steps.s.activities.a.raci.boss: profile 'boss' is not defined "
        "(profiles: op)",
    ),
    (
        "a slug the draft does not allow",
        '[workflows.it.W5]\nslug = "ask--it"\n',
        'slug = "ask--it"',
        "workflows.it.W5.slug: Value error, a slug is letters and digits with single dashes "
        "between them (no dash first or last, no two in a row), e.g. 'incident-with-change'",
    ),
    (
        "two workflows of a unit with one slug",
        '[workflows.it.W4]\nslug = "fix"\n[workflows.it.W3]\nslug = "fix"  # again\n',
        'slug = "fix"  # again',
        "workflows.it.W3.slug: slug 'fix' is W4's already; a slug is unique in its unit",
    ),
    (
        "one profile id with two names",
        '[workflows.it.profiles]\nop = "Operator"\n[workflows.hr.profiles]\nop = "Officer"\n',
        'op = "Officer"',
        "workflows.hr.profiles.op: profile 'op' is 'Operator' in unit 'it'; a profile id names "
        "one role or position in the whole organisation",
    ),
    (
        "a time without a zone",
        "[workflows.it.W5]\ncreated_at = 2026-01-05T09:30:00\n",
        "created_at = 2026-01-05T09:30:00",
        "workflows.it.W5.created_at: Value error, timestamp must carry a time zone (e.g. +00:00)",
    ),
    (
        "a dynamicity the draft does not know",
        '[workflows.it.W5]\ndynamicity = "sometimes"\n',
        'dynamicity = "sometimes"',
        "workflows.it.W5.dynamicity: Input should be 'static' or 'dynamic'",
    ),
]


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_a_wrong_reference_is_refused_on_its_line(
    tmp_path: Path, section: str, line: str, expected: str
) -> None:
    text = UNITS + "\n" + section
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigurationError) as refused:
        load_config(path)
    assert str(refused.value) == f"{path}:{line_of(text, line)}: key {expected}"


def test_check_refuses_it_with_exit_2_and_one_line(tmp_path: Path) -> None:
    text = UNITS + '\n[workflows.it.W9]\nname = "x"\n'
    path = write_config(tmp_path, text)
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(path)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: {path}:{line_of(text, '[workflows.it.W9]')}: key workflows.it.W9"
    )


def test_a_full_section_loads_as_written(tmp_path: Path) -> None:
    config = config_of(tmp_path, FULL)
    it = config.workflows.of("it")
    assert config.workflows.source_system_instance == "acme-test"
    assert it.patterns == ("W2", "W3", "W4", "W5")
    assert list(it.workflows) == ["W3", "W5"]
    steps = it.workflows["W3"].steps
    assert list(steps) == ["restore", "fix", "confirm"]  # the order written
    assert steps["restore"].activities["log"].raci == {
        "operator": ("R",),
        "change-manager": ("A", "I"),
    }
    assert steps["restore"].activities["classify"].raci == {
        "operator": ("R", "A"),
        "quality lead": ("C",),
    }
    hr = config.workflows.of("hr")  # configured nowhere: all eight, no profiles
    assert hr.patterns == ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8") and hr.workflows == {}


def test_a_letter_given_twice_counts_once(tmp_path: Path) -> None:
    text = UNITS + (
        '[workflows.it.profiles]\nop = "Operator"\n[workflows.it.W5.steps.s]\nprocess = "operate"\n'
        '[workflows.it.W5.steps.s.activities.a]\nraci = { op = "RAR" }\n'
    )
    activity = (
        config_of(tmp_path, text).workflows.of("it").workflows["W5"].steps["s"].activities["a"]
    )
    assert activity.raci == {"op": ("R", "A")}
