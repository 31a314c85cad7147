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

from usm_bridge_jira.simulator import SimFault
from usm_bridge_jira.transforms import adf_to_text
from usm_bridge_servicenow.simulator import SimFault as SnowFault

from e2e.e2e_env import SmtpFault, Tools, adf, write_config
from usm_bridge.model import Status
from usm_bridge.store import Store

DRIVER = Path(__file__).with_name("sync_driver.py")
SEED = 20240611
KILLS = 18
#: A restart stands for a process started after the killed one's outbox lease (5 min) ran out.
LEASE_GAP = 360.0
MAILS = 4
IT_NOTE = "IT: the laptop for {n} is imaged."
FAC_NOTE = "Facilities: desk for {n} is ready."
#: What a requested item nobody knows is shown with (who made it, with which marker).
_ITEM_EVIDENCE = ("number", "sys_id", "short_description", "correlation_id", "sys_created_by")


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


def _slow_everything(tools: Tools, rng: random.Random, mail_rng: random.Random) -> None:
    """The next few requests of both simulators and the next mails or so of the SMTP relay are
    answered late (each 0.1-0.3 s)."""
    _clear_faults(tools)
    delay = rng.choice([0.1, 0.2, 0.3])
    tools.jira.fail_next(SimFault.SLOW, times=rng.randint(2, 10), delay=delay)
    tools.snow.inject(SnowFault("slow", delay=delay), times=rng.randint(2, 10))
    mail_delay = mail_rng.choice([0.1, 0.2, 0.3])
    for _ in range(mail_rng.randint(1, 3)):
        tools.sink.fail_next(SmtpFault(delay=mail_delay, kept_first=mail_rng.random() < 0.5))


def _clear_faults(tools: Tools) -> None:
    tools.jira.clear_faults()
    tools.snow.clear_faults()
    tools.sink.clear_faults()


def _people_work(tools: Tools, kill: int, noted: set[str]) -> None:
    """What the departments do between two kills (on the records that exist by then)."""
    if kill in (2, 5):  # more onboarding mail arrives while the bridge is being killed
        for n in range(2):
            tools.mail_to_hr(
                subject=f"[request] Onboarding {kill}-{n}: a desk, a badge and a laptop",
                body=f"New hire {kill}-{n} needs a desk, a badge and a laptop.",
                # One manager each: the mailbox answers a sender at most 3 times an hour.
                sender=f"Manager {kill}-{n} <manager{kill}{n}@example.com>",
            )
    if kill >= 8 and kill % 2 == 0:  # IT answers the requested items it holds by now
        for item in tools.snow_items():
            if item["sys_id"] not in noted:
                noted.add(item["sys_id"])
                tools.snow.update(
                    "sc_req_item", item["sys_id"],
                    {"comments": IT_NOTE.format(n=item["number"])}, user="beth.anglin",
                )  # fmt: skip
    if kill >= 9 and kill % 2 == 1:  # Facilities writes on its issues
        for issue in tools.jira_issues():
            if issue.key not in noted:
                noted.add(issue.key)
                tools.jira.site.add_comment(issue, FAC_NOTE.format(n=issue.key))
    if kill == KILLS - 3:  # IT delivers
        for item in tools.snow_items():
            tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    config_path = tmp_path / "usm-bridge.toml"
    write_config(tools, config_path, store_url)
    Store.open(store_url).close()  # migrated once, before the first process can be killed
    rng = random.Random(SEED)
    mail_rng = random.Random(SEED + 1)
    for n in range(2):
        tools.mail_to_hr(
            subject=f"[request] Onboarding {n}: a desk, a badge and a laptop",
            sender=f"Manager {n} <manager{n}@example.com>",
        )
    log_path = tmp_path / "sync.log"
    killed_alive = 0
    noted: set[str] = set()
    with log_path.open("ab") as log:
        for kill in range(KILLS):
            _people_work(tools, kill, noted)
            _slow_everything(tools, rng, mail_rng)
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
        _clear_faults(tools)
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
        _people_work(tools, 8, noted)
        _people_work(tools, 9, noted)
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

    _check_invariants(tools, store_url)


def _never_taken(tools: Tools, sent: list[Any]) -> dict[str, str]:
    """The kind of each mail kept in HR's outbox that the relay never took, by Message-ID."""
    taken = tools.smtp_message_ids()
    kinds = {str(m["Message-ID"]): str(m["X-USM-Kind"]) for m in sent}
    return {message_id: kind for message_id, kind in kinds.items() if message_id not in taken}


def _check_invariants(tools: Tools, store_url: str) -> None:
    mails = MAILS + 2
    issues, items = tools.jira_issues(), tools.snow_items()
    sent = tools.sent_mails()
    store = Store.open(store_url)
    try:
        with store.begin(readonly=True) as tx:
            hr_calls = [s.call for s in tx.list_calls(unit="hr")]
            fac_calls = [s.call for s in tx.list_calls(unit="facilities")]
            it_calls = [s.call for s in tx.list_calls(unit="it")]
            # Nothing lost: every record of every tool has its canonical call ...
            for issue in issues:
                assert tx.find_call("facilities-jira", str(issue.id)) is not None, issue.key
            for item in items:
                known = tx.find_call("it-snow", item["sys_id"]) is not None
                assert known, {k: item.get(k) for k in _ITEM_EVIDENCE}
            assert len(hr_calls) == tools.inbox_files() == mails
            # ... and every route opened exactly one supplier for each call.
            for upstream in (*hr_calls, *fac_calls):
                links = tx.suppliers_of(upstream.id)
                assert len(links) == 1, (upstream.unit, upstream.title, links)
            assert tx.list_outbox(status="pending") == []
            assert tx.list_dead_letters() == []
    finally:
        store.close()

    # Nothing duplicated in any tool: one issue and one item per onboarding, one marker each.
    assert len(fac_calls) == len(it_calls) == mails
    assert len(issues) == mails, [i.key for i in issues]
    assert len(items) == mails, [i["number"] for i in items]
    assert len({i.properties["usmBridge"]["correlation"] for i in issues}) == mails
    assert len({i["correlation_id"] for i in items}) == mails
    assert {f"usm-bridge:{c.id}" for c in fac_calls} == {
        i.properties["usmBridge"]["correlation"] for i in issues
    }
    # Mail: one acknowledgement per thread, each status announced once, no Message-ID twice.
    ids = [str(m["Message-ID"]) for m in sent]
    assert len(ids) == len(set(ids))
    acks = Counter(str(m["X-USM-Reference"]) for m in sent if m["X-USM-Kind"] == "ack")
    assert len(acks) == mails and set(acks.values()) == {1}
    statuses = Counter(
        (str(m["X-USM-Reference"]), str(m["X-USM-Status"]))
        for m in sent
        if m["X-USM-Kind"] == "status"
    )
    assert statuses and set(statuses.values()) == {1}, statuses
    # Every mail kept reached the relay, and under its own Message-ID: a re-send after a kill
    # reuses it.
    never = _never_taken(tools, sent)
    assert never == {}, ("kept but never taken by the relay", never, tools.unsent_mails())
    assert tools.smtp_message_ids() == set(ids), tools.smtp_message_ids() - set(ids)

    # Comments: each person's comment copied once to each neighbour, never echoed back.
    jira_texts = [adf_to_text(c.body).strip() for i in issues for c in i.comments]
    snow_texts = [
        e["value"]
        for i in items
        for e in tools.snow.journal(i["sys_id"])
        if e["element"] == "comments"
    ]
    mail_texts = [m.get_content() for m in sent]
    fac_notes = [t for t in jira_texts if t.startswith("Facilities:")]
    it_notes = [t for t in snow_texts if t.startswith("IT:")]
    assert fac_notes and it_notes
    assert len(set(fac_notes)) == len(fac_notes) and len(set(it_notes)) == len(it_notes)
    # A copy names its author and unit above the words (the person's own comments do not).
    copied_to_snow = [_said(t, "Facilities") for t in snow_texts if not t.startswith("IT:")]
    copied_to_jira = [_said(t, "IT") for t in jira_texts if not t.startswith("Facilities:")]
    for note in fac_notes:
        assert copied_to_snow.count(note) == 1, note  # one copy down the chain
        assert len([t for t in mail_texts if note in t]) == 1, note  # one mail up the chain
    for note in it_notes:
        assert copied_to_jira.count(note) == 1, note
    assert len(jira_texts) == len(fac_notes) + len(it_notes), jira_texts
    assert len(snow_texts) == len(fac_notes) + len(it_notes), snow_texts
    # Everything resolved travelled back: HR's calls resumed.
    assert {c.status for c in it_calls} == {Status.CLOSED}
    assert {c.status for c in fac_calls} == {Status.FULFILLED}
    assert {c.status for c in hr_calls} == {Status.IN_PROGRESS}


def _said(copy: str, unit: str) -> str:
    """The words of a copy under its author line (``Name (Unit) wrote:``), which it must have."""
    line, _, words = copy.partition("\n")
    assert line.endswith(f" ({unit}) wrote:"), copy
    return words.strip()


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
    never = _never_taken(tools, sent)
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
