"""The contract every tool adapter fulfils.

A connector declares what it is with class attributes (``kind``, ``settings_model``) and
implements a handful of methods. The sync engine relies only on what is written here, and the
standard suite in :mod:`usm_bridge.testing` checks each promise.

Reading is incremental and resumable: :meth:`Connector.read_changes` yields raw records and,
between them, :class:`Checkpoint` objects. A checkpoint promises that every change up to it has
been yielded; the engine stores its cursor only after what came before it is durably stored,
and passes it back to resume.

Writing is idempotent: :meth:`Connector.create` stores a correlation marker on the remote
record, and :meth:`Connector.find_by_correlation` finds it again, so that a create whose
response was lost is never repeated.

Attachments (a connector that sets :attr:`Connector.carries_attachments`): reading lists each
record's files on :attr:`RawRecord.attachments` as :class:`RemoteAttachment` objects, from the
answer it already has (no request per record); ``size`` and ``sha256`` when the tool states
them. The engine (:mod:`usm_bridge.sync.attachment_intake`) downloads through
:meth:`Connector.open_attachment` only the files the stored call does not hold yet (by
``remote_id``, then by identity: the bridge's own copy read back is recognised, never routed
again) and takes them in under the instance's policy. Writing (:mod:`usm_bridge.sync.
attachment_push`) first lists the target record's files with :meth:`Connector.list_attachments`
and looks for the identity (``sha256`` when the tool states it, else name and size, then the
candidates' content), then calls :meth:`Connector.put_attachment` with the content streamed;
put raises :class:`~usm_bridge.errors.PermanentRemoteError` for a file the tool refuses (too
large) and :class:`~usm_bridge.errors.RetriableRemoteError` for what may pass, and never
retries the upload itself (its chunks are read once; the bridge tries again, listing first).
A comment's files are written with the comment by :meth:`Connector.add_comment_with_files`
(default: uploads, then the comment naming them, ``CommentDraft.files``; a mailbox overrides it
with one mail), and a tool whose new record can carry files (a mail opening a thread) sets
:attr:`Connector.creates_with_files`. Reading ties a file to the comment it came with
(:attr:`RemoteAttachment.comment_id`) where the tool shows which: the comment naming it.

Settings paths: a field typed :data:`SettingsPath` is taken relative to the config file's
folder, which :meth:`Connector.from_config` receives as ``base_dir`` and passes to pydantic as
the validation context ``{"base_dir": ...}``.

Settings errors never quote a value: pydantic's own message does (``input_value=...``), and a
secret under a misspelled key or a password of the wrong type would then reach the cycle
summary, the run record and the logs. :func:`build_connector` raises a
:class:`~usm_bridge.errors.ConfigurationError` worded by :func:`settings_problems` instead:
``settings.password: Input should be a valid string``.
"""

from __future__ import annotations

import inspect
import logging
import operator
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
)

from .errors import ConfigurationError, PermanentRemoteError

__all__ = [
    "CheckResult",
    "Checkpoint",
    "CommentDraft",
    "CommentFile",
    "Connector",
    "ConnectorSettings",
    "FileWrite",
    "OutgoingFile",
    "RawRecord",
    "RemoteAttachment",
    "RemoteDraft",
    "RemoteRef",
    "RereadableChunks",
    "SettingsPath",
    "Vocabulary",
    "VocabularyValue",
    "build_connector",
    "settings_context",
    "settings_key",
    "settings_problems",
]

log = logging.getLogger(__name__)


def settings_context(base_dir: Path | None) -> dict[str, Any] | None:
    """The pydantic validation context for connector settings read from a config file.

    ``base_dir`` is the config file's folder; ``None`` (settings not read from a file) leaves
    relative :data:`SettingsPath` values relative, that is to the working directory.
    """
    return None if base_dir is None else {"base_dir": base_dir}


def settings_problems(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with connector settings: ``(key path, message)`` per problem, without the
    value given (it may be a secret). Format a path with :func:`settings_key`."""
    return [
        (tuple(error["loc"]), error["msg"])
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def settings_key(loc: tuple[str | int, ...]) -> str:
    """``settings.password`` for the key path ``("password",)``."""
    return ".".join(["settings", *(str(part) for part in loc)])


def _settings_path(value: Path, info: ValidationInfo) -> Path:
    try:
        path = value.expanduser()
    except RuntimeError as exc:  # "~someone" of an unknown user, or no home directory at all
        raise ValueError(f"cannot expand {str(value)!r}: {exc}") from None
    context = info.context
    base = context.get("base_dir") if isinstance(context, dict) else None
    if path.is_absolute() or base is None:
        return path
    # Made absolute now, while the working directory is still the one the config's folder was
    # named against (a relative `-c usm-bridge.toml` gives the folder ".").
    return (Path(base) / path).absolute()


#: A filesystem path in connector settings (a Maildir, a CA bundle, a key file): ``~`` is the
#: user's home, and a relative path is relative to the config file's folder, not to the working
#: directory, so a daemon started from elsewhere (systemd, cron) reads the same files. Without
#: a ``base_dir`` in the validation context (settings not read from a config file) a relative
#: path stays relative.
SettingsPath = Annotated[Path, AfterValidator(_settings_path)]


class ConnectorSettings(BaseModel):
    """Base for a connector's settings; unknown keys are refused so typos show.

    Type every filesystem path :data:`SettingsPath` (not plain :class:`~pathlib.Path`), so that
    relative paths in a config file are taken relative to that file. A validator of your own
    that needs the config file's folder finds it as ``info.context["base_dir"]`` when
    validation was given one (``info.context`` is ``None`` otherwise).

    ``inf`` and ``nan`` are refused for every number: no setting means them. Bound numbers
    with the types in :mod:`usm_bridge.durations` (a duration, a page size, attempts).

    Describe each setting in a docstring under it (or ``Field(description=...)``), and give
    ``Field(examples=[...])`` where no default shows its form: ``usm-bridge init`` writes them
    into the starter config.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


class RemoteAttachment(BaseModel):
    """One file a record carries, as the tool lists it, before any of its content is read.

    Everything here is the tool's word (untrusted): ``name`` is made safe and the media type
    sniffed from the content by :func:`usm_bridge.attachments.take_in`, never taken from here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The tool's id of the file (a Jira attachment id, a ServiceNow ``sys_attachment``
    #: sys_id, a MIME part's place in its message): what :meth:`Connector.open_attachment`
    #: takes.
    remote_id: str
    #: The file name as the tool gives it.
    name: str
    #: The media type the tool (or the sender) declares.
    declared_type: str | None = None
    #: The size the tool states, in bytes (checked against the cap before a download).
    size: int | None = None
    #: The content's SHA-256 in hex, when the tool states it (ServiceNow's ``hash``).
    sha256: str | None = None
    #: The comment the file came with, when the tool ties them (a journal entry, a mail).
    comment_id: str | None = None
    created: datetime | None = None
    #: Who added it, as the tool names its accounts (tells the bridge's own copies apart).
    author: str | None = None
    #: Shown in the body (an e-mail's inline image) rather than listed beside it.
    inline: bool = False


class RawRecord(BaseModel):
    """One record as the tool holds it, before mapping: the tool's JSON plus what we index by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_id: str
    remote_key: str | None = None
    #: When the tool last changed the record (used for de-duplication and lag measurement).
    updated: datetime | None = None
    url: str | None = None
    #: The record in the tool's own shape, comments included where the tool keeps them apart.
    data: dict[str, JsonValue]
    #: The files the record carries, as the tool lists them (content not read): a connector
    #: that :attr:`~Connector.carries_attachments` lists them here from what it already read
    #: (no request per record). The engine takes in those it does not hold yet through
    #: :meth:`Connector.open_attachment` (never one it holds already by ``remote_id`` or
    #: identity); a file tied to a comment names it by ``comment_id`` (the comment's
    #: ``remote_id`` as mapped). Left out of the record's dump while empty, so a record without
    #: files is stored (in a dead letter) as before.
    attachments: list[RemoteAttachment] = Field(default_factory=list, exclude_if=operator.not_)

    @classmethod
    def from_json(
        cls,
        data: dict[str, Any],
        *,
        remote_id: str,
        remote_key: str | None = None,
        updated: datetime | None = None,
        url: str | None = None,
        attachments: Iterable[RemoteAttachment] = (),
    ) -> RawRecord:
        """A record of a page the tool sent, ``data`` as ``json`` parsed it, not validated again.

        Validating ``data`` proves, value by value, that it is JSON, which what ``json.loads``
        returned is by construction; for a Jira issue read with ``fields=*all`` (hundreds of
        values) that walk cost more than the rest of reading it. Only the fields the bridge
        indexes by are checked here. ``data`` is taken as it is (not copied): the connector
        must not change it afterwards.

        :raises ValueError: a field is not what a record holds; the message names the record.
        """
        problems = []
        if not isinstance(remote_id, str):
            problems.append(f"remote_id is {type(remote_id).__name__}, not a string")
        if remote_key is not None and not isinstance(remote_key, str):
            problems.append(f"remote_key is {type(remote_key).__name__}, not a string")
        if updated is not None and not isinstance(updated, datetime):
            problems.append(f"updated is {type(updated).__name__}, not a datetime")
        if url is not None and not isinstance(url, str):
            problems.append(f"url is {type(url).__name__}, not a string")
        if not isinstance(data, dict):
            problems.append(f"data is {type(data).__name__}, not a JSON object")
        elif not all(isinstance(key, str) for key in data):
            problems.append("data has a key that is not a string")
        if problems:
            named = f"{remote_key} ({remote_id!r})" if isinstance(remote_key, str) else remote_id
            raise ValueError(f"record {named!r}: {'; '.join(problems)}")
        return cls.model_construct(
            remote_id=remote_id, remote_key=remote_key, updated=updated, url=url, data=data,
            attachments=list(attachments),
        )  # fmt: skip


class Checkpoint(BaseModel):
    """Everything yielded before this is covered by ``cursor`` (opaque to all but the connector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cursor: str


class RemoteRef(BaseModel):
    """Where a record the bridge created or found lives in the tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_id: str
    remote_key: str | None = None
    url: str | None = None


class RemoteDraft(BaseModel):
    """What to write into the tool, in the tool's own field names (the outbound mapping's result).

    ``fields`` are plain fields; ``status`` is the tool's status value, set apart because many
    tools change status through a workflow (Jira transitions), not a field write;
    ``status_fields`` are fields a status change requires (resolution, close code).
    """

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, JsonValue] = Field(default_factory=dict)
    status: str | None = None
    status_fields: dict[str, JsonValue] = Field(default_factory=dict)


class CommentFile(BaseModel):
    """A file sent with a comment, as the comment names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    size: int = Field(ge=0)


class CommentDraft(BaseModel):
    """A comment to add to a remote record."""

    model_config = ConfigDict(extra="forbid")

    body: str
    public: bool = True
    #: The bridge's id for the comment, so a retried add can be recognised.
    correlation: str | None = None
    author: str | None = None
    #: The files sent with the comment (already on the record, or written with it by
    #: :meth:`Connector.add_comment_with_files`): the comment names them in the tool's own way
    #: (Jira ``[^name]``, a ServiceNow journal entry's "Attached:" line), in the same write as
    #: its text, so the comment the bridge records is the one that names them.
    files: list[CommentFile] = Field(default_factory=list)


@dataclass(frozen=True)
class OutgoingFile:
    """A file on its way into a tool with a comment or a new record, already checked (its
    SHA-256 and size are what the call lists): ``chunks()`` gives its content anew each time,
    in chunks, never whole in memory."""

    name: str
    media_type: str
    size: int
    sha256: str
    chunks: Callable[[], Iterator[bytes]]


@dataclass(frozen=True)
class RereadableChunks:
    """A file's content for :meth:`Connector.put_attachment` that reads anew each time it is
    iterated (``read()`` gives it from its start): a request refused before it did any work
    (a 429, a 401 whose token is then renewed) can be sent again whole, where chunks readable
    once (an iterator) would be sent as nothing."""

    read: Callable[[], Iterator[bytes]]

    def __iter__(self) -> Iterator[bytes]:
        return self.read()


@dataclass(frozen=True)
class FileWrite:
    """What became of one :class:`OutgoingFile`: the tool's id of its copy, or why the tool
    refused it for good (too large for the tool or its relay)."""

    remote_id: str | None = None
    refused: str | None = None


class VocabularyValue(BaseModel):
    """One value of the tool's vocabulary (a status, a priority, an issue type ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    label: str | None = None
    #: Where the value applies (a project, a table), if the tool scopes it.
    scope: str | None = None


class Vocabulary(BaseModel):
    """What values the tool knows: the base of the mapping conformance report."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[VocabularyValue] = Field(default_factory=list)
    priorities: list[VocabularyValue] = Field(default_factory=list)
    types: list[VocabularyValue] = Field(default_factory=list)
    fields: list[VocabularyValue] = Field(default_factory=list)
    #: Other value lists by name (resolutions, hold reasons, close codes ...).
    other: dict[str, list[VocabularyValue]] = Field(default_factory=dict)


class CheckResult(BaseModel):
    """The outcome of :meth:`Connector.check`: can the bridge reach and use the tool?"""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    detail: str = ""
    #: Facts a person wants to see (server version, account, time zone); never secrets.
    facts: dict[str, str] = Field(default_factory=dict)


class Connector(ABC):
    """Base class of every connector.

    Subclasses set ``kind`` (the name used in config files) and ``settings_model`` (a
    :class:`ConnectorSettings` subclass), and implement the abstract methods. Remote failures
    are raised as :class:`~usm_bridge.errors.RetriableRemoteError` (429, 5xx, timeouts) after the
    connector's own bounded retries, or :class:`~usm_bridge.errors.PermanentRemoteError` (other
    4xx) carrying the remote's message.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    #: One line for ``usm-bridge connectors``.
    description: ClassVar[str] = ""

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name
        self.settings = settings

    @classmethod
    def from_config(
        cls, name: str, raw_settings: dict[str, Any], *, base_dir: Path | None = None
    ) -> Connector:
        """Validate raw settings (from a config file) and build the connector.

        ``base_dir`` is the config file's folder: relative :data:`SettingsPath` settings are
        taken against it. Without it they stay relative to the working directory.

        :raises pydantic.ValidationError: the settings are invalid. Its message quotes the
            values given: code that reports it goes through :func:`build_connector`.
        """
        settings = cls.settings_model.model_validate(
            raw_settings, context=settings_context(base_dir)
        )
        return cls(name, settings)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections; called when the engine is done with the connector."""

    @abstractmethod
    def check(self) -> CheckResult:
        """Reach the tool with the configured credentials and say whether it can be used."""

    @abstractmethod
    def discover(self) -> Vocabulary:
        """The tool's vocabulary: statuses, priorities, types and fields in scope."""

    @abstractmethod
    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Yield every record changed since ``cursor`` (all records when ``None``).

        Records come in the order the tool changed them; a :class:`Checkpoint` follows each
        batch. The last item yielded is always a checkpoint, even when nothing changed.
        Reading again from the same cursor may repeat records (overlap is fine, the engine
        de-duplicates) but must never skip one.
        """

    @abstractmethod
    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        """The record this bridge created with ``correlation``, if the tool holds one."""

    @abstractmethod
    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Create a record carrying the correlation marker; idempotent by ``correlation``.

        Creating twice with the same correlation returns the first record and creates none.
        """

    @abstractmethod
    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """Write the draft's fields (and status) into an existing record."""

    @abstractmethod
    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """Add a comment; returns the tool's id for it.

        The id is the tool's proof that this comment is the bridge's copy (Jira: the comment
        carrying ``correlation`` in its property; ServiceNow: the journal entry the integration
        user created with this write). It is never found by the comment's text: a person may
        write the same words, and a second identical comment is a second comment.
        """

    def find_comment(
        self,
        remote_id: str,
        correlation: str,
        *,
        since: datetime,
        known: Collection[str] = (),
        public: bool = True,
    ) -> str | None:
        """The comment an earlier :meth:`add_comment` with ``correlation`` made, if it landed.

        Asked when an add's answer was lost (a timeout, a crash before the bridge recorded
        the id) so that the add is not made twice. The answer must rest on proof, never on
        text: a marker the add stored with the comment, or authorship by the bridge's own
        account at or after ``since`` (when the write was asked for) among comments whose id is
        not in ``known`` (the ids the bridge already holds as its copies on this record), of
        the kind asked for (``public``: a comment, or an internal note).
        ``None`` (the default, for a tool that cannot tell) means "not found": the add is
        then made (again).
        """
        return None

    #: Whether :meth:`read_changes` may run in a child process forked for the read (a
    #: capability, like :attr:`watches`; see :mod:`usm_bridge.sync.child_read`): the child
    #: reads and maps while the cycle's process stores. Declare it only when the connector
    #: holds nothing a fork cannot copy: no connection it cannot let go of in the child
    #: (:meth:`after_fork`), no lock or thread of its own, and nothing learned while reading
    #: that later calls need unless :meth:`read_state` hands it back. Default: no, so a
    #: third-party connector keeps reading in the cycle's process.
    reads_in_child: ClassVar[bool] = False

    def after_fork(self) -> None:  # noqa: B027 - optional hook, nothing held by default
        """In the child process forked to read: let go of the connections inherited from the
        parent **without closing them** (they are the parent's sockets; a TLS session cannot
        be shared): the child opens its own. Called before :meth:`read_changes`."""

    def read_state(self) -> object | None:
        """What a read learned that later calls use (a field list, which table holds a
        record), picklable; the child's answer is handed to the parent's
        :meth:`adopt_read_state` at the read's end. ``None``: nothing."""
        return None

    def adopt_read_state(self, state: object) -> None:  # noqa: B027 - optional hook
        """Take what the read in a child process learned (its :meth:`read_state`)."""

    #: Whether the connector implements :meth:`watch` (a capability, like :meth:`remote_ids`):
    #: the daemon then runs it on a thread of its own for each instance whose config leaves
    #: ``watch`` on.
    watches: ClassVar[bool] = False

    def watch(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """Wait for changes in the tool and call ``wake()`` for each, until ``stop`` is set;
        optional (set :attr:`watches` when implemented).

        A wake is a hint, never data: it only brings the instance's next cycle forward, and
        the cycle reads what changed through :meth:`read_changes` as always (a change missed
        here is still found by the next poll). Runs on a thread of its own beside the cycles,
        without the instance's lock: it must use a connection of its own (never the cycle's)
        and touch nothing a cycle changes. Return within about a second once ``stop`` is set.

        Return before ``stop`` only when the tool cannot be watched (an IMAP server without
        IDLE), after logging why: the instance is then polled only. Get over lost connections
        inside (reconnect with a backoff); an exception is for what cannot be got over there
        (refused credentials): the daemon logs it and calls ``watch`` again after a backoff.
        """
        return None

    #: Whether the connector implements the attachment methods below (a capability, like
    #: :attr:`watches`). A connector without it neither reads nor writes files: a file bound
    #: for it is counted as one that could not travel, never dropped unsaid.
    carries_attachments: ClassVar[bool] = False

    def list_attachments(self, remote_id: str) -> list[RemoteAttachment]:
        """The files the record ``remote_id`` carries now, oldest first; optional (set
        :attr:`carries_attachments`). Before a write, the bridge looks here for a copy with the
        same identity (SHA-256 and name), so that a crash between an upload and its commit
        never leaves a second copy."""
        raise NotImplementedError(f"{self.kind} does not carry attachments")

    def open_attachment(self, attachment_id: str) -> AbstractContextManager[Iterator[bytes]]:
        """The content of the file ``attachment_id`` (a :attr:`RemoteAttachment.remote_id`),
        in chunks, never whole in memory; closing the context ends the download. Optional (set
        :attr:`carries_attachments`)."""
        raise NotImplementedError(f"{self.kind} does not carry attachments")

    def put_attachment(
        self,
        remote_id: str,
        name: str,
        media_type: str,
        size: int,
        chunks: Iterable[bytes],
        *,
        comment: CommentDraft | None = None,
    ) -> str:
        """Write a file of ``size`` bytes, read from ``chunks`` as it is sent (never whole in
        memory), onto the record ``remote_id``; returns the tool's id of the new file. With
        ``comment``, the file goes with that comment where the tool ties them (a mail, a
        journal entry naming the files), else on the record. Not idempotent by itself: the
        bridge looks for an existing copy with :meth:`list_attachments` first. Optional (set
        :attr:`carries_attachments`)."""
        raise NotImplementedError(f"{self.kind} does not carry attachments")

    def add_comment_with_files(
        self, remote_id: str, comment: CommentDraft, files: Sequence[OutgoingFile]
    ) -> tuple[str, list[FileWrite]]:
        """Add ``comment`` with ``files`` (none of them on the record yet): the comment's id and
        what became of each file, in order. ``comment.files`` names every file of the comment
        (these and those found on the record already); a file refused for good is left out of
        the names and reported, never raised, so the comment still goes.

        The default suits a tool that keeps files on the record (Jira, ServiceNow): each file
        is uploaded with :meth:`put_attachment`, then the comment that names them is added.
        Files first: a crash or a lost answer between them leaves files the bridge finds on the
        record on its next try (it lists before it writes) and a comment not made yet, which
        then names them; the other order would leave a comment naming files that may never
        come. A tool that sends the comment and its files as one message (a mail) overrides
        it. Optional (set :attr:`carries_attachments`).

        :raises RemoteError: a failure that may pass (the bridge lists first when it retries).
        """
        writes: list[FileWrite] = []
        gone: set[str] = set()
        for file in files:
            try:
                made = self.put_attachment(
                    remote_id, file.name, file.media_type, file.size,
                    RereadableChunks(file.chunks),
                )  # fmt: skip
            except PermanentRemoteError as exc:
                writes.append(FileWrite(refused=f"{file.name}: {exc}"))
                gone.add(file.name)
                continue
            writes.append(FileWrite(remote_id=made))
        named = [f for f in comment.files if f.name not in gone]
        return self.add_comment(remote_id, comment.model_copy(update={"files": named})), writes

    #: Whether :meth:`create_with_files` writes files with a new record (a mail that opens a
    #: thread carries them); otherwise the bridge writes them after the create.
    creates_with_files: ClassVar[bool] = False

    def create_with_files(
        self, draft: RemoteDraft, correlation: str, files: Sequence[OutgoingFile]
    ) -> tuple[RemoteRef, list[FileWrite]]:
        """:meth:`create` with the call's ``files`` in the same write (set
        :attr:`creates_with_files`); idempotent by ``correlation`` like :meth:`create`: a
        record found made already is returned with no file written (the bridge then finds
        them on it, listing first)."""
        raise NotImplementedError(f"{self.kind} does not create records with files")

    def remote_ids(self) -> Iterator[str] | None:
        """Every record id the tool holds in the connector's scope, for the census; optional.

        The census (``SyncEngine.census``) marks the stored calls whose record is missing from
        this listing as vanished (deleted, or no longer visible to the bridge's account). It
        only does so when the listing completes: return ``None`` (the default) when the tool
        cannot list its ids, and raise a :class:`~usm_bridge.errors.RemoteError` rather than
        end the iteration early when a request fails, or records would be wrongly marked.
        """
        return None


def build_connector(
    connector_type: type[Connector],
    name: str,
    raw_settings: dict[str, Any],
    *,
    base_dir: Path | None,
) -> Connector:
    """``connector_type.from_config(name, raw_settings, base_dir=base_dir)``, for callers that
    build connectors from a config file.

    A connector that overrides :meth:`Connector.from_config` with the signature from before
    ``base_dir`` existed is still built, without it (its relative paths then stay relative to
    the working directory, as they always were), rather than failing with a TypeError.

    :raises ConfigurationError: the settings are invalid; the message names each setting and
        what is wrong with it, never the value given (see the module docstring).
    """
    try:
        if base_dir is not None and not _accepts_base_dir(connector_type.from_config):
            log.warning(
                "%s.from_config() takes no base_dir: relative paths in the settings of %s are "
                "taken relative to the working directory, not to the config file",
                connector_type.__qualname__,
                name,
            )
            return connector_type.from_config(name, raw_settings)
        return connector_type.from_config(name, raw_settings, base_dir=base_dir)
    except ValidationError as exc:
        problems = "; ".join(f"{settings_key(loc)}: {msg}" for loc, msg in settings_problems(exc))
        # From None: a chained ValidationError would put the values back into every traceback
        # logged of this error.
        raise ConfigurationError(
            f"settings of connector instance {name!r} "
            f"({getattr(connector_type, 'kind', connector_type.__name__)}) are invalid: "
            f"{problems}"
        ) from None


def _accepts_base_dir(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C callable): assume the current API
        return True
    return any(p.name == "base_dir" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
