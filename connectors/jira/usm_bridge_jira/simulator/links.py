"""Issue links as Jira Cloud keeps them: link types, and the links between two issues.

``POST /rest/api/3/issueLink`` takes ``{"type": {"name"|"id"}, "inwardIssue": {"key"|"id"},
"outwardIssue": {"key"|"id"}}`` and answers 201 with an empty body. Jira reads the pair the way
round its own UI words it: the request's ``inwardIssue`` is the issue whose view shows the
type's *outward* phrase ("INC-1 causes INC-2" for inwardIssue INC-1), so in ``fields.issuelinks``
of that issue the link names the other one as ``outwardIssue``, and the other issue's link
names it as ``inwardIssue``. The default link types are those of a Jira Service Management
site (Problem/Incident: "causes" / "is caused by").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["LINK_TYPES", "IssueLink", "IssueLinks", "LinkType"]


@dataclass(frozen=True)
class LinkType:
    id: str
    name: str
    inward: str
    outward: str

    def as_json(self, api: str) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "inward": self.inward,
            "outward": self.outward,
            "self": f"{api}/issueLinkType/{self.id}",
        }


LINK_TYPES: Final = (
    LinkType("10000", "Blocks", "is blocked by", "blocks"),
    LinkType("10001", "Cloners", "is cloned by", "clones"),
    LinkType("10002", "Duplicate", "is duplicated by", "duplicates"),
    LinkType("10003", "Relates", "relates to", "relates to"),
    LinkType("10004", "Problem/Incident", "is caused by", "causes"),
)


@dataclass(frozen=True)
class IssueLink:
    """One link: ``source`` is the request's ``inwardIssue`` (its view shows the outward
    phrase), ``target`` the request's ``outwardIssue``; both are issue ids."""

    id: int
    type: LinkType
    source: int
    target: int


@dataclass
class IssueLinks:
    """The site's link types and links."""

    types: dict[str, LinkType] = field(default_factory=lambda: {t.id: t for t in LINK_TYPES})
    links: list[IssueLink] = field(default_factory=list)
    _next: int = 10000

    def type_of(self, ref: Any) -> LinkType | None:
        """The link type a request names (by ``id`` or ``name``), or ``None``."""
        if not isinstance(ref, dict):
            return None
        if "id" in ref:
            return self.types.get(str(ref["id"]))
        return next((t for t in self.types.values() if t.name == ref.get("name")), None)

    def add(self, kind: LinkType, source: int, target: int) -> IssueLink:
        link = IssueLink(self._next, kind, source, target)
        self._next += 1
        self.links.append(link)
        return link

    def of(self, issue_id: int) -> list[tuple[IssueLink, str, int]]:
        """The links of one issue: each with the side the *other* issue is on as Jira names it
        in ``fields.issuelinks`` (``outwardIssue`` or ``inwardIssue``) and its id."""
        out: list[tuple[IssueLink, str, int]] = []
        for link in self.links:
            if link.source == issue_id:
                out.append((link, "outwardIssue", link.target))
            elif link.target == issue_id:
                out.append((link, "inwardIssue", link.source))
        return out

    def forget(self, issue_id: int) -> None:
        """Drop the links of a deleted issue (Jira deletes them with it)."""
        self.links = [link for link in self.links if issue_id not in (link.source, link.target)]
