"""The demo's signed onboarding form: a one-page PDF made here, in code.

Made rather than shipped so that the repository holds no binary whose content nobody can
review; the same bytes on every run (no date inside), so its SHA-256 is the same at every unit
of every run, and a test can compare each unit's copy with :func:`signed_form` itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["FORM_NAME", "FormCopy", "form_sha256", "signed_form"]

FORM_NAME = "onboarding-form-maria-lopez.pdf"

_LINES = (
    "Onboarding form",
    "New hire: Maria Lopez, finance team, starts on Monday",
    "Needs: a desk, a badge and a laptop",
    "Signed: Hannah Hiring, hiring manager",
)


def _escaped(text: str) -> str:
    """``text`` as a PDF literal string's content (backslash and parentheses escaped)."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def signed_form() -> bytes:
    """The form: a valid PDF 1.4 (catalog, one page, Helvetica, a text stream), with the
    cross-reference table's offsets counted from the bytes written, as a reader checks them."""
    text = " T* ".join(f"({_escaped(line)}) Tj" for line in _LINES)
    stream = f"BT /F1 12 Tf 16 TL 72 720 Td {text} ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def form_sha256() -> str:
    return hashlib.sha256(signed_form()).hexdigest()


@dataclass(frozen=True)
class FormCopy:
    """Where one unit's tool holds the form, and the SHA-256 of the bytes it holds there."""

    where: str
    sha256: str
