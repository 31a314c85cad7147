"""Issue 6, point 4: SIGKILL the sync process at random points, many times; it converges with
nothing lost and nothing duplicated in any tool.

The tools run in this process (see :mod:`e2e.e2e_env`); the bridge runs as a separate process
(:mod:`e2e.sync_driver`) on a store on disk (SQLite) or on PostgreSQL. Before each run the
simulators are told to answer slowly, so the kill often lands while a create, a transition or
a comment is in flight: the request reaches the tool, the answer never reaches the bridge. HR's
SMTP relay is slow too, for the next mail or few: it either keeps a mail at once and answers
late (a kill leaves a mail sent that the bridge never saw taken) or keeps it only when it
answers (a kill leaves a mail the bridge began to send that the relay never took).
People keep working meanwhile: new mail arrives at HR, IT and Facilities comment and resolve.
A fixed seed makes the kill points the same on every run (the relay's slowness has a seed of
its own, so it moved none of them).

A second test kills the process at one chosen point each time, while the relay holds a mail
it has not taken yet: an acknowledgement, a comment copy, a status announcement.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from e2e.chain_checks import (
    check_invariants,
    clear_faults,
    mail_first_onboardings,
    never_taken,
    people_work,
    slow_everything,
)
from e2e.e2e_env import SmtpFault, Tools, adf, write_config
from usm_bridge.store import Store

DRIVER = Path(__file__).with_name("sync_driver.py")
SEED = 20240611
KILLS = 18
#: A restart stands for a process started after the killed one's outbox lease (5 min) ran out.
LEASE_GAP = 360.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    tests = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH")) if p)
    env["PYTHONWARNINGS"] = "error"
    return env


def _start(
    config: Path, offset: float, rounds: int, log: Any, first: int = 0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(DRIVER),
            str(config),
            "--offset",
            str(offset),
            "--rounds",
            str(rounds),
            "--start",
            str(first),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    config_path = tmp_path / "usm-bridge.toml"
    write_config(tools, config_path, store_url)
    Store.open(store_url).close()  # migrated once, before the first process can be killed
    rng = random.Random(SEED)
    mail_rng = random.Random(SEED + 1)
    mail_first_onboardings(tools)
    log_path = tmp_path / "sync.log"
    killed_alive = 0
    noted: set[str] = set()
    with log_path.open("ab") as log:
        for kill in range(KILLS):
            people_work(tools, kill, noted, kills=KILLS)
            slow_everything(tools, rng, mail_rng)
            process = _start(config_path, kill * LEASE_GAP, 0, log, first=kill)
            try:
                # The process needs ~1 s to start: kill between then and a few cycles later.
                time.sleep(rng.uniform(1.0, 3.0))
            finally:
                if process.poll() is None:
                    killed_alive += 1
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
            tools.wait_idle()  # its requests still in flight are served, as in five minutes
        clear_faults(tools)
        assert killed_alive == KILLS, "the process ended by itself: the kills hit nothing"

        # -- converge; people finish the work; then a run must find nothing to do -------------
        offset = KILLS * LEASE_GAP

        def run(rounds: int) -> None:
            nonlocal offset
            offset += LEASE_GAP
            process = _start(config_path, offset, rounds, log)
            assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]

        run(3)
        # Under a heavy load the kills may leave records nobody commented on yet.
        people_work(tools, 8, noted, kills=KILLS)
        people_work(tools, 9, noted, kills=KILLS)
        run(3)
        for item in tools.snow_items():  # IT delivers the rest
            if item["state"] != "3":
                tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
        run(3)
        for issue in tools.jira_issues():  # Facilities resolves: HR's calls resume
            tools.resolve_in_jira(str(issue.id))
        run(3)
        before = tools.write_counts()
        run(2)
        assert tools.write_counts() == before, "a converged bridge wrote again"

    check_invariants(tools, store_url)


DESK_NOTE = "Desk 4.12 is reserved; badge at reception."


def test_a_kill_while_the_relay_takes_a_mail_loses_no_mail(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    """Each kind of mail HR's mailbox sends is cut off by a kill in mid-send, before the relay
    took it; after the restart the requester gets it all the same, once."""
    config_path = tmp_path / "usm-bridge.toml"
    write_config(tools, config_path, store_url)
    Store.open(store_url).close()
    log_path = tmp_path / "sync.log"
    offset = 0.0
    cut = 0
    with log_path.open("ab") as log:

        def run(rounds: int = 3) -> None:
            nonlocal offset
            offset += LEASE_GAP
            process = _start(config_path, offset, rounds, log)
            assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]

        def cut_off(kind: str) -> None:
            """A process runs until it sends a mail of ``kind``, and is killed while the relay
            holds that mail; the relay never answers it, so it keeps nothing."""
            nonlocal offset, cut
            tools.sink.fail_next(SmtpFault(delay=600.0, kind=kind))
            offset += LEASE_GAP
            process = _start(config_path, offset, 3, log)
            try:
                cut += 1
                tools.sink.wait_faulted(cut)
            finally:
                process.kill()
                process.wait(timeout=10)
            tools.wait_idle()
            tools.sink.clear_faults()

        tools.mail_to_hr()
        cut_off("ack")  # sent while the new mail is read
        run()
        (issue,) = tools.jira_issues()
        tools.jira_as_person("POST", f"issue/{issue.id}/comment", {"body": adf(DESK_NOTE)})
        cut_off("comment")  # Facilities' comment, mailed to the requester
        run()
        (item,) = tools.snow_items()
        tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
        run()
        tools.resolve_in_jira(str(issue.id))
        cut_off("status")  # HR's call resumes: "in progress" is announced
        run()

    sent = tools.sent_mails()
    never = never_taken(tools, sent)
    assert never == {}, ("kept but never taken by the relay", never, tools.unsent_mails())
    assert Counter(str(m["X-USM-Kind"]) for m in sent) == {"ack": 1, "comment": 1, "status": 2}
    statuses = sorted(str(m["X-USM-Status"]) for m in sent if m["X-USM-Kind"] == "status")
    assert statuses == ["in_progress", "waiting:supplier"]
    store = Store.open(store_url)
    try:
        with store.begin(readonly=True) as tx:
            assert tx.list_outbox(status="pending") == []
            assert tx.list_dead_letters() == []
    finally:
        store.close()
