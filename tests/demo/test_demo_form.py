"""The demo's signed form is a well-formed PDF: what a reader checks of its structure holds, and
the bridge's own sniffing takes it for a PDF (so every unit's policy treats it as one)."""

from __future__ import annotations

import re

from usm_bridge.attachments.sniffing import sniff_media_type
from usm_bridge.demo_form import signed_form


def test_the_form_s_cross_references_point_at_its_objects() -> None:
    pdf = signed_form()
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    startxref = int(re.findall(rb"startxref\n(\d+)\n", pdf)[-1])
    assert pdf[startxref:].startswith(b"xref\n0 6\n")
    offsets = [int(o) for o in re.findall(rb"(\d{10}) 00000 n ", pdf)]
    assert [pdf[o:].split(b"\n", 1)[0] for o in offsets] == [b"%d 0 obj" % n for n in range(1, 6)]
    [(length, stream)] = re.findall(rb"/Length (\d+) >>\nstream\n(.*?)\nendstream", pdf, re.S)
    assert int(length) == len(stream)
    assert b"(Signed: Hannah Hiring, hiring manager) Tj" in stream
    assert signed_form() == pdf  # the same bytes every run: one SHA-256 to compare


def test_the_bridge_sniffs_the_form_as_a_pdf() -> None:
    assert sniff_media_type(signed_form()) == "application/pdf"
