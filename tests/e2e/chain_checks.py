"""What a chain run under kills must end with, and what people do meanwhile: shared by the kill
test of the sync process (:mod:`e2e.test_e2e_kill`) and of Celery workers
(``celery_workers/test_worker_kills.py``).

The run: onboarding mails reach HR (2 at first, 2 more at kills 2 and 5), each with its signed
form attached, Facilities and IT comment on what they hold, IT delivers; the simulators and the
relay answer slowly around each kill, so kills land in mid-request (a file's upload among
them: the form goes to Jira and on to ServiceNow).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from usm_bridge_jira.simulator import SimFault
from usm_bridge_jira.transforms import adf_to_text
from usm_bridge_servicenow.simulator import SimFault as SnowFault

from e2e.e2e_env import SmtpFault, Tools, b64_part
from usm_bridge.model import Status
from usm_bridge.store import Store

__all__ = [
    "FAC_NOTE",
    "FORMS",
    "IT_NOTE",
    "MAILS",
    "check_invariants",
    "clear_faults",
    "mail_first_onboardings",
    "never_taken",
    "people_work",
    "said",
    "slow_everything",
]

#: Mails that arrive at HR during the kills (besides the first two).
MAILS = 4
IT_NOTE = "IT: the laptop for {n} is imaged."
FAC_NOTE = "Facilities: desk for {n} is ready."
#: The onboardings' tags: two before the first kill, two at kill 2 and two at kill 5.
_TAGS = ("0", "1", "2-0", "2-1", "5-0", "5-1")
#: Each onboarding's signed form (file name: content), attached to its mail; each different.
FORMS = {
    f"form-{tag}.pdf": b"%PDF-1.4\n% onboarding form " + tag.encode() + b", signed\n" + b"0" * 3000
    for tag in _TAGS
}
#: What a requested item nobody knows is shown with (who made it, with which marker).
_ITEM_EVIDENCE = ("number", "sys_id", "short_description", "correlation_id", "sys_created_by")


def mail_first_onboardings(tools: Tools) -> None:
    """The two onboarding mails HR holds before the first kill (:data:`MAILS` come later)."""
    for n in range(2):
        tools.mail_to_hr(
            subject=f"[request] Onboarding {n}: a desk, a badge and a laptop",
            sender=f"Manager {n} <manager{n}@example.com>",
            parts=[_form_part(str(n))],
        )


def _form_part(tag: str) -> bytes:
    name = f"form-{tag}.pdf"
    return b64_part(
        f'Content-Type: application/pdf; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"',
        FORMS[name],
    )


def slow_everything(tools: Tools, rng: random.Random, mail_rng: random.Random) -> None:
    """The next few requests of both simulators and the next mails or so of the SMTP relay are
    answered late (each 0.1-0.3 s)."""
    clear_faults(tools)
    delay = rng.choice([0.1, 0.2, 0.3])
    tools.jira.fail_next(SimFault.SLOW, times=rng.randint(2, 10), delay=delay)
    tools.snow.inject(SnowFault("slow", delay=delay), times=rng.randint(2, 10))
    mail_delay = mail_rng.choice([0.1, 0.2, 0.3])
    for _ in range(mail_rng.randint(1, 3)):
        tools.sink.fail_next(SmtpFault(delay=mail_delay, kept_first=mail_rng.random() < 0.5))


def clear_faults(tools: Tools) -> None:
    tools.jira.clear_faults()
    tools.snow.clear_faults()
    tools.sink.clear_faults()


def people_work(tools: Tools, kill: int, noted: set[str], *, kills: int) -> None:
    """What the departments do between two kills (on the records that exist by then)."""
    if kill in (2, 5):  # more onboarding mail arrives while the bridge is being killed
        for n in range(2):
            tools.mail_to_hr(
                subject=f"[request] Onboarding {kill}-{n}: a desk, a badge and a laptop",
                body=f"New hire {kill}-{n} needs a desk, a badge and a laptop.",
                # One manager each: the mailbox answers a sender at most 3 times an hour.
                sender=f"Manager {kill}-{n} <manager{kill}{n}@example.com>",
                parts=[_form_part(f"{kill}-{n}")],
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
    if kill == kills - 3:  # IT delivers
        for item in tools.snow_items():
            tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")


def never_taken(tools: Tools, sent: list[Any]) -> dict[str, str]:
    """The kind of each mail kept in HR's outbox that the relay never took, by Message-ID."""
    taken = tools.smtp_message_ids()
    kinds = {str(m["Message-ID"]): str(m["X-USM-Kind"]) for m in sent}
    return {message_id: kind for message_id, kind in kinds.items() if message_id not in taken}


def check_invariants(tools: Tools, store_url: str) -> None:
    """Nothing lost, nothing duplicated, every comment copied once, everything resolved
    travelled back: the end state of the kill tests' chain run."""
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
    never = never_taken(tools, sent)
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
    copied_to_snow = [said(t, "Facilities") for t in snow_texts if not t.startswith("IT:")]
    copied_to_jira = [said(t, "IT") for t in jira_texts if not t.startswith("Facilities:")]
    for note in fac_notes:
        assert copied_to_snow.count(note) == 1, note  # one copy down the chain
        assert len([t for t in mail_texts if note in t]) == 1, note  # one mail up the chain
    for note in it_notes:
        assert copied_to_jira.count(note) == 1, note
    assert len(jira_texts) == len(fac_notes) + len(it_notes), jira_texts
    assert len(snow_texts) == len(fac_notes) + len(it_notes), snow_texts
    # Files: each onboarding's form once in its Jira issue and once in its ServiceNow item,
    # the bytes mailed, however the kills fell between an upload and its record; none mailed
    # back to HR, whose requester sent it.
    for issue in issues:
        tag = issue.summary.split("Onboarding ", 1)[1].split(":", 1)[0]
        assert [(a.filename, a.path.read_bytes()) for a in issue.attachments] == [
            (f"form-{tag}.pdf", FORMS[f"form-{tag}.pdf"])
        ], (issue.key, [a.filename for a in issue.attachments])
    snow_files = [tools.snow_files(item["sys_id"]) for item in items]
    assert [len(files) for files in snow_files] == [1] * mails, snow_files
    assert sorted(f for files in snow_files for f in files) == sorted(FORMS.items())
    assert [name for name in FORMS if tools.mailed_files(name)] == []
    # Everything resolved travelled back: HR's calls resumed.
    assert {c.status for c in it_calls} == {Status.CLOSED}
    assert {c.status for c in fac_calls} == {Status.FULFILLED}
    assert {c.status for c in hr_calls} == {Status.IN_PROGRESS}


def said(copy: str, unit: str) -> str:
    """The words of a copy under its author line (``Name (Unit) wrote:``), which it must have."""
    line, _, words = copy.partition("\n")
    assert line.endswith(f" ({unit}) wrote:"), copy
    return words.strip()
