"""``usm-bridge check``: everything a config names must exist and fit, before the daemon runs."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .config import BridgeConfig, KeyLocator
from .connector import settings_context, settings_problems
from .errors import ConfigurationError, PluginError
from .plugins import PluginHost, default_host

__all__ = ["check_config"]


def check_config(config: BridgeConfig, host: PluginHost | None = None) -> list[str]:
    """Check the store URL, each instance's connector, settings and mapping, and each route.

    :returns: one line per thing found in order, for the CLI to show.
    :raises ConfigurationError: at the first problem, naming file, key and line.
    """
    from .mapping import check_mapping

    host = host or default_host()
    locator = _locator(config)
    lines = []
    try:
        url = make_url(config.store.url)
    except ArgumentError:
        raise ConfigurationError(
            "not a database URL",
            where=locator.where(("store", "url")),
            expected="sqlite:///FILE or postgresql+psycopg://USER@HOST/DB",
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {url.get_backend_name()!r}",
            where=locator.where(("store", "url")),
            expected="sqlite or postgresql",
        )
    lines.append(f"store: {url.render_as_string(hide_password=True)}")
    transforms = host.transforms()
    for name, inst in config.instances.items():
        try:
            connector_cls = host.connector_type(inst.kind)
        except PluginError as exc:
            raise ConfigurationError(
                str(exc), where=locator.where(("instances", name, "kind"))
            ) from None
        try:
            connector_cls.settings_model.model_validate(
                inst.settings, context=settings_context(config.base_dir)
            )
        except ValidationError as exc:
            # Never the values: a secret under a misspelled key would be printed.
            problems = [
                f"{locator.where(('instances', name, 'settings', *loc))}: {msg}"
                for loc, msg in settings_problems(exc)
            ]
            # One line: the first problem first, the others after it.
            raise ConfigurationError(
                "; also ".join(problems) + f" (settings of a {inst.kind} connector)"
            ) from None
        summary = check_mapping(inst.mapping, transforms, expected_tool=inst.kind)
        lines.append(f"instance {name} ({inst.kind}, unit {inst.unit}): mapping {summary}")
    for route in config.routes:
        lines.append(f"route {route.name}: {route.from_unit} -> {route.to_unit}")
    return lines


def _locator(config: BridgeConfig) -> KeyLocator:
    if config.path is None:
        from pathlib import Path

        return KeyLocator(Path("(config)"), "")
    try:
        return KeyLocator(config.path, config.path.read_text(encoding="utf-8"))
    except OSError:
        return KeyLocator(config.path, "")
