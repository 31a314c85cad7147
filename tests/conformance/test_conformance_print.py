"""The print layout of a long report: the whole event log's report printed to PDF by headless
Chromium, read back with pypdf. Each major section starts a page, a table's header repeats
on the pages it spans, and the sign-off block is printed whole."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from conformance_enterprise import make_enterprise
from conformance_eventlog import build
from headless_chromium import browse
from pypdf import PdfReader

from usm_bridge.cli import cli
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import HtmlRenderer


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The text of each page of the printed report over the whole log (890 incidents)."""
    root = tmp_path_factory.mktemp("log")
    build(root, f"sqlite:///{root / 'it.db'}")
    page = root / "report.html"
    result = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(root / "usm-bridge.toml"), "--offline",
              "--prepared-by", "Ana Auditor", "-o", str(page)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pdf = root / "report.pdf"
    browse(page, root / "profile", f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    # NFKC: Chromium prints ligatures ("fi", "ff"), which the text holds as one character.
    return [unicodedata.normalize("NFKC", p.extract_text()) for p in PdfReader(pdf).pages]


def test_a_long_report_prints_on_many_pages(pages: list[str]) -> None:
    # Summary, trends, chain, the IT unit's evidence over several pages, checks, provenance.
    assert len(pages) >= 8
    assert pages[0].startswith("USM conformance report")


@pytest.mark.parametrize("heading", ["Over time", "Chain", "Checks applied", "Provenance"])
def test_each_major_section_starts_a_page(pages: list[str], heading: str) -> None:
    starting = [text for text in pages if text.startswith(heading + "\n")]
    assert len(starting) == 1, [text[:40] for text in pages]


def test_a_table_header_repeats_on_the_next_page(pages: list[str]) -> None:
    first = next(i for i, text in enumerate(pages) if text.startswith("Checks applied\n"))
    header = "Check Title What it verifies Plugin"
    assert header in pages[first]
    assert not pages[first + 1].startswith("Provenance"), "the table fits one page: no test"
    assert pages[first + 1].startswith(header + "\n")


def test_the_sign_off_block_is_printed_whole_with_the_preparer(pages: list[str]) -> None:
    signed = [text for text in pages if "Sign-off" in text]
    assert len(signed) == 1
    block = signed[0][signed[0].index("Sign-off") :]
    assert "Prepared by Ana Auditor" in block and "Reviewed by" in block
    assert "Name Date Signature" in block


def test_printed_links_show_their_address(tmp_path: Path) -> None:
    """Paper has no links: each evidence link prints its URL after the reference."""
    enterprise = make_enterprise(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    try:
        html = HtmlRenderer().render(build_report(enterprise.context()))
    finally:
        enterprise.store.close()
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    browse(page, tmp_path / "profile", f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    text = " ".join(p.extract_text() for p in PdfReader(pdf).pages).replace("\n", " ")
    assert "HR-1 (https://hr.example.com/browse/HR-1)" in text
