"""What a finished demo run must show, whichever way the demo ran (in-process, from the
repository's virtualenv, from installed wheels): shared by the demo tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from usm_bridge.config import load_config
from usm_bridge.model import Call, ConfirmationKind, Status
from usm_bridge.store import Store

#: The line before the follow-up commands the demo prints at its end.
_LOOK_AROUND = "Look around with:"


def chain_calls(config_path: Path) -> tuple[Call, Call, Call]:
    """The onboarding's calls (HR, Facilities, IT) from the run's store, checked to be linked
    up and down the chain and every link closed (issue 16: each call confirmed, then closed)."""
    config = load_config(config_path)
    with Store.open(config.store.url) as store, store.begin(readonly=True) as tx:
        (hr,) = [s.call for s in tx.list_calls(unit="hr")]
        (facilities,) = [s.call for s in tx.list_calls(unit="facilities")]
        (laptop,) = [s.call for s in tx.list_calls(unit="it") if s.call.chain.upstream]
        routes = {link.route for c in (hr, facilities) for link in tx.suppliers_of(c.id)}
    assert hr.chain.suppliers == [facilities.id] and facilities.chain.upstream == hr.id
    assert facilities.chain.suppliers == [laptop.id] and laptop.chain.upstream == facilities.id
    assert (hr.status, facilities.status, laptop.status) == (
        Status.CLOSED,
        Status.CLOSED,
        Status.CLOSED,
    )
    # Each confirmed by its customer: HR's by Hannah (in the mailbox), the suppliers by the
    # unit that delivered using their work (an explicit acceptance, sync/closure.py).
    assert hr.confirmed is not None
    for supplier in (facilities, laptop):
        assert supplier.confirmation is not None and supplier.confirmed is not None
        assert supplier.confirmation.kind is ConfirmationKind.EXPLICIT
    # IT's item by Facilities' agent, who had taken the issue and resolved it.
    assert laptop.confirmation is not None and laptop.confirmation.by is not None
    assert laptop.confirmation.by.name == "Frank Facilities"
    assert routes == {"hr-to-facilities", "facilities-to-it"}
    return hr, facilities, laptop


def assert_run_folder(run_dir: Path) -> None:
    """The files the demo promises in its run folder."""
    for name in (
        "usm-bridge.toml",
        "usm-bridge.db",
        "logs/usm-bridge.log",
        "report/conformance.html",
        "report/conformance.md",
    ):
        assert (run_dir / name).is_file(), name
    assert "cycle hr-mail ok" in (run_dir / "logs" / "usm-bridge.log").read_text(encoding="utf-8")
    assert list((run_dir / "mail" / "hannah" / "new").iterdir())


def assert_narrated(screen: str) -> None:
    """The demo told the whole story and named the chain's three tool references."""
    for step in range(1, 7):
        assert f"Step {step}." in screen
    assert re.search(r"\bhr\s+│\s+HR-1\s+│\s+closed", screen), screen[-3000:]
    assert re.search(r"\bfacilities\s+│\s+FAC-1\s+│\s+closed", screen)
    assert re.search(r"\bit\s+│\s+RITM\d+\s+│\s+closed", screen)


def follow_up_commands(screen: str) -> list[list[str]]:
    """The commands the demo printed at its end, split as a shell would."""
    assert _LOOK_AROUND in screen, screen[-3000:]
    tail = screen.split(_LOOK_AROUND, 1)[1]
    commands = [shlex.split(line) for line in tail.splitlines() if line.strip()]
    assert commands
    return commands
