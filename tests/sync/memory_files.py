"""Memory tools that carry files: each record's files listed with it, downloads and uploads
counted, a download that can be cut mid-stream. For the engine's file flows
(:mod:`usm_bridge.sync.attachment_intake`, :mod:`usm_bridge.sync.attachment_push`) without a
simulator."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sync.memory_tool import Bridge, Clock, MemoryConnector, MemoryTool, make_config
from usm_bridge.config import AttachmentsConfig, BridgeConfig
from usm_bridge.connector import Checkpoint, CommentDraft, RawRecord, RemoteAttachment
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store

#: The memory tool of HR (:func:`make_config`'s), and a file a person attaches there.
HR = "hr-tool"
FORM = b"%PDF-1.4\n% a signed form\n" + b"0" * 3000


@dataclass
class StoredFile:
    record: str
    name: str
    content: bytes


@dataclass
class FileShelf:
    """One tool's files, and what the bridge did with them."""

    tool: MemoryTool
    files: dict[str, StoredFile] = field(default_factory=dict)
    #: The ids of the files downloaded, once per download.
    downloads: list[str] = field(default_factory=list)
    #: (record, name) of each upload.
    uploads: list[tuple[str, str]] = field(default_factory=list)
    #: Downloads to cut after their first chunk (a connection reset mid-stream).
    cut: int = 0
    #: Files whose download the tool refuses, with what it raises (a 403, a URL refused).
    refusing: dict[str, Exception] = field(default_factory=dict)

    def attach(self, record: str, name: str, content: bytes) -> str:
        """A person attaches a file: the record changes (as Jira's ``updated`` does)."""
        file_id = f"{self.tool.name}-f{len(self.files) + 1}"
        self.files[file_id] = StoredFile(record, name, content)
        self.tool.edit(record)
        return file_id

    def listed(self, record: str) -> list[RemoteAttachment]:
        return [
            RemoteAttachment(remote_id=file_id, name=f.name, size=len(f.content))
            for file_id, f in self.files.items()
            if f.record == record
        ]


class FilesConnector(MemoryConnector):
    """A memory tool's connector that carries files."""

    carries_attachments = True

    def __init__(self, tool: MemoryTool, shelf: FileShelf, *, page: int = 2) -> None:
        super().__init__(tool, page=page)
        self.shelf = shelf

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        for item in super().read_changes(cursor):
            if isinstance(item, RawRecord):
                item = item.model_copy(update={"attachments": self.shelf.listed(item.remote_id)})
            yield item

    def list_attachments(self, remote_id: str) -> list[RemoteAttachment]:
        return self.shelf.listed(remote_id)

    @contextmanager
    def open_attachment(self, attachment_id: str) -> Iterator[Iterator[bytes]]:
        self.shelf.downloads.append(attachment_id)
        if attachment_id in self.shelf.refusing:
            raise self.shelf.refusing[attachment_id]
        content = self.shelf.files[attachment_id].content
        cut = self.shelf.cut > 0
        self.shelf.cut -= cut

        def chunks() -> Iterator[bytes]:
            yield content[:10]
            if cut:
                raise RetriableRemoteError("the connection was reset while reading the body")
            yield content[10:]

        yield chunks()

    def put_attachment(
        self, remote_id: str, name: str, media_type: str, size: int, chunks: Iterable[bytes],
        *, comment: CommentDraft | None = None,
    ) -> str:  # fmt: skip
        content = b"".join(chunks)
        assert len(content) == size
        self.shelf.uploads.append((remote_id, name))
        file_id = f"{self.tool.name}-f{len(self.shelf.files) + 1}"
        self.shelf.files[file_id] = StoredFile(remote_id, name, content)
        return file_id


@dataclass
class FilesBridge(Bridge):
    shelves: dict[str, FileShelf] = field(default_factory=dict)


def files_config(tmp_path: Path, **given: object) -> BridgeConfig:
    """:func:`make_config`'s three units, the spool (and its kept files) under ``tmp_path``."""
    config = make_config(tmp_path, **given)  # type: ignore[arg-type]
    spool = AttachmentsConfig(spool=tmp_path / "spool")
    return config.model_copy(update={"attachments": spool})


def files_bridge(store: Store, config: BridgeConfig) -> FilesBridge:
    clock = Clock()
    tools = {name: MemoryTool(name, clock) for name in config.instances}
    shelves = {name: FileShelf(tool) for name, tool in tools.items()}
    connectors: dict[str, MemoryConnector] = {
        name: FilesConnector(tool, shelves[name]) for name, tool in tools.items()
    }
    runtime = build_runtime(config, store, host=PluginHost(), connectors=connectors, clock=clock)
    return FilesBridge(
        store, config, runtime.host, clock, tools, connectors, runtime.engine, shelves=shelves
    )


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@contextmanager
def opened_files_bridge(store: Store, tmp_path: Path) -> Iterator[FilesBridge]:
    """:func:`files_bridge` on :func:`files_config`, its engine closed at the end."""
    built = files_bridge(store, files_config(tmp_path))
    try:
        yield built
    finally:
        built.engine.close()
