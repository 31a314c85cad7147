"""The pytest plugin of usm-bridge is opt-in: installing usm-bridge adds nothing to a pytest
run, and the one line the README gives a connector author turns the fixtures on."""

from __future__ import annotations

import pytest

# Here rather than in conftest.py: pytest refuses ``pytest_plugins`` in a conftest below the
# rootdir that is not loaded at start-up, which is the case when the whole tree runs.
pytest_plugins = ["pytester"]

USES_THE_CLOCK = """
def test_the_clock(usm_fake_clock):
    usm_fake_clock.sleep(3.0)
    assert usm_fake_clock.sleeps == [3.0]
"""
#: The line of the README's "Writing a connector".
OPT_IN = """
[tool.pytest.ini_options]
addopts = "-p usm_bridge.testing.plugin"
"""


def test_installing_usm_bridge_registers_no_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_clock=USES_THE_CLOCK)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'usm_fake_clock' not found*"])


def test_one_line_of_pyproject_turns_the_fixtures_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_clock=USES_THE_CLOCK)
    pytester.makefile(".toml", pyproject=OPT_IN)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
