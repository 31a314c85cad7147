"""The settings of an e-mail connector instance, as a unit's config file gives them."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from usm_bridge.connector import ConnectorSettings, SettingsPath
from usm_bridge.durations import Attempts, Duration, PageSize, Wait

from .reply_text import DEFAULT_DISCLAIMER_STARTS, DEFAULT_REPLY_LANGUAGES, REPLY_LANGUAGES

__all__ = ["EmailSettings", "ImapSettings", "MaildirSettings", "OAuthSettings", "SmtpSettings"]


#: One address, ``name@domain.tld`` (no display name: the setting is where mail goes).
_ADDRESS: Final = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")


#: Largest size limit a setting may give: a mail bigger than this is no ticket.
_MAX_BYTES: Final = 1_000_000_000
#: A disclaimer start shorter than this would cut replies at ordinary lines.
_MIN_DISCLAIMER_START: Final = 8
#: A TCP port.
Port = Annotated[int, Field(ge=1, le=65535)]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OAuthSettings(BaseModel):
    """Where and how the bridge gets OAuth2 access tokens for SASL XOAUTH2 (IMAP and SMTP).

    ``client_credentials`` is the app-only flow (Microsoft 365); ``refresh_token`` trades a
    refresh token an admin obtained once (Google Workspace, or a delegated Microsoft app) for
    access tokens. Secrets come from the environment or a file like every other secret of the
    config (``"${ENV_VAR}"`` or ``{ file = "..." }``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    token_url: str = Field(examples=["https://login.microsoftonline.com/TENANT/oauth2/v2.0/token"])
    """The provider's token endpoint; https, or http on loopback only (a local test
    endpoint)."""
    client_id: str = Field(min_length=1, examples=["usm-bridge"])
    """The app's client id."""
    client_secret: SecretStr | None = None
    """The app's client secret; optional only for a public client in the refresh-token flow."""
    flow: Literal["client_credentials", "refresh_token"] = "client_credentials"
    """``client_credentials`` (app-only: Microsoft 365) or ``refresh_token`` (a refresh token
    an admin obtained once: Google Workspace, a delegated Microsoft app)."""
    # A new one the endpoint hands out (rotation) is kept in memory for as long as the
    # process runs.
    refresh_token: SecretStr | None = None
    """The refresh token of the ``refresh_token`` flow."""
    scopes: list[str] = Field(default_factory=list)
    """Space-free scope strings, sent space-separated (``https://mail.google.com/``)."""
    user: str | None = Field(default=None, examples=["hr@example.com"])
    """The mailbox the token signs in to (the ``user=`` of XOAUTH2): default the server's
    ``username``, else the mailbox's own address."""
    timeout: Duration = 30.0
    """How long to wait for the token endpoint."""
    # So that no token dies on the way.
    refresh_margin: Duration = 300.0
    """Renew a token this long before it expires."""

    @field_validator("token_url")
    @classmethod
    def _token_url_is_safe(cls, value: str) -> str:
        url = value.strip()
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            host = None
        if not host or parts.scheme not in ("https", "http"):
            raise ValueError(
                f"token_url {value!r} is not an http(s) URL: write the provider's token "
                "endpoint, e.g. https://login.microsoftonline.com/TENANT/oauth2/v2.0/token"
            )
        if parts.scheme == "http" and not _loopback(host):
            raise ValueError(
                f"token_url {value!r} uses plain http off loopback: the client secret would "
                "cross the network unencrypted; use https"
            )
        if parts.username or parts.password:
            raise ValueError("token_url must not carry credentials; give client_secret instead")
        return url

    @field_validator("scopes")
    @classmethod
    def _scopes_are_words(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(
                    f"scopes: {scope!r} is not one scope (no spaces: give each as its own string)"
                )
        return value

    @model_validator(mode="after")
    def _flow_has_its_secret(self) -> OAuthSettings:
        if self.flow == "client_credentials":
            if self.client_secret is None:
                raise ValueError("client_secret is required for flow 'client_credentials'")
            if self.refresh_token is not None:
                raise ValueError(
                    "refresh_token is given but flow is 'client_credentials': "
                    "set flow = 'refresh_token' or remove refresh_token"
                )
        elif self.refresh_token is None:
            raise ValueError("refresh_token is required for flow 'refresh_token'")
        return self


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    host: str = Field(examples=["mail.example.com"])
    """The server's host name."""
    port: Port
    """The server's port."""
    # Plain text is allowed only on loopback (a local relay), so a password never crosses a
    # network unencrypted.
    security: Literal["tls", "starttls", "plain"] = "tls"
    """``tls``, ``starttls``, or ``plain`` (on loopback only)."""
    username: str | None = Field(default=None, examples=["hr@example.com"])
    """The account to sign in as."""
    password: SecretStr | None = None
    """The account's password."""
    timeout: Duration = 30.0
    """How long to wait for the server."""
    ca_file: SettingsPath | None = Field(default=None, examples=["certs/mail-ca.pem"])
    """A CA bundle to trust instead of the system's (an internal mail server's own CA);
    relative to the config file's folder."""
    oauth: OAuthSettings | None = None
    """Sign in with SASL XOAUTH2 and a token from here instead of a password; the
    connector-wide ``oauth`` applies when this is unset."""

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> _Server:
        if self.security == "plain" and not _loopback(self.host):
            raise ValueError(
                f"security 'plain' is allowed only on loopback, not {self.host!r}: "
                "use 'tls' or 'starttls'"
            )
        return self

    @model_validator(mode="after")
    def _password_or_oauth(self) -> _Server:
        if self.password is not None and self.oauth is not None:
            raise ValueError("give either 'password' or 'oauth', not both")
        return self


class ImapSettings(_Server):
    """Where the mailbox is read: an IMAP account and its folders."""

    port: Port = 993
    """The server's port."""
    username: str = Field(examples=["hr@example.com"])
    """The account to sign in as."""
    password: SecretStr | None = None
    """The account's password; needed unless the mailbox signs in with OAuth (``oauth`` here
    or connector-wide)."""
    inbox: str = "INBOX"
    """The folder mail is read from."""
    sent: str = "Sent"
    """Where the bridge keeps a copy of every mail it sends (the correlation record)."""
    # RFC 2177: a server may end an IDLE after 30 minutes without a command; clients should
    # re-issue it at least every 29. Under the daemon only (see the README's "Watching").
    idle_renew: Duration = Field(default=1500.0, le=29 * 60)
    """How often the daemon's IDLE on ``inbox`` is ended and issued again (DONE, IDLE), so
    that the server never times it out: at most 29 minutes."""


class SmtpSettings(_Server):
    """The relay outbound mail goes through."""

    port: Port = 587
    """The relay's port."""
    security: Literal["tls", "starttls", "plain"] = "starttls"
    """``tls``, ``starttls``, or ``plain`` (on loopback only)."""
    # Set so that smtplib never looks up this host's FQDN, which can take seconds without DNS.
    helo_name: str | None = Field(default=None, examples=["example.com"])
    """The name to greet the relay with (EHLO); default the mailbox address's domain."""


class MaildirSettings(BaseModel):
    """A Maildir a mail server delivers into (the embedded default) and the bridge's outbox."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    path: SettingsPath = Field(examples=["mail/hr"])
    """The Maildir mail is delivered into; relative to the config file's folder (so is
    ``outbox``), and ``~`` is the home directory."""
    outbox: SettingsPath | None = Field(default=None, examples=["mail/hr/.Sent"])
    """The bridge's outbox: a copy of every mail it sends (without ``smtp``, the only one);
    default the Maildir++ sub-folder ``<path>/.Sent``."""


class EmailSettings(ConnectorSettings):
    """One shared mailbox: where it is read, how mail goes out, and the answering policy."""

    address: str = Field(examples=["servicedesk@example.com"])
    """The mailbox's own address: the From of every mail the bridge sends."""
    reference_prefix: str = Field(default="SD", pattern=r"^[A-Z][A-Z0-9]*$")
    """Reference tokens look like ``[HR-42]``: this is the ``HR``."""
    imap: ImapSettings | None = None
    """Read mail over IMAP (give exactly one of ``imap`` and ``maildir``)."""
    maildir: MaildirSettings | None = None
    """Read mail from a Maildir (give exactly one of ``imap`` and ``maildir``)."""
    smtp: SmtpSettings | None = None
    """The relay outbound mail goes through; without it, outbound mail is only written into
    the outbox (Maildir) or the Sent folder."""
    oauth: OAuthSettings | None = None
    """OAuth2 for both IMAP and SMTP (one token serves both at Microsoft 365 and Google): used
    by a server that has neither its own ``password`` nor its own ``oauth``."""

    acknowledge: bool = True
    """Answer a new thread with an acknowledgement carrying its reference token."""
    # So that a first sync of an old mailbox mails nobody.
    acknowledge_max_age_hours: float = Field(default=48.0, gt=0, le=24 * 366 * 100)
    """Mail older than this many hours is not acknowledged."""
    # RFC 3834 asks for a limit.
    answers_per_sender_per_hour: int = Field(default=3, ge=0, le=1000)
    """At most this many automatic answers to one sender per hour."""
    allowed_domains: list[str] = Field(default_factory=list, examples=[["example.com"]])
    """Sender domains a call may come from; empty means any."""
    outside_domains: Literal["refuse", "hold"] = "hold"
    """Mail from elsewhere: ``refuse`` dead-letters it, ``hold`` makes a call nobody is told
    of."""
    bulk_mail: Literal["dead_letter", "call"] = "dead_letter"
    """Mailing-list and bulk mail opening a thread: a dead letter, or an (unanswered) call."""
    # A command is a ``Status: fulfilled`` line at the top of a reply in the thread (see
    # :mod:`usm_bridge_email.commands`). Each agent must lie within ``allowed_domains`` when
    # that is set: the From of mail from outside is trusted for nothing.
    agents: list[str] = Field(default_factory=list, examples=[["hilda@example.com"]])
    """Who may set a call's status by mail: the desk's agents, as addresses
    (``hilda@example.com``) or whole domains (``@hr.example``, that domain only). Empty: nobody
    but the supplier a thread the bridge opened was mailed to."""
    # Anybody can write any From. See :mod:`usm_bridge_email.authres`.
    trusted_authserv_ids: list[str] = Field(default_factory=list, examples=[["mx.example.com"]])
    """The authserv-ids of the unit's own receiving mail servers (``mx.hr.example``): a status
    command is obeyed only when one of them vouches for the sender's From in an
    Authentication-Results header (RFC 8601: an aligned DMARC, DKIM or SPF pass)."""
    trust_relay: bool = False
    """Trust the From of every mail as the relay delivered it, without Authentication-Results:
    only for a mailbox nobody outside can mail (a closed relay, a test or a demo)."""
    # A route whose target unit's tool is this mailbox makes the bridge open a thread by
    # mailing this address (unless the draft names a recipient, ``to``). Unset: a create
    # naming no recipient is refused, never mailed to the mailbox itself.
    supplier_address: str | None = Field(default=None, examples=["orders@supplier.example"])
    """Where the supplier calls this mailbox opens are mailed: the outside supplier's order
    desk. That supplier may then set the call's status by mail."""
    # USM: nobody works on a call before it is classified. The mapping file classifies a
    # thread (the shipped one by tags in the subject, and by 'Type:' commands); the connector
    # cannot read the mapping, so it is told here which subjects that file classifies.
    classified_subject: str = (
        r"(?i)\[(incident|outage|down|request|question|change|rfc|wish|complaint)\]"
    )
    """A thread whose subject matches this is classified from its first mail, so an agent's
    ``Status: in progress`` is obeyed without a ``Type:`` line; keep it in step with the
    mapping's ``classify`` rules (the default matches the shipped email-service-desk.yaml).
    Empty: only ``Type:`` commands (and threads the bridge opened) count as classified."""

    @field_validator("classified_subject")
    @classmethod
    def _classified_subject_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    # USM closes an incident only once its customer confirms.
    confirm_statuses: list[str] = Field(default_factory=lambda: ["fulfilled"])
    """Statuses whose mail asks the customer to confirm."""
    confirm_pattern: str = (
        r"(?i)^\s*(yes|ja|oui|si|confirm(ed)?|it works|works( now)?|resolved|solved|fixed|ok)\b"
    )
    """A reply to a confirmation request whose first line matches this confirms."""
    reopen_pattern: str = r"(?i)^\s*(no|nein|non|not (yet|fixed|resolved)|still)\b"
    """A reply whose first line matches this says the service is still not right."""

    # See :mod:`usm_bridge_email.reply_text`.
    reply_languages: list[str] = Field(default_factory=lambda: list(DEFAULT_REPLY_LANGUAGES))
    """Replies travel as comments without their quoted history, signature and disclaimer:
    these languages' quote headers (``On ... wrote:``, ``Op ... schreef:``, Outlook's ``Von: /
    Gesendet:`` block) and sign-offs are known."""
    disclaimer_starts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DISCLAIMER_STARTS), max_length=500
    )
    """How legal disclaimers begin (case and spacing ignored): a reply is cut from the first
    line starting with one. Add the unit's company's own; the defaults cover common English,
    Dutch, German and French ones. Replacing the list drops the defaults."""

    max_message_bytes: int = Field(default=40_000_000, ge=1, le=_MAX_BYTES)
    """The largest mail read whole. A larger one is still its call or comment: its headers
    and text are read from the mail on disk within this bound, and each file that does not
    fit is refused with a note and a dead letter saying the mail's size and this limit (raise
    it to carry such files). The default carries one file at the attachment policy's default
    cap (25 MiB, about 35.9 MB base64-encoded in a mail) with room for its text. Parsing a mail
    whole takes about nine times its size in memory (about 350 MB at this default): lower it
    on a small host, and the largest files are refused instead."""
    max_attachment_bytes: int = Field(default=5_000_000, ge=0, le=_MAX_BYTES)
    """A larger attachment is flagged over the limit: a person fetches it from the mailbox."""
    max_body_chars: int = Field(default=100_000, ge=1, le=_MAX_BYTES)
    """A longer body is cut here."""
    max_received_hops: int = Field(default=30, ge=1, le=1000)
    """More Received headers than this is a mail loop."""
    page_size: PageSize = 50
    """Threads per checkpoint."""
    max_attempts: Attempts = 4
    """Attempts of one server operation before it is given up."""
    backoff_initial: Wait = 1.0
    """The first wait between attempts."""
    backoff_max: Wait = 30.0
    """The longest wait between attempts."""

    @model_validator(mode="after")
    def _one_inbound(self) -> EmailSettings:
        if (self.imap is None) == (self.maildir is None):
            raise ValueError("give exactly one of 'imap' and 'maildir' for where mail is read")
        return self

    @model_validator(mode="after")
    def _imap_can_sign_in(self) -> EmailSettings:
        imap = self.imap
        if imap is not None and imap.password is None and self.oauth_for(imap) is None:
            raise ValueError(
                "imap: give 'password', or 'oauth' (in [imap.oauth] or connector-wide) "
                "to sign in with XOAUTH2"
            )
        return self

    def oauth_for(self, server: ImapSettings | SmtpSettings) -> OAuthSettings | None:
        """The OAuth settings ``server`` signs in with, or None when it uses a password (or,
        for SMTP, no sign-in at all)."""
        if server.password is not None:
            return None
        return server.oauth or self.oauth

    def oauth_user(self, server: ImapSettings | SmtpSettings) -> str:
        """The mailbox named in XOAUTH2's ``user=``: the oauth block's ``user``, else the
        server's ``username``, else the mailbox's own address."""
        oauth = self.oauth_for(server)
        return (oauth.user if oauth else None) or server.username or self.address

    @model_validator(mode="after")
    def _reply_cleaning(self) -> EmailSettings:
        languages = [name.strip().lower() for name in self.reply_languages]
        unknown = [name for name in languages if name not in REPLY_LANGUAGES]
        if unknown:
            raise ValueError(
                f"reply_languages: {', '.join(map(repr, unknown))} not known; "
                f"write some of {', '.join(sorted(REPLY_LANGUAGES))}"
            )
        self.reply_languages = languages
        starts = [" ".join(start.split()) for start in self.disclaimer_starts]
        short = [start for start in starts if len(start) < _MIN_DISCLAIMER_START]
        if short:
            # A short start ("Note") would cut real text wherever a line begins with it.
            raise ValueError(
                f"disclaimer_starts: {short[0]!r} is too short (at least "
                f"{_MIN_DISCLAIMER_START} characters, e.g. the disclaimer's first words)"
            )
        self.disclaimer_starts = starts
        return self

    @model_validator(mode="after")
    def _agents_are_people_inside(self) -> EmailSettings:
        agents: list[str] = []
        allowed = [d.lower().lstrip("@") for d in self.allowed_domains]
        for entry in self.agents:
            agent = entry.strip().lower()
            if not re.fullmatch(r"[^@\s]*@[^@\s]+\.[^@\s]+", agent):
                raise ValueError(
                    f"agents: {entry!r} is neither an address (name@domain) nor a domain (@domain)"
                )
            if agent == self.address.lower():
                # The bridge's own address sends the bridge's mail; it never gives commands.
                raise ValueError(f"agents: {entry!r} is the mailbox's own address")
            domain = agent.rsplit("@", 1)[1]
            if allowed and not any(domain == d or domain.endswith("." + d) for d in allowed):
                raise ValueError(
                    f"agents: {entry!r} is outside allowed_domains ({', '.join(allowed)}): "
                    "mail from there is held, so it cannot give commands"
                )
            agents.append(agent)
        self.agents = agents
        return self

    @model_validator(mode="after")
    def _authserv_ids_are_names(self) -> EmailSettings:
        ids: list[str] = []
        for entry in self.trusted_authserv_ids:
            name = entry.strip().lower()
            if not re.fullmatch(r"[^\s;()\"]+", name):
                raise ValueError(
                    f"trusted_authserv_ids: {entry!r} is not an authserv-id (the receiving "
                    "server's name in its Authentication-Results headers, e.g. mx.hr.example)"
                )
            ids.append(name)
        self.trusted_authserv_ids = ids
        return self

    @model_validator(mode="after")
    def _supplier_is_somebody_else(self) -> EmailSettings:
        if self.supplier_address is None:
            return self
        supplier = self.supplier_address.strip()
        if not _ADDRESS.fullmatch(supplier):
            raise ValueError(
                f"supplier_address: {self.supplier_address!r} is not an address (name@domain): "
                "write the outside supplier's order desk, e.g. orders@supplier.example"
            )
        if supplier.lower() == self.address.strip().lower():
            # Mailed to itself, a supplier call comes back into the inbox as somebody's mail
            # and nobody outside ever hears of it.
            raise ValueError(
                f"supplier_address: {self.supplier_address!r} is the mailbox's own address; "
                "write the outside supplier's address"
            )
        self.supplier_address = supplier
        return self
