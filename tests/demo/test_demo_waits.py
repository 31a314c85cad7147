"""A demo step that times out says what it found of what it waited for and where the log is:
a CI run's "timed out ... waiting for the signed form" said neither, and its log was gone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from usm_bridge.demo import DemoError, _Waiter


def test_a_timed_out_wait_names_what_it_found_and_the_log(tmp_path: Path) -> None:
    daemon: Any = SimpleNamespace(schedule=SimpleNamespace(slots={}))
    log = tmp_path / "logs" / "usm-bridge.log"
    wait = _Waiter(daemon, 0.2, log=log)
    looked: list[int] = []
    with pytest.raises(DemoError) as raised:
        wait("the form", lambda: looked.append(1), poll=0.01, explain=lambda: "found in: hr")
    assert str(raised.value) == (
        f"timed out after 0s waiting for the form (found in: hr); see the log in {log}"
    )
    assert len(looked) > 1  # looked again until the time was up


def test_a_wait_returns_what_it_waited_for_without_asking_for_an_explanation() -> None:
    daemon: Any = SimpleNamespace(schedule=SimpleNamespace(slots={}))

    def explain() -> str:
        raise AssertionError("only asked on a timeout")

    assert _Waiter(daemon, 5)("a call", lambda: "HR-1", explain=explain) == "HR-1"
