"""usm-bridge connector for shared mailboxes (IMAP or Maildir in, SMTP or a Maildir outbox out).

See :mod:`usm_bridge_email.connector` for what a record is, how threads and the cursor work,
and how the connector asks for a dead letter.
"""

from __future__ import annotations

from .connector import DEAD_LETTER_KEY, EmailConnector
from .parsing import ParsedMail, html_to_text, parse_message
from .settings import EmailSettings, ImapSettings, MaildirSettings, SmtpSettings

__all__ = [
    "DEAD_LETTER_KEY",
    "EmailConnector",
    "EmailSettings",
    "ImapSettings",
    "MaildirSettings",
    "ParsedMail",
    "SmtpSettings",
    "html_to_text",
    "parse_message",
]
