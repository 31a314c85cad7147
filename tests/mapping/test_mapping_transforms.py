"""The shipped transforms (the core's and each connector's), good input and bad."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shipped_transforms import CORE, TOOL_PLUGINS, TRANSFORMS

from usm_bridge.mapping import plugin as mapping_plugin
from usm_bridge.plugins import PluginHost

#: Every shipped transform by name, as the tests below call them.
t = SimpleNamespace(**TRANSFORMS)


def test_the_core_and_each_connector_contribute_their_transforms() -> None:
    core = PluginHost(load_entrypoints=False, plugins=[mapping_plugin])
    assert core.transforms() == CORE
    assert not set(CORE) & {"jira_datetime", "adf_to_text", "servicenow_display_code"}
    host = PluginHost(load_entrypoints=False, plugins=[mapping_plugin, *TOOL_PLUGINS])
    assert host.transforms() == TRANSFORMS
    assert set(TRANSFORMS) >= {"jira_datetime", "adf_to_text", "servicenow_display_code"}


@pytest.mark.parametrize(
    ("func", "text", "expected"),
    [
        (
            t.jira_datetime,
            "2021-01-17T12:34:00.000+0000",
            datetime(2021, 1, 17, 12, 34, tzinfo=UTC),
        ),
        (
            t.jira_datetime,
            "2021-01-17T12:34:00.123+0100",
            datetime(2021, 1, 17, 11, 34, 0, 123000, tzinfo=UTC),
        ),
        (
            t.servicenow_datetime,
            "2016-01-22 14:28:24",
            datetime(2016, 1, 22, 14, 28, 24, tzinfo=UTC),
        ),
        (t.dayfirst_datetime, "29-02-2016 01:16", datetime(2016, 2, 29, 1, 16, tzinfo=UTC)),
        (t.dayfirst_datetime, "05-03-2016 12:00:30", datetime(2016, 3, 5, 12, 0, 30, tzinfo=UTC)),
        (
            t.rfc2822_datetime,
            "Tue, 01 Mar 2016 10:00:00 +0100",
            datetime(2016, 3, 1, 9, tzinfo=UTC),
        ),
        (t.rfc2822_datetime, "1 Mar 2016 10:00:00 -0000", datetime(2016, 3, 1, 10, tzinfo=UTC)),
        (t.parse_datetime, "2016-03-01T10:00:00Z", datetime(2016, 3, 1, 10, tzinfo=UTC)),
    ],
)
def test_timestamps(func: Any, text: str, expected: datetime) -> None:
    parsed = func(text)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("func", "bad"),
    [
        (t.jira_datetime, "2021-01-17 12:34"),
        (t.servicenow_datetime, "22-01-2016 14:28"),
        (t.dayfirst_datetime, "2016-02-29 01:16"),
        (t.dayfirst_datetime, "31-02-2016 01:16"),
        (t.rfc2822_datetime, "yesterday"),
        (t.parse_datetime, "soon"),
        (t.jira_datetime, {"not": "text"}),
    ],
)
def test_bad_timestamps_raise_value_error(func: Any, bad: Any) -> None:
    with pytest.raises(ValueError):
        func(bad)


def test_naive_times_are_read_in_the_given_zone() -> None:
    parsed = t.parse_datetime("2016-01-22 14:28", format="%Y-%m-%d %H:%M", tz="Europe/Amsterdam")
    assert parsed.utcoffset() == timedelta(hours=1)
    assert t.dayfirst_datetime("29-02-2016 01:16", tz="Europe/Amsterdam").hour == 1
    with pytest.raises(ValueError, match="unknown time zone"):
        t.parse_datetime("2016-01-22T14:28:00", tz="Mars/Olympus")


def test_a_timestamp_is_read_from_a_bounded_text_only() -> None:
    # Any text is bounded, also a timestamp's (a text is read without as_text's conversions).
    with pytest.raises(ValueError, match="a timestamp longer than 1000000 characters"):
        t.parse_datetime(" " * 1_000_001 + "2016-01-22 14:28:24", format="%Y-%m-%d %H:%M:%S")
    assert t.parse_datetime(" 2016-01-22 14:28:24 ", format="%Y-%m-%d %H:%M:%S") == datetime(
        2016, 1, 22, 14, 28, 24, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="'true' is not a timestamp in ISO 8601"):
        t.parse_datetime(True)  # not a text: as_text's conversion


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0))
)
def test_each_format_round_trips(moment: datetime) -> None:
    assert t.jira_datetime(t.format_jira_datetime(moment)) == moment
    assert t.servicenow_datetime(t.format_servicenow_datetime(moment)) == moment
    assert t.rfc2822_datetime(t.format_rfc2822_datetime(moment)) == moment
    assert t.parse_datetime(t.format_datetime(moment)) == moment
    minute = moment.replace(second=0)
    assert t.dayfirst_datetime(t.format_dayfirst_datetime(minute)) == minute


def test_formats_convert_to_the_tools_zone() -> None:
    moment = datetime(2021, 1, 17, 13, 34, tzinfo=timezone(timedelta(hours=1)))
    assert t.format_jira_datetime(moment) == "2021-01-17T12:34:00.000+0000"
    assert t.format_servicenow_datetime(moment) == "2021-01-17 12:34:00"
    assert t.format_rfc2822_datetime(moment) == "Sun, 17 Jan 2021 12:34:00 +0000"


ADF = {
    "type": "doc",
    "version": 1,
    "content": [
        {
            "type": "paragraph",
            "content": [
                {"type": "text", "text": "Hello "},
                {"type": "text", "text": "world", "marks": [{"type": "strong"}]},
                {"type": "hardBreak"},
                {"type": "mention", "attrs": {"id": "5b10", "text": "@Ann"}},
            ],
        },
        {
            "type": "bulletList",
            "content": [
                {
                    "type": "listItem",
                    "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}
                    ],
                },
                {
                    "type": "listItem",
                    "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "two"}]}
                    ],
                },
            ],
        },
        {"type": "codeBlock", "content": [{"type": "text", "text": "x = 1"}]},
    ],
}


def test_adf_to_text() -> None:
    assert t.adf_to_text(ADF) == "Hello world\n@Ann\n- one\n- two\nx = 1"
    assert t.adf_to_text("v2 plain text") == "v2 plain text"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "paragraph"},
        ["doc"],
        42,
        {"type": "doc", "content": "nope"},
        {"type": "doc", "content": ["nope"]},
    ],
)
def test_adf_to_text_refuses_what_is_not_adf(bad: Any) -> None:
    with pytest.raises(ValueError):
        t.adf_to_text(bad)


def test_adf_nesting_is_bounded() -> None:
    node: dict[str, Any] = {"type": "text", "text": "deep"}
    for _ in range(200):
        node = {"type": "blockquote", "content": [node]}
    with pytest.raises(ValueError, match="too deeply"):
        t.adf_to_text({"type": "doc", "content": [node]})


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_text_to_adf_and_back(text: str) -> None:
    text = text.replace("\r", "")
    document = t.text_to_adf(text)
    assert document["type"] == "doc" and document["version"] == 1
    assert t.adf_to_text(document) == text
    for paragraph in document["content"]:
        assert all(node["text"] for node in paragraph["content"])  # ADF refuses empty text nodes


def test_servicenow_values() -> None:
    assert t.servicenow_display_code("2 - Medium") == "2"
    assert t.servicenow_display_code("-5 - Pending") == "-5"
    assert t.servicenow_display_label("3 - Moderate") == "Moderate"
    with pytest.raises(ValueError, match="display value"):
        t.servicenow_display_code("Medium")
    assert t.servicenow_value({"link": "https://x", "value": "abc"}) == "abc"
    assert t.servicenow_value("abc") == "abc"
    assert t.servicenow_display_value({"display_value": "Ann", "value": "abc"}) == "Ann"
    with pytest.raises(ValueError):
        t.servicenow_value({"link": "https://x"})


def test_email_addresses() -> None:
    assert t.email_address('"Smith, Ann" <Ann.Smith@Example.ORG>') == "Ann.Smith@example.org"
    assert t.email_name('"Smith, Ann" <ann@example.org>') == "Smith, Ann"
    assert t.email_name("ann@example.org") is None
    assert t.email_domain("Ann <ann@Example.org>") == "example.org"
    for bad in ("not an address", "a@b@c", "", "<@x.org>", "x" * 3000):
        with pytest.raises(ValueError):
            t.email_address(bad)


def test_text_and_scalars() -> None:
    assert t.strip("  a ") == "a"  # noqa: B005 - the transform, not str.strip
    assert t.lower("Phone") == "phone" and t.upper("x") == "X"
    assert t.to_text(3) == "3" and t.to_text(True) == "true"
    assert t.to_int("42") == 42 and t.to_int(" -5 ") == -5
    assert t.to_bool("TRUE") is True and t.to_bool("no") is False and t.to_bool(False) is False
    assert t.from_bool(True) == "true" and t.from_bool(False, false="0") == "0"
    assert t.truncate("abcdef", max=4) == "abc…" and t.truncate("ab", max=4) == "ab"
    assert t.first(["a", "b"]) == "a" and t.first([]) is None
    assert t.split("a, b,,c") == ["a", "b", "c"] and t.join(["a", "b"], sep=";") == "a;b"
    for func, bad in (
        (t.to_int, "4.5"),
        (t.to_int, True),
        (t.to_bool, "maybe"),
        (t.from_bool, "true"),
        (t.strip, {"a": 1}),
        (t.first, "abc"),
        (t.join, "abc"),
    ):
        with pytest.raises(ValueError):
            func(bad)
    with pytest.raises(ValueError):
        t.truncate("abc", max=0)


def test_regex_extract_and_template() -> None:
    assert t.regex_extract("Re: [HR-42] printer", pattern=r"\[([A-Z]+-\d+)\]", group=1) == "HR-42"
    assert t.regex_extract("no token", pattern=r"\[([A-Z]+-\d+)\]", group=1) is None
    with pytest.raises(ValueError, match="regular expression"):
        t.regex_extract("x", pattern="(")
    with pytest.raises(ValueError, match="no group"):
        t.regex_extract("x", pattern="x", group=3)
    record = {"category": "Network", "sub": {"name": "VPN"}, "tags": ["a"], "empty": "?"}
    assert t.template(record, format="{category} / {sub.name}") == "Network / VPN"
    assert t.template(record, format="{tags.0}-{missing}") == "a-"
    assert t.template(record, format="{empty}", empty=["?"]) is None
    assert t.template(record, format="{__class__}") is None  # no reach into Python objects
    with pytest.raises(ValueError, match="whole record"):
        t.template("text", format="{x}")
