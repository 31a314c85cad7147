"""A typed façade over pluggy's PluginManager: the only way the bridge calls its hooks.

Discovery: the hook specifications, then every plugin in the entry point group ``usm_bridge``
(the built-in ones are registered there too, so they load exactly like third-party ones), then
``check_pending()`` so that a misspelt hook name fails at start-up, not silently.

``USM_BRIDGE_DISABLE_PLUGINS`` (comma-separated entry point names) blocks plugins, built-in ones
included. ``USM_BRIDGE_TRACE_HOOKS=1`` logs every hook call and its result at DEBUG level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pluggy
from pydantic import JsonValue

from . import hookspecs
from .errors import MappingError, PluginError

if TYPE_CHECKING:
    from .conformance.api import ConformanceCheck, ReportRenderer
    from .connector import Connector, RawRecord, RemoteDraft
    from .mapping import Mapping, MappingContext
    from .model import Call, CallType

__all__ = ["DISABLE_ENV", "TRACE_ENV", "PluginHost", "PluginInfo", "default_host"]

DISABLE_ENV = "USM_BRIDGE_DISABLE_PLUGINS"
TRACE_ENV = "USM_BRIDGE_TRACE_HOOKS"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """What ``usm-bridge connectors`` shows about one registered plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    connector_kinds: tuple[str, ...] = field(default=())


def _blocked_from_env() -> list[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


class PluginHost:
    """Holds the plugin manager and exposes one typed method per hook."""

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        blocked: Iterable[str] | None = None,
        plugins: Iterable[object] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.blocked = tuple(_blocked_from_env() if blocked is None else blocked)
        for name in self.blocked:
            self.pm.set_blocked(name)
        if load_entrypoints:
            try:
                self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
            except pluggy.PluginValidationError as exc:
                raise PluginError(str(exc), plugin=getattr(exc.plugin, "__name__", None)) from exc
            except (ImportError, AttributeError) as exc:
                raise PluginError(f"failed to load an entry point plugin: {exc}") from exc
        for plugin in plugins:
            self.register(plugin)
        self._check_pending()
        if os.environ.get(TRACE_ENV):
            self.pm.trace.root.setwriter(lambda message: log.debug("hook: %s", message.rstrip()))
            self.pm.enable_tracing()
        self._connector_types: dict[str, type[Connector]] | None = None
        self._transforms: dict[str, Callable[..., Any]] | None = None

    # -- registration -------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module (tests and embedding applications use this)."""
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(str(exc), plugin=name or getattr(plugin, "__name__", None)) from exc
        self._check_pending()
        self._connector_types = None
        self._transforms = None

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc), plugin=getattr(exc.plugin, "__name__", None)) from exc

    def plugin_info(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version, hooks and connector kinds."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        kinds_by_plugin: dict[str, list[str]] = {}
        for impl in self.pm.hook.usm_bridge_connector_types.get_hookimpls():
            contributed = cast("list[type[Connector]]", impl.function())
            kinds_by_plugin[impl.plugin_name] = [c.kind for c in contributed]
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a blocked name
                continue
            dist = dists.get(id(plugin))
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.project_name if dist is not None else None,
                    version=dist.version if dist is not None else None,
                    hooks=hooks,
                    connector_kinds=tuple(kinds_by_plugin.get(name, ())),
                )
            )
        return sorted(infos, key=lambda info: info.name)

    # -- connectors ---------------------------------------------------------------------------

    def connector_types(self) -> dict[str, type[Connector]]:
        """Connector classes by kind; a kind claimed twice is a :class:`PluginError`."""
        if self._connector_types is None:
            found: dict[str, type[Connector]] = {}
            for impl in self.pm.hook.usm_bridge_connector_types.get_hookimpls():
                classes = cast("list[type[Connector]]", impl.function())
                for cls in classes:
                    kind = getattr(cls, "kind", None)
                    if not isinstance(kind, str) or not kind:
                        raise PluginError(f"{cls!r} declares no 'kind'", plugin=impl.plugin_name)
                    if kind in found and found[kind] is not cls:
                        raise PluginError(
                            f"connector kind {kind!r} is already provided by {found[kind]!r}",
                            plugin=impl.plugin_name,
                        )
                    found[kind] = cls
            self._connector_types = found
        return dict(self._connector_types)

    def connector_type(self, kind: str) -> type[Connector]:
        """The connector class for ``kind``; a clear error lists the kinds that are installed."""
        types = self.connector_types()
        try:
            return types[kind]
        except KeyError:
            known = ", ".join(sorted(types)) or "none"
            raise PluginError(
                f"no connector of kind {kind!r} is installed (installed kinds: {known}); "
                f"install its distribution, e.g. pip install usm-bridge-{kind}"
            ) from None

    # -- mapping ------------------------------------------------------------------------------

    def transforms(self) -> dict[str, Callable[..., Any]]:
        """Mapping transforms by name, from every plugin; a name claimed twice is an error."""
        if self._transforms is None:
            found: dict[str, Callable[..., Any]] = {}
            owner: dict[str, str] = {}
            for impl in self.pm.hook.usm_bridge_mapping_transforms.get_hookimpls():
                contributed = cast("dict[str, Callable[..., Any]]", impl.function())
                for name, func in contributed.items():
                    if name in found:
                        raise PluginError(
                            f"transform {name!r} is already provided by plugin {owner[name]!r}",
                            plugin=impl.plugin_name,
                        )
                    found[name] = func
                    owner[name] = impl.plugin_name
            self._transforms = found
        return dict(self._transforms)

    def map_inbound(self, mapping: Mapping, record: RawRecord, context: MappingContext) -> Call:
        """Map a raw record to a canonical call through the first plugin that answers."""
        call: Call | None = self.pm.hook.usm_bridge_map_inbound(
            mapping=mapping, record=record, context=context
        )
        if call is None:
            raise MappingError(f"no plugin maps records for mapping {mapping.name!r}")
        return call

    def map_outbound(self, mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
        """Map a canonical call to a remote draft through the first plugin that answers."""
        draft: RemoteDraft | None = self.pm.hook.usm_bridge_map_outbound(
            mapping=mapping, call=call, context=context
        )
        if draft is None:
            raise MappingError(f"no plugin maps calls outbound for mapping {mapping.name!r}")
        return draft

    def classify(self, call: Call, record: RawRecord) -> CallType | None:
        """The first classifier's verdict on an unclassified call, or ``None``."""
        result: CallType | None = self.pm.hook.usm_bridge_classify_call(call=call, record=record)
        return result

    # -- conformance --------------------------------------------------------------------------

    def conformance_checks(self) -> list[ConformanceCheck]:
        """Every conformance check, built-in and contributed; ids must be unique."""
        checks: list[ConformanceCheck] = []
        seen: set[str] = set()
        for batch in self.pm.hook.usm_bridge_conformance_checks():
            for check in batch:
                if check.id in seen:
                    raise PluginError(f"two conformance checks share the id {check.id!r}")
                seen.add(check.id)
                checks.append(check)
        return checks

    def report_renderers(self) -> dict[str, ReportRenderer]:
        """Report renderers by format; a format claimed twice is an error."""
        found: dict[str, ReportRenderer] = {}
        for batch in self.pm.hook.usm_bridge_report_renderers():
            for renderer in batch:
                if renderer.format in found:
                    raise PluginError(f"two report renderers claim format {renderer.format!r}")
                found[renderer.format] = renderer
        return found

    # -- sync lifecycle events ----------------------------------------------------------------

    def before_cycle(self, instance: str) -> None:
        self.pm.hook.usm_bridge_before_cycle(instance=instance)

    def after_cycle(self, instance: str, summary: dict[str, int]) -> None:
        self.pm.hook.usm_bridge_after_cycle(instance=instance, summary=summary)

    def dead_letter(self, instance: str, stage: str, reason: str, payload: JsonValue) -> None:
        """Tell the plugins of a dead letter, already kept; a plugin that raises is logged.

        A notification: the letter is stored before it, so a watcher's bug must not end the
        cycle (which would read the same record, and fail the same way, every cycle).
        """
        try:
            self.pm.hook.usm_bridge_dead_letter(
                instance=instance, stage=stage, reason=reason, payload=payload
            )
        except Exception as exc:
            from .http import redact_text  # the http layer imports much; only needed here

            log.warning("a usm_bridge_dead_letter hook raised for a %s letter of %s: %s",
                        stage, instance, redact_text(f"{type(exc).__name__}: {exc}"))  # fmt: skip


_default: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host with entry-point plugins loaded (created on first use)."""
    global _default
    if _default is None:
        _default = PluginHost()
    return _default
