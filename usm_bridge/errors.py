"""The exceptions usm-bridge raises, branched by what the caller should do about them.

::

    UsmBridgeError                      root: anything the bridge raises on purpose
    ├── ConfigurationError              tell the admin; exit 2; names file, line or key
    │   └── MappingFileError            a mapping file that does not load or validate
    ├── MappingError                    one record could not be mapped: it goes to dead letters
    ├── StoreError                      the state store refused or is unreachable
    │   ├── StoreConflictError          rolled back for a concurrent unit of work: run again
    │   └── StoreSchemaError            schema older or newer than the code; exit 2
    ├── LockHeldError                   what must run alone runs elsewhere (a daemon); exit 2
    ├── PluginError                     a plugin is broken or misbehaves
    ├── AttachmentTooLarge              a file passed its size cap while streaming: refuse it
    └── RemoteError                     a remote tool answered badly or not at all
        ├── RetriableRemoteError        429, 5xx, timeouts, resets: try again later
        └── PermanentRemoteError        other 4xx: retrying will not help
            └── UntrustedURLError       a remote's answer named a URL not to be requested

A user's mistake (config, mapping, arguments) is always a ``ConfigurationError`` so the CLI can
print one clear message instead of a traceback. ``StoreConflictError`` lives with the store
(:class:`usm_bridge.store.StoreConflictError`), which is the only one to raise it, and
``LockHeldError`` with the store's locks (:class:`usm_bridge.store.locks.LockHeldError`).
"""

from __future__ import annotations

__all__ = [
    "AttachmentTooLarge",
    "ConfigurationError",
    "MappingError",
    "MappingFileError",
    "PermanentRemoteError",
    "PluginError",
    "RemoteError",
    "RetriableRemoteError",
    "SourceFileError",
    "StoreError",
    "StoreSchemaError",
    "UsmBridgeError",
]


class UsmBridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigurationError(UsmBridgeError):
    """Something an admin wrote is wrong. ``where`` names the file and the line or key."""

    def __init__(self, message: str, *, where: str | None = None, expected: str | None = None):
        self.message = message
        self.where = where
        self.expected = expected
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class MappingFileError(ConfigurationError):
    """A mapping file that cannot be loaded or does not validate."""


class MappingError(UsmBridgeError):
    """One record could not be mapped; the record goes to the dead letters with this reason."""


class StoreError(UsmBridgeError):
    """The state store refused an operation or could not be reached."""


class PluginError(UsmBridgeError):
    """A plugin failed to load or broke its contract. ``plugin`` names it."""

    def __init__(self, message: str, *, plugin: str | None = None):
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}" if plugin else message)


class AttachmentTooLarge(UsmBridgeError):
    """A file's content passed its size cap while it streamed (:mod:`usm_bridge.attachments`):
    nothing of it was kept; the caller refuses the file with a note and a dead letter."""

    def __init__(self, cap: int, read: int) -> None:
        #: The cap, and the bytes read when the stream was cut (more than ``cap``).
        self.cap = cap
        self.read = read
        super().__init__(f"content larger than its cap of {cap} bytes (cut after {read} bytes)")


class RemoteError(UsmBridgeError):
    """A remote tool answered with an error or not at all.

    Carries what a person needs to act: the HTTP status (if any), the remote's own message,
    and the method and URL (never credentials, which the HTTP layer redacts).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        remote_message: str | None = None,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ):
        self.status = status
        self.remote_message = remote_message
        self.method = method
        self.url = url
        self.retry_after = retry_after
        parts = [message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if method and url:
            parts.append(f"{method} {url}")
        if remote_message:
            parts.append(f"remote said: {remote_message}")
        super().__init__("; ".join(parts))


class RetriableRemoteError(RemoteError):
    """A temporary failure (429, 5xx, timeout, reset): the same call may succeed later."""


class PermanentRemoteError(RemoteError):
    """The remote refused the request (4xx other than 429): retrying will not help."""


class UntrustedURLError(PermanentRemoteError):
    """A remote's answer named a URL the connector will not request (another site than the
    configured one, plain http where the credentials or a signed token would cross a network):
    the remote or the connector's settings to look at, no verdict on what the URL holds."""


class SourceFileError(RetriableRemoteError):
    """Reading a file from the tool it is copied from failed for a reason that may pass (a
    download cut mid-stream, a 5xx), while writing it to another tool: the write is retried
    later, and the target, which answered, is not held back for it (the outbox defers that
    item alone). ``source`` names the tool read from."""

    def __init__(self, name: str, source: str, cause: RemoteError) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"reading {name} from {source} to copy it failed: {cause}")
        # The cause's, kept apart from the message (which says them once already).
        self.status, self.retry_after = cause.status, cause.retry_after


class StoreSchemaError(StoreError):
    """The store's schema is not the one this usm-bridge runs on: older (``usm-bridge db
    upgrade`` brings it forward) or newer (written by a later usm-bridge). A state the admin
    resolves, so the CLI exits 2 as for a configuration problem."""
