"""The first line of a copied comment names its author and unit (``Name (Unit) wrote:``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usm_bridge.config import BridgeConfig
from usm_bridge.model import Comment, Person
from usm_bridge.sync.attribution import attributed, author_line, unit_title

WHEN = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


@pytest.fixture
def config() -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "units": {"hr": {"name": "hr", "title": "HR"}, "fac": {"name": "fac"}},
            "instances": {
                "hr-mail": {"name": "hr-mail", "unit": "hr", "kind": "email", "mapping": "m"},
                "fac-jira": {"name": "fac-jira", "unit": "fac", "kind": "jira", "mapping": "m"},
            },
        }
    )


def _comment(origin: str, author: Person | None, body: str = "Near the window") -> Comment:
    return Comment(body=body, created=WHEN, origin=origin, author=author)


@pytest.mark.parametrize(
    ("author", "unit", "line"),
    [
        (
            Person(name="Hannah Hiring", email="hannah@hr.example"),
            "HR",
            "Hannah Hiring (HR) wrote:",
        ),
        (Person(email="hannah@hr.example"), "HR", "hannah@hr.example (HR) wrote:"),
        (Person(ref="557058:abc"), "HR", "557058:abc (HR) wrote:"),
        (Person(name="Hannah Hiring"), None, "Hannah Hiring wrote:"),
        (None, "HR", "Someone at HR wrote:"),
        (None, None, None),
    ],
    ids=["name", "email", "ref", "no-unit", "no-author", "nothing"],
)
def test_the_author_line_names_the_person_and_the_unit(
    author: Person | None, unit: str | None, line: str | None
) -> None:
    assert author_line(author, unit) == line


def test_the_unit_is_the_title_of_the_originating_instance_s_unit_else_its_name(
    config: BridgeConfig,
) -> None:
    assert unit_title(config, "hr-mail") == "HR"
    assert unit_title(config, "fac-jira") == "fac"
    assert unit_title(config, "bridge") is None  # a comment the bridge wrote itself


def test_a_copy_starts_with_the_author_line_above_the_original_body(config: BridgeConfig) -> None:
    comment = _comment("hr-mail", Person(name="Hannah Hiring"), "Near the window\nplease")
    assert attributed(comment, config) == "Hannah Hiring (HR) wrote:\nNear the window\nplease"
    # The canonical comment keeps its author as a person and its body as written.
    assert comment.author == Person(name="Hannah Hiring")
    assert comment.body == "Near the window\nplease"


def test_a_body_that_already_starts_with_the_same_line_gets_no_second(
    config: BridgeConfig,
) -> None:
    body = "Hannah Hiring (HR) wrote:\nNear the window"
    comment = _comment("hr-mail", Person(name="Hannah Hiring"), body)
    assert attributed(comment, config) == body


def test_a_quoted_line_of_someone_else_is_kept_under_the_author_line(
    config: BridgeConfig,
) -> None:
    body = "Frank (fac) wrote:\nIt ships Tuesday\n\nThanks!"
    comment = _comment("hr-mail", Person(name="Hannah Hiring"), body)
    assert attributed(comment, config) == f"Hannah Hiring (HR) wrote:\n{body}"


def test_a_comment_without_author_or_unit_is_copied_as_it_is(config: BridgeConfig) -> None:
    assert attributed(_comment("bridge", None), config) == "Near the window"
