"""A file of the same name and size on the target that cannot be read costs no update.

Before a file is written, the target record's files are listed and a same-name, same-size one
(where the tool states no SHA-256) is read to see whether it is the bridge's own copy (an
upload whose answer was lost). A person may delete theirs between the listing and that
download (404), or the account may not read it (403): it cannot be proved to be the bridge's
copy, so it is not one. The file is written once, and the call's update (its summary) or
comment lands with it; nothing is dead-lettered. Through the real engine, store and outbox:
Facilities (Jira Cloud simulator) to IT (Jira Data Center simulator, then ServiceNow).

Every file is accounted for: the person's (gone, or left where it is and read up the chain as
any person's file) and the bridge's copy (written once, recorded on the supplier call).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from usm_bridge_jira.simulator import Attachment, JiraSimulator
from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimFault
from usm_bridge_servicenow.simulator.server import iter_records

from sync import test_attachment_flow
from sync.test_attachment_flow import (
    FORM,
    Chain,
    _engine,
    _failing,
    _request,
    calls,
    dead_letters,
    settle,
)
from usm_bridge.config import load_config
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.runtime import open_runtime
from usm_bridge.store import OutboxStatus
from usm_bridge.sync.engine import SyncEngine

chain = test_attachment_flow.chain  # the fixture (two Jira sites and their config), by name
SNOW_TABLE = "sc_req_item"
#: A person's file on IT's issue: the same name and size as Facilities' form, other bytes.
THEIRS = bytes(reversed(FORM))
SUMMARY = "New hire: desk, badge, laptop and the signed form"


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def settle_all(engine: SyncEngine, names: tuple[str, ...], rounds: int = 3) -> None:
    for _ in range(rounds):
        for name in names:
            summary = engine.run_cycle(name)
            assert summary.ok, summary.error


def _deleted_when_read(chain: Chain, theirs: Attachment) -> list[int]:
    """The person deletes ``theirs`` as the bridge starts to download it: the download finds
    it gone (the simulator's own 404). The list counts the downloads struck."""
    struck: list[int] = []
    answer = chain.it.answer

    def deleting(method: str, path: str, *rest: Any) -> Any:
        if method == "GET" and f"/attachment/{theirs.id}" in path and not struck:
            struck.append(404)
            chain.it.site.attachments.remove(theirs)
        return answer(method, path, *rest)

    chain.it.answer = deleting  # type: ignore[method-assign]
    return struck


def _refused_when_read(chain: Chain, theirs: Attachment) -> list[int]:
    """The bridge's account may not read ``theirs``: its download answers 403, once."""
    return _failing(chain.it, "GET", f"/attachment/{theirs.id}", 403, times=1)


def _relaying_comments(chain: Chain) -> None:
    """The route relays comments (appended to its table, the config file's last)."""
    path = chain.config.path
    assert path is not None
    path.write_text(path.read_text(encoding="utf-8") + "relay_comments = true\n", "utf-8")
    chain.config = load_config(path)


@pytest.mark.parametrize("via", ["update", "comment"])
@pytest.mark.parametrize(
    ("strike", "person_keeps"), [(_deleted_when_read, False), (_refused_when_read, True)]
)
def test_a_jira_candidate_that_cannot_be_read_costs_no_write_and_the_file_is_written_once(
    chain: Chain,
    strike: Callable[[Chain, Attachment], list[int]],
    person_keeps: bool,
    via: str,
) -> None:
    """The file goes with the call's update (its summary changed) or with the comment that
    names it; either lands, with the file written once."""
    if via == "comment":
        _relaying_comments(chain)
    issue = _request(chain)  # no file yet
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        [it_issue] = chain.it.site.issues.values()
        theirs = chain.it.site.attachments.add(it_issue, "form.pdf", THEIRS)
        chain.fac.site.attachments.add(issue, "form.pdf", FORM)
        if via == "update":
            chain.fac.site.touch(issue, summary=SUMMARY)
        else:
            chain.fac.site.add_comment(issue, "The signed form: [^form.pdf]")
        struck = strike(chain, theirs)

        engine.run_cycle("fac-jira")  # read, then the update or the comment pushed to IT

        assert len(struck) == 1 and struck[0] in (403, 404)
        assert dead_letters(engine) == []
        copied = [c for c in it_issue.comments if "The signed form" in str(c.body)]
        if via == "update":
            assert it_issue.summary == SUMMARY  # the update landed
        else:
            [comment] = copied  # the comment landed, naming its file
            assert "[^form.pdf]" in str(comment.body)
        ours = [a for a in it_issue.attachments if a.id != theirs.id]
        assert [(a.filename, a.sha256) for a in ours] == [("form.pdf", _sha(FORM))]
        assert (theirs in it_issue.attachments) is person_keeps
        [supplier] = calls(engine, "it")
        [copy] = [a for a in supplier.attachments if a.sha256 == _sha(FORM)]
        assert copy.source is not None and copy.refused is None
        assert (copy.source.instance, copy.source.remote_id) == ("it-jira", str(ours[0].id))

        settle(engine)  # quiet: nothing written twice; the person's file, if kept, goes up
        assert chain.requests("it", "POST", "/attachments") == 1
        again = [c for c in it_issue.comments if "The signed form" in str(c.body)]
        assert len(again) == len(copied) == (1 if via == "comment" else 0)
        assert [a.id for a in it_issue.attachments] == [
            *([theirs.id] if person_keeps else []), ours[0].id,
        ]  # fmt: skip
        fac_files = sorted(a.sha256 for a in issue.attachments)
        assert fac_files == sorted([_sha(FORM), *([_sha(THEIRS)] if person_keeps else [])])
        assert dead_letters(engine) == []


class SnowChain:
    """Facilities (Jira Cloud simulator) to IT (ServiceNow simulator, OAuth), and the config."""

    def __init__(self, tmp: Path) -> None:
        self.fac = JiraSimulator("cloud").start()
        self.snow = ServiceNowSimulator().start()
        self.uploads: list[int] = []  # the status of each upload the instance answered
        answer = self.snow.answer

        def counted(method: str, path: str, *rest: Any) -> Any:
            reply = answer(method, path, *rest)
            if method == "POST" and path.startswith("/api/now/attachment/file"):
                self.uploads.append(reply.status)
            return reply

        self.snow.answer = counted  # type: ignore[method-assign]
        retry = {"max_attempts": 2, "retry_budget": 2.0, "backoff_initial": 0.01,
                 "backoff_max": 0.02, "read_timeout": 5.0}  # fmt: skip
        settings = {
            "fac-jira": {"base_url": self.fac.base_url, "deployment": "cloud", "projects": ["IT"],
                         **self.fac.credentials(), **retry},
            "it-snow": {"instance_url": self.snow.base_url, "tables": [SNOW_TABLE],
                        "username": self.snow.username, "password": self.snow.password,
                        "auth": "oauth", "client_id": self.snow.client_id,
                        "client_secret": self.snow.client_secret, **retry},
        }  # fmt: skip
        kinds = {"fac-jira": ("facilities", "jira", "jira-service-management.yaml"),
                 "it-snow": ("it", "servicenow", "servicenow-sc-req-item.yaml")}  # fmt: skip
        store = f"sqlite:///{tmp / 'b.db'}"
        units = '[units.facilities]\ntitle = "Facilities"\n[units.it]\ntitle = "IT"\n'
        lines = [f"[store]\nurl = {json.dumps(store)}\n",
                 f"[attachments]\nspool = {json.dumps(str(tmp / 'spool'))}\n", units]  # fmt: skip
        for name, (unit, kind, mapping) in kinds.items():
            lines += [f"[instances.{name}]", f'unit = "{unit}"', f'kind = "{kind}"',
                      f"mapping = {json.dumps(str(SHIPPED_MAPPINGS_DIR / mapping))}",
                      "interval = 1", f"[instances.{name}.settings]",
                      *(f"{k} = {json.dumps(v)}" for k, v in settings[name].items()),
                      ""]  # fmt: skip
        lines += ["[[routes]]", 'from = "facilities"', 'to = "it"',
                  'when = { call_type = ["service_request"] }', "relay_comments = true",
                  ""]  # fmt: skip
        (tmp / "usm-bridge.toml").write_text("\n".join(lines), encoding="utf-8")
        self.config = load_config(tmp / "usm-bridge.toml")

    def record(self) -> str:
        [sys_id] = self.snow.ids(SNOW_TABLE)
        return sys_id

    def files(self) -> list[tuple[str, str, str]]:
        """IT's record's files: sys_id, name, SHA-256 of the bytes the instance holds."""
        rows = sorted(iter_records(self.snow, "sys_attachment"), key=lambda r: r["sys_id"])
        content = self.snow.attachments.path_of
        return [
            (r["sys_id"], r["file_name"], _sha(content(r["sys_id"]).read_bytes())) for r in rows
        ]

    def close(self) -> None:
        self.fac.stop()
        self.snow.stop()


@pytest.fixture
def snow_chain(tmp_path: Path) -> Iterator[SnowChain]:
    with closing(SnowChain(tmp_path)) as made:
        yield made


def _token_expires_before_the_upload(snow: ServiceNowSimulator) -> None:
    """The bridge's access token expires on the instance (its clock moved on past the token's
    life) just as the first upload arrives: that upload is answered 401."""
    answer = snow.answer
    done: list[bool] = []

    def expiring(method: str, path: str, *rest: Any) -> Any:
        if method == "POST" and path.startswith("/api/now/attachment/file") and not done:
            done.append(True)
            snow.clock.advance(snow.token_lifetime + 1)
        return answer(method, path, *rest)

    snow.answer = expiring  # type: ignore[method-assign]


def _snow_deleted_when_read(snow: ServiceNowSimulator, theirs: str) -> None:
    """The person deletes ``theirs`` as the bridge starts to download it (a 404)."""
    answer = snow.answer

    def deleting(method: str, path: str, *rest: Any) -> Any:
        if method == "GET" and path.startswith(f"/api/now/attachment/{theirs}/file"):
            snow.attachments.delete(theirs)
        return answer(method, path, *rest)

    snow.answer = deleting  # type: ignore[method-assign]


def _snow_refused_when_read(snow: ServiceNowSimulator, theirs: str) -> None:
    """The bridge's account may not read ``theirs``, once (an ACL since changed)."""
    answer = snow.answer
    struck: list[int] = []

    def refusing(method: str, path: str, *rest: Any) -> Any:
        if method == "GET" and path.startswith(f"/api/now/attachment/{theirs}/file") and not struck:
            struck.append(403)
            snow.inject(SimFault("reject", status=403, message="ACL Exception Read Failed"))
        return answer(method, path, *rest)

    snow.answer = refusing  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("strike", "person_keeps"),
    [(_snow_deleted_when_read, False), (_snow_refused_when_read, True)],
)
def test_a_servicenow_candidate_that_cannot_be_read_costs_no_update_and_a_401_no_wait(
    snow_chain: SnowChain,
    strike: Callable[[ServiceNowSimulator, str], None],
    person_keeps: bool,
) -> None:
    """IT's record holds a person's file of the same name and size whose ``hash`` the
    instance does not state (ServiceNow leaves it empty on an encrypted attachment): the bridge
    reads it to compare, and that read fails. Then the bridge's token expires as its upload
    arrives: the file is sent again with a new token, at once, and lands once."""
    tools = snow_chain
    issue = tools.fac.site.add_issue("New hire: desk, badge and laptop")
    with open_runtime(tools.config) as runtime:
        engine = runtime.engine
        settle_all(engine, ("fac-jira", "it-snow"))
        record = tools.record()
        theirs = tools.snow.attachments.attach(SNOW_TABLE, record, "form.pdf", THEIRS,
                                               user="beth.anglin")  # fmt: skip
        tools.snow.tables["sys_attachment"].records[theirs]["hash"] = ""  # not stated
        tools.fac.site.attachments.add(issue, "form.pdf", FORM)
        tools.fac.site.touch(issue, summary=SUMMARY)
        strike(tools.snow, theirs)
        _token_expires_before_the_upload(tools.snow)

        engine.run_cycle("fac-jira")  # read, then the supplier's update pushed to IT

        assert dead_letters(engine) == []
        assert tools.snow.get(SNOW_TABLE, record)["short_description"] == SUMMARY  # type: ignore[index]
        assert tools.uploads == [401, 201]  # refused with the old token, sent again at once
        with engine.store.begin(readonly=True) as tx:  # not deferred: sent again in the push
            assert tx.list_outbox(status=OutboxStatus.PENDING, instance="it-snow") == []
        ours = [f for f in tools.files() if f[0] != theirs]
        assert [(name, sha) for _, name, sha in ours] == [("form.pdf", _sha(FORM))]
        assert (theirs in [f[0] for f in tools.files()]) is person_keeps
        [supplier] = calls(engine, "it")
        [copy] = [a for a in supplier.attachments if a.sha256 == _sha(FORM)]
        assert copy.source is not None and copy.refused is None
        assert (copy.source.instance, copy.source.remote_id) == ("it-snow", ours[0][0])

        settle_all(engine, ("fac-jira", "it-snow"))  # nothing written twice
        assert tools.uploads == [401, 201]
        assert [f[0] for f in tools.files()] == sorted(
            [ours[0][0], *([theirs] if person_keeps else [])]
        )
        fac_files = sorted(a.sha256 for a in issue.attachments)
        assert fac_files == sorted([_sha(FORM), *([_sha(THEIRS)] if person_keeps else [])])
        assert dead_letters(engine) == []
