"""Attachment file names: whatever a sender writes, the name kept is safe and stable."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from usm_bridge.attachments import DEFAULT_FILE_NAME, safe_file_name
from usm_bridge.model import MAX_ATTACHMENT_NAME_BYTES, attachment_name_problem

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(10)}

#: Names built from the characters that make trouble, and any text at all.
tricky = st.lists(
    st.sampled_from(
        [
            *'/\\.: <>|?*"aZé中 \t\n\r\x00\x1b\x7f\x85\u202e\u200b\u2028\uff0f\ufe52\u00b9\u0301',
            "CON",
            "nul",
            "com1",
            "LPT9",
            "..",
            ".exe",
            ".pdf",
            "x" * 40,
            "é" * 30,
        ]
    ),
    max_size=40,
).map("".join)
names = st.one_of(tricky, st.text(max_size=400))


def assert_safe(result: str, max_bytes: int = MAX_ATTACHMENT_NAME_BYTES) -> None:
    assert result and result not in (".", "..")
    assert "/" not in result and "\\" not in result
    assert not any(unicodedata.category(ch).startswith("C") for ch in result)
    assert not any(ch in '<>:"|?*' for ch in result)
    assert result.split(".", 1)[0].rstrip(" ").upper() not in RESERVED
    assert not result.endswith((" ", ".")) and not result.startswith((" ", "."))
    assert len(result.encode("utf-8")) <= max_bytes
    assert attachment_name_problem(result) is None  # the model takes it


@settings(max_examples=400, deadline=None)
@given(names)
@example("../../etc/passwd")
@example("CON.tar.gz")
@example("x" * 300 + ".pdf")
@example("é" * 300)
@example("a" * 250 + " ." + "b" * 3)
def test_a_sanitised_name_is_always_safe_and_idempotent(name: str) -> None:
    result = safe_file_name(name)
    assert_safe(result)
    assert safe_file_name(result) == result


@settings(max_examples=100, deadline=None)
@given(names, st.integers(min_value=26, max_value=300))
def test_the_byte_cap_holds_for_any_cap(name: str, cap: int) -> None:
    result = safe_file_name(name, max_bytes=cap)
    assert_safe(result, cap)
    assert safe_file_name(result, max_bytes=cap) == result


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("signed form.pdf", "signed form.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ada\\form.pdf", "form.pdf"),
        ("..", DEFAULT_FILE_NAME),
        ("", DEFAULT_FILE_NAME),
        (None, DEFAULT_FILE_NAME),
        ("\x00\x1b", DEFAULT_FILE_NAME),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("COM\u00b9.log", "_COM1.log"),  # a superscript one is a device name after NFKC
        ("report.pdf. . ", "report.pdf"),
        (".bashrc", "bashrc"),
        ("photo\u202egpj.exe", "photogpj.exe"),  # the override that shows it as "exe.jpg"
        ("a:b?.txt", "a_b_.txt"),
        ("evil\uff0f..\uff0fx.txt", "x.txt"),  # fullwidth solidus: a separator after NFKC
        ("Cafe\u0301.txt", "Café.txt"),  # normalised to one code point
        # Removing the zero width space joins e and the accent: normalised again, one é.
        ("Cafe\u200b\u0301.txt", "Café.txt"),
    ],
)
def test_known_names(given: str | None, kept: str) -> None:
    assert safe_file_name(given) == kept


def test_a_long_name_is_cut_by_bytes_at_a_character_keeping_its_extension() -> None:
    result = safe_file_name("é" * 200 + ".docx")
    assert result.endswith(".docx") and len(result.encode()) <= MAX_ATTACHMENT_NAME_BYTES
    assert result == "é" * 125 + ".docx"  # 250 bytes of é, 5 of extension
