"""Media types sniffed from content: third-party sample files (puremagic's test corpus, see
``samples/SOURCES.md``), and the sender's declared type never trusted over the content."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import magic
import pytest

from usm_bridge.attachments import (
    SNIFF_BYTES,
    AttachmentPolicy,
    decide,
    normal_media_type,
    sniff_media_type,
    sniffing,
)

SAMPLES = Path(__file__).parent / "samples"
#: Sample file, then the types libmagic may name it by (its names changed across versions).
EXPECTED_TABLE = """
test.7z      application/x-7z-compressed
test.bz2     application/x-bzip2
test.gz      application/gzip application/x-gzip
test.rar     application/x-rar application/vnd.rar
test.tar     application/x-tar
test.xz      application/x-xz
test.zip     application/zip
test.txt.zst application/zstd
test.gif     image/gif
test.png     image/png
test.bmp     image/bmp image/x-ms-bmp
test.ico     image/vnd.microsoft.icon image/x-icon
test.jpg     image/jpeg
test.svg     image/svg+xml
test.webp    image/webp
test.tif     image/tiff
test.doc     application/msword
test.docx    application/vnd.openxmlformats-officedocument.wordprocessingml.document
test.xlsx    application/vnd.openxmlformats-officedocument.spreadsheetml.sheet
test.xls     application/vnd.ms-excel
test.txt     text/plain
test.exe     application/vnd.microsoft.portable-executable application/x-dosexec
test.mp3     audio/mpeg
test.mp4     video/mp4
test.mkv     video/x-matroska
fake_file    application/octet-stream
"""
EXPECTED: dict[str, set[str]] = {
    name: set(types)
    for name, *types in (line.split() for line in EXPECTED_TABLE.splitlines() if line)
}


def test_every_sample_is_accounted_for() -> None:
    on_disk = {p.name for p in SAMPLES.iterdir()} - {"SOURCES.md", "puremagic.LICENSE"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_third_party_sample_is_sniffed_as_its_type(name: str) -> None:
    content = (SAMPLES / name).read_bytes()
    assert len(content) <= SNIFF_BYTES  # the whole file is in the window: the head is it all
    assert sniff_media_type(content) in EXPECTED[name]


def test_an_executable_disguised_as_a_picture_is_refused_by_its_content() -> None:
    content = (SAMPLES / "test.exe").read_bytes()
    sniffed = sniff_media_type(content)
    decision = decide(
        AttachmentPolicy(), name="holiday.png", size=len(content), media_type=sniffed,
        declared_type="image/png",
    )  # fmt: skip
    assert not decision.accepted
    assert decision.reason == f"holiday.png: its content is {sniffed}, which is refused"


def test_a_sender_declaring_a_refused_type_is_believed() -> None:
    content = (SAMPLES / "test.txt").read_bytes()
    decision = decide(
        AttachmentPolicy(), name="notes.txt", size=len(content),
        media_type=sniff_media_type(content), declared_type="application/x-msdownload",
    )  # fmt: skip
    assert decision.reason == (
        "notes.txt: its sender declared application/x-msdownload, which is refused"
    )


def test_an_allow_list_is_checked_against_the_sniffed_type_not_the_declared_one() -> None:
    policy = AttachmentPolicy(allow=["image/*"])
    zipped = (SAMPLES / "test.zip").read_bytes()
    sniffed = sniff_media_type(zipped)
    refused = decide(policy, name="a.png", size=1, media_type=sniffed, declared_type="image/png")
    assert not refused.accepted and "not one of the allowed types (image/*)" in str(refused.reason)
    png = sniff_media_type((SAMPLES / "test.png").read_bytes())
    assert decide(policy, name="a.png", size=1, media_type=png, declared_type=None).accepted


def test_text_scripts_and_markup_are_told_apart() -> None:
    assert sniff_media_type(b"#!/bin/sh\nrm -rf /\n") == "text/x-shellscript"
    assert sniff_media_type(b"<html><body>hi</body></html>") == "text/html"
    assert sniff_media_type(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n") == "application/pdf"
    assert sniff_media_type("Grüße aus Köln\n".encode()) == "text/plain"
    assert sniff_media_type(b"") == "application/x-empty"


def test_only_the_window_is_read() -> None:
    # A PNG signature then a megabyte and more of zeros, then a shell script: the head decides.
    png = (SAMPLES / "test.png").read_bytes()
    assert sniff_media_type(png + b"\x00" * SNIFF_BYTES + b"#!/bin/sh\n") == "image/png"


@pytest.mark.parametrize(
    ("declared", "normal"),
    [
        ("image/PNG", "image/png"),
        ("text/plain; charset=UTF-8", "text/plain"),
        (" application/pdf ", "application/pdf"),
        ("", None),
        (None, None),
        ("png", None),
        ("image/", None),
        ("image/png/x", None),
        ("ima ge/png", None),
        ("text/plain\r\nX-Evil: 1", None),
    ],
)
def test_declared_types_are_normalised_or_dropped(declared: str | None, normal: str | None) -> None:
    assert normal_media_type(declared) == normal


def test_bytes_libmagic_gives_up_on_are_of_unknown_type(monkeypatch: pytest.MonkeyPatch) -> None:
    class GivingUp:
        def from_buffer(self, _: bytes) -> str:
            raise magic.MagicException("regexec error 17, (illegal byte sequence)")

    monkeypatch.setattr(sniffing, "_detector", GivingUp)
    assert sniff_media_type(b"anything") == "application/octet-stream"


def test_a_machine_without_libmagic_imports_the_bridge_and_says_what_is_missing() -> None:
    # A fresh interpreter in which python-magic cannot load (as on a machine without the
    # system's libmagic1): the CLI and the attachments package import, and the first sniff says
    # which package to install instead of an ImportError at start-up.
    code = (
        "import sys; sys.modules['magic'] = None\n"
        "import usm_bridge.cli, usm_bridge.attachments as a\n"
        "try:\n"
        "    a.sniff_media_type(b'%PDF-1.4')\n"
        "except a.SnifferMissing as exc:\n"
        "    print('missing:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("missing: attachments cannot be judged: libmagic is missing")
    assert "libmagic1" in done.stdout


def test_a_declared_type_built_to_mislead_is_shown_escaped_in_the_reason() -> None:
    """The declared type is the sender's text: a refusal under a pattern (``application/*``)
    shows it escaped, so no line break or direction mark of theirs reaches the note."""
    content = (SAMPLES / "test.txt").read_bytes()
    declared = "application/zip\u202e\r\nApproved by IT"
    decision = decide(
        AttachmentPolicy(refuse=["application/*"]), name="notes.txt", size=len(content),
        media_type=sniff_media_type(content), declared_type=declared,
    )  # fmt: skip
    assert decision.reason == f"notes.txt: its sender declared {declared!a}, which is refused"
    assert "\r" not in str(decision.reason) and "\u202e" not in str(decision.reason)
