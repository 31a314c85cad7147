"""TLS for IMAP and SMTP: one way to build the context, one way to name a TLS failure.

Verification is never switched off: the context is :func:`ssl.create_default_context`, which
checks the certificate chain and the host name. ``ca_file`` only changes whom to trust (an
internal mail server's own CA instead of the system's store).

A certificate the connector does not trust, or a server that cannot speak TLS, will not get
better by trying again, so those are permanent errors with a sentence a person can act on; a
connection dropped during the handshake is a network failure like any other (temporary).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from usm_bridge.errors import PermanentRemoteError

__all__ = ["tls_context", "tls_failure"]

#: TLS errors that mean "the connection went away", not "this TLS cannot work".
_DROPPED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def tls_context(ca_file: Path | None, where: str) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` (default: the system's CA store)."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except OSError as error:  # a missing file, or one without a PEM certificate (ssl.SSLError)
        reason = (
            (error.reason if isinstance(error, ssl.SSLError) else None)
            or error.strerror
            or type(error).__name__
        )
        raise PermanentRemoteError(
            f"TLS setup for {where} failed: cannot load ca_file {str(ca_file)!r} ({reason})"
        ) from None
    # The defaults already are these; say so, so that no later change can loosen them quietly.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_failure(error: BaseException, doing: str, where: str) -> PermanentRemoteError | None:
    """The permanent error for a TLS failure, or None when ``error`` is none (or a dropped line)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or "certificate verify failed"
        return PermanentRemoteError(
            f"{doing} failed at {where}: the server's TLS certificate is not trusted ({reason}); "
            "if the server uses its own CA, set ca_file to that CA's certificate"
        )
    if isinstance(error, ssl.SSLError) and not isinstance(error, _DROPPED):
        reason = error.reason or type(error).__name__
        return PermanentRemoteError(
            f"{doing} failed at {where}: TLS handshake failed ({reason}); "
            "check the port and the 'security' setting (tls, starttls)"
        )
    return None
