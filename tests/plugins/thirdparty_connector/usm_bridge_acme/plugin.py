"""A minimal third-party plugin: one connector type and one mapping transform."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    RawRecord,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
)
from usm_bridge.hookspecs import hookimpl

CALLS: list[str] = []


class AcmeSettings(ConnectorSettings):
    base_url: str = "http://127.0.0.1:1"


class AcmeConnector(Connector):
    kind = "acme"
    settings_model = AcmeSettings
    description = "ACME ticket tool (test only)"

    def check(self) -> CheckResult:
        return CheckResult(ok=True, detail="acme is always fine")

    def discover(self) -> Vocabulary:
        return Vocabulary()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        yield Checkpoint(cursor=cursor or "0")

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        return None

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        raise NotImplementedError("acme is read-only")

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        raise NotImplementedError("acme is read-only")

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        raise NotImplementedError("acme is read-only")


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    CALLS.append("usm_bridge_connector_types")
    return [AcmeConnector]


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    CALLS.append("usm_bridge_mapping_transforms")
    return {"acme_shout": lambda value: str(value).upper()}
