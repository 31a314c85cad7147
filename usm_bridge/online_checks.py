"""``usm-bridge check`` online: sign in to every tool and reach the store, changing nothing.

The file checks of :mod:`usm_bridge.checks` say whether a config makes sense; these say whether
the bridge could run with it here and now: each enabled instance's connector ``check()`` (its
sign-in with the configured credentials), and the store opened read-only with its schema
revision held against the code's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import BridgeConfig
from .connector import build_connector
from .errors import UsmBridgeError
from .plugins import PluginHost

__all__ = ["Reached", "reach_instances", "reach_store"]


@dataclass(frozen=True)
class Reached:
    """One thing the bridge must reach: an instance's tool, or the store."""

    #: ``instance NAME`` or ``store``.
    subject: str
    ok: bool
    #: The tool's or the database's own words (never a secret).
    detail: str
    facts: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "detail": self.detail, "facts": self.facts}


def reach_instances(config: BridgeConfig, host: PluginHost) -> list[Reached]:
    """Each instance's connector ``check()``, in config order; disabled ones are not asked."""
    reached = []
    for name, inst in config.instances.items():
        if not inst.enabled:
            reached.append(Reached(f"instance {name}", True, "disabled: not checked"))
        else:
            reached.append(_reach_instance(config, host, name))
    return reached


def _reach_instance(config: BridgeConfig, host: PluginHost, name: str) -> Reached:
    subject, inst = f"instance {name}", config.instances[name]
    try:
        connector = build_connector(
            host.connector_type(inst.kind), name, inst.settings, base_dir=config.base_dir
        )
        try:
            result = connector.check()
        finally:
            connector.close()
    except UsmBridgeError as exc:
        return Reached(subject, False, str(exc))
    except Exception as exc:  # a connector's own fault: say what, and check the others
        return Reached(subject, False, f"{type(exc).__name__}: {exc}")
    return Reached(subject, result.ok, result.detail, dict(result.facts))


def reach_store(config: BridgeConfig) -> Reached:
    """Open the store read-only and hold its schema revision against the code's."""
    from .store.revision import read_store_revision
    from .store.upgrades import SchemaState

    try:
        revision = read_store_revision(config.store.url)
    except UsmBridgeError as exc:
        return Reached("store", False, str(exc))
    facts = {"url": revision.url, "revision": revision.current or "", "head": revision.head}
    where = revision.url
    if revision.state is SchemaState.CURRENT:
        return Reached("store", True, f"{where} at schema revision {revision.current}", facts)
    if revision.state is SchemaState.EMPTY:
        created = revision.missing_file or "the schema"
        return Reached("store", True, f"{where} is new: the first sync creates {created}", facts)
    if revision.state is SchemaState.OLDER:
        return Reached(
            "store",
            False,
            f"{where} is at schema revision {revision.current}, older than this usm-bridge's "
            f"{revision.head}: back up the store, then run 'usm-bridge db upgrade'",
            facts,
        )
    return Reached(
        "store",
        False,
        f"{where} is at schema revision {revision.current}, which this usm-bridge does not "
        f"know (head {revision.head}): it was written by a newer usm-bridge",
        facts,
    )
