"""The signatures the tools put on their deliveries: an HMAC-SHA256 of the raw request body,
keyed with the shared secret, in a header, as ``sha256=<digest>``.

Two schemes differ only in the header and the digest's encoding:

* Atlassian's admin webhooks (the WebSub convention): ``X-Hub-Signature: sha256=<hex>``;
* our ServiceNow business rule: ``X-USM-Bridge-Signature: sha256=<base64>``, because the
  MAC a ServiceNow script can compute (``GlideCertificateEncryption.generateMac`` with
  ``HmacSHA256``) comes out in Base64 (see docs/servicenow-events.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ATLASSIAN",
    "SERVICENOW",
    "SIGNATURE_HEADER",
    "SignatureScheme",
    "sign",
    "signature_matches",
]

_METHOD = "sha256="


@dataclass(frozen=True)
class SignatureScheme:
    """Where a sender puts the signature of a body, and how it writes the digest."""

    header: str
    encoding: Literal["hex", "base64"]

    def sign(self, secret: str, body: bytes) -> str:
        """The header value a sender with ``secret`` puts on ``body``."""
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        text = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        return _METHOD + text

    def matches(self, secret: str, body: bytes, header: str) -> bool:
        """Whether ``header`` is the signature of ``body`` under ``secret``. Constant time in
        the header's content (``hmac.compare_digest``), so a forger learns nothing from how
        long a refusal took; another method than ``sha256=`` never matches, and the digest is
        compared exactly as sent (no other case, no other encoding)."""
        expected = self.sign(secret, body).encode()
        # Bytes, not str: compare_digest refuses non-ASCII str, and a header may hold anything.
        return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


ATLASSIAN = SignatureScheme("X-Hub-Signature", "hex")
SERVICENOW = SignatureScheme("X-USM-Bridge-Signature", "base64")

#: Atlassian's header (kept for the Jira receiver's callers).
SIGNATURE_HEADER = ATLASSIAN.header


def sign(secret: str, body: bytes) -> str:
    """Atlassian's signature of ``body`` under ``secret``: ``sha256=<hex>``."""
    return ATLASSIAN.sign(secret, body)


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is Atlassian's signature of ``body`` under ``secret``."""
    return ATLASSIAN.matches(secret, body, header)
