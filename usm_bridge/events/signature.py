"""Atlassian's signature of admin webhooks with a secret: ``X-Hub-Signature: sha256=<hex>``,
the HMAC-SHA256 of the raw request body keyed with the secret (the WebSub convention)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign", "signature_matches"]

SIGNATURE_HEADER = "X-Hub-Signature"
_METHOD = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value a sender with ``secret`` puts on ``body``."""
    return _METHOD + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret``. Constant time in the
    header's content (``hmac.compare_digest``), so a forger learns nothing from how long a
    refusal took; another method than ``sha256=`` never matches."""
    expected = sign(secret, body).encode()
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may hold anything.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))
