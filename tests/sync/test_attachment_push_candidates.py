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
from collections.abc import Callable
from typing import Any

import pytest
from usm_bridge_jira.simulator import Attachment

from usm_bridge.config import load_config

from sync.test_attachment_flow import (
    FORM,
    Chain,
    _engine,
    _failing,
    _request,
    calls,
    chain,  # noqa: F401 - the fixture, used by name
    dead_letters,
    settle,
)

#: A person's file on IT's issue: the same name and size as Facilities' form, other bytes.
THEIRS = bytes(reversed(FORM))
SUMMARY = "New hire: desk, badge, laptop and the signed form"


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


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


@pytest.mark.parametrize(
    ("strike", "person_keeps"), [(_deleted_when_read, False), (_refused_when_read, True)]
)
def test_a_jira_candidate_that_cannot_be_read_costs_no_update_and_the_file_is_written_once(
    chain: Chain, strike: Callable[[Chain, Attachment], list[int]], person_keeps: bool
) -> None:
    issue = _request(chain)  # no file yet
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        [it_issue] = chain.it.site.issues.values()
        theirs = chain.it.site.attachments.add(it_issue, "form.pdf", THEIRS)
        chain.fac.site.attachments.add(issue, "form.pdf", FORM)
        chain.fac.site.touch(issue, summary=SUMMARY)
        struck = strike(chain, theirs)

        engine.run_cycle("fac-jira")  # read, then the supplier's update pushed to IT

        assert struck == [struck[0]] and struck[0] in (403, 404)
        assert it_issue.summary == SUMMARY  # the update landed
        assert dead_letters(engine) == []
        ours = [a for a in it_issue.attachments if a.id != theirs.id]
        assert [(a.filename, a.sha256) for a in ours] == [("form.pdf", _sha(FORM))]
        assert (theirs in it_issue.attachments) is person_keeps
        [supplier] = calls(engine, "it")
        [copy] = [a for a in supplier.attachments if a.sha256 == _sha(FORM)]
        assert copy.source is not None and copy.refused is None
        assert (copy.source.instance, copy.source.remote_id) == ("it-jira", str(ours[0].id))

        settle(engine)  # quiet: nothing written twice; the person's file, if kept, goes up
        assert chain.requests("it", "POST", "/attachments") == 1
        assert [a.id for a in it_issue.attachments] == [
            *([theirs.id] if person_keeps else []), ours[0].id,
        ]  # fmt: skip
        fac_files = sorted(a.sha256 for a in issue.attachments)
        assert fac_files == sorted([_sha(FORM), *([_sha(THEIRS)] if person_keeps else [])])
        assert dead_letters(engine) == []


def _relaying_comments(chain: Chain) -> None:
    """The route relays comments (appended to its table, the config file's last)."""
    path = chain.config.path
    assert path is not None
    path.write_text(path.read_text(encoding="utf-8") + "relay_comments = true\n", "utf-8")
    chain.config = load_config(path)


@pytest.mark.parametrize(
    ("strike", "person_keeps"), [(_deleted_when_read, False), (_refused_when_read, True)]
)
def test_a_jira_candidate_that_cannot_be_read_costs_no_comment_and_its_file_goes_with_it(
    chain: Chain, strike: Callable[[Chain, Attachment], list[int]], person_keeps: bool
) -> None:
    _relaying_comments(chain)
    issue = _request(chain)
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        [it_issue] = chain.it.site.issues.values()
        theirs = chain.it.site.attachments.add(it_issue, "form.pdf", THEIRS)
        chain.fac.site.attachments.add(issue, "form.pdf", FORM)
        chain.fac.site.add_comment(issue, "The signed form: [^form.pdf]")
        struck = strike(chain, theirs)

        engine.run_cycle("fac-jira")  # read, then the comment and its file pushed to IT

        assert len(struck) == 1 and dead_letters(engine) == []
        [copied] = [c for c in it_issue.comments if "The signed form" in str(c.body)]
        assert "[^form.pdf]" in str(copied.body)
        ours = [a for a in it_issue.attachments if a.id != theirs.id]
        assert [(a.filename, a.sha256) for a in ours] == [("form.pdf", _sha(FORM))]
        assert (theirs in it_issue.attachments) is person_keeps

        settle(engine)
        assert chain.requests("it", "POST", "/attachments") == 1
        assert len([c for c in it_issue.comments if "The signed form" in str(c.body)]) == 1
        assert [a.id for a in it_issue.attachments] == [
            *([theirs.id] if person_keeps else []), ours[0].id,
        ]  # fmt: skip
        fac_files = sorted(a.sha256 for a in issue.attachments)
        assert fac_files == sorted([_sha(FORM), *([_sha(THEIRS)] if person_keeps else [])])
        assert dead_letters(engine) == []
