"""``usm-bridge check``: everything a config names must exist and fit, before the daemon runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .agreements import Agreements
from .config import BridgeConfig, KeyLocator, RouteConfig
from .connector import settings_context, settings_problems
from .errors import ConfigurationError, PluginError
from .ownership import written_from
from .plugins import PluginHost, default_host
from .service_routes import receiving_instances

if TYPE_CHECKING:
    from .mapping import Mapping

__all__ = ["check_config"]


def check_config(config: BridgeConfig, host: PluginHost | None = None) -> list[str]:
    """Check the store URL, each instance's connector, settings and mapping, and each route.

    :returns: one line per thing found in order, for the CLI to show.
    :raises ConfigurationError: at the first problem, naming file, key and line.
    """
    from .mapping import check_mapping, load_mapping
    from .mapping.service_values import service_value_problems
    from .sync.calls import writable_fields

    host = host or default_host()
    locator = _locator(config)
    lines = []
    writable: dict[str, frozenset[str]] = {}
    mappings: dict[str, Mapping] = {}
    try:
        url = make_url(config.store.url)
    except (ArgumentError, ValueError):
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
    registry = Agreements.of(config)
    for name, inst in config.instances.items():
        try:
            connector_cls = host.connector_type(inst.kind)
        except PluginError as exc:
            raise ConfigurationError(
                str(exc), where=locator.where(("instances", name, "kind"))
            ) from None
        try:
            connector_cls.settings_model.model_validate(
                config.tool_settings(name), context=settings_context(config.base_dir)
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
        warnings: list[str] = []
        summary = check_mapping(inst.mapping, transforms, inst.kind, warnings=warnings)
        mappings[name] = load_mapping(inst.mapping)
        for where, problem in service_value_problems(mappings[name], inst.unit, registry):
            raise ConfigurationError(problem, where=where, expected="[services.ID] of this unit")
        writable[name] = writable_fields(mappings[name])
        lines.append(f"instance {name} ({inst.kind}, unit {inst.unit}): mapping {summary}")
        lines.extend(f"  warning: {warning}" for warning in warnings)
        if inst.webhook_secret is not None:
            lines.append(_events_line(config, name))
    for index, route in enumerate(config.routes):
        _check_owners_reach(config, index, route, writable, locator)
        _check_status_reach(config, index, route, mappings, locator)
        to = route.to_unit
        if route.by_service:  # which instances the services can choose
            to += f" ({', '.join(receiving_instances(config, route))})"
        lines.append(f"route {route.name}: {route.from_unit} -> {to}")
    return lines


def _events_line(config: BridgeConfig, name: str) -> str:
    """Where ``name``'s events arrive and how they are verified (never the secret), and
    whether the daemon's own port can take them."""
    inst = config.instances[name]
    how = "a secret in the URL" if inst.webhook_auth == "url_secret" else "signed"
    where = f"POST /events/{inst.kind}/{name} ({how})"
    if config.daemon.address is None:
        return (
            f"  events: {where}; the daemon's [daemon] listen is off, so only `usm-bridge "
            "serve` (with workers) takes them"
        )
    return f"  events: {where} on [daemon] listen {config.daemon.listen}"


def _check_owners_reach(
    config: BridgeConfig,
    index: int,
    route: RouteConfig,
    writable: dict[str, frozenset[str]],
    locator: KeyLocator,
) -> None:
    """Each ``owners`` entry of a route must be able to act: the tools its owner's value is
    copied into must write the field, or the entry would silently do nothing."""
    for field in sorted(route.owners):
        direction = written_from(route, field)
        if direction == "above":
            receivers = receiving_instances(config, route)
        elif direction == "below":
            receivers = [inst.name for inst in config.instances_of(route.from_unit)]
        else:
            continue  # each side keeps its own: nothing is copied
        for receiver in receivers:
            if field not in writable.get(receiver, frozenset({field})):
                owner = route.owner_of(field)
                raise ConfigurationError(
                    f"{field} is given to the {owner}, but instance {receiver!r} (its mapping "
                    f"{config.instances[receiver].mapping.name}) does not write {field}, so the "
                    f"{owner}'s value could never reach it",
                    where=locator.where(("routes", index, "owners", field)),
                    expected=f"a mapping that writes {field}, or no owners entry for it",
                )


def _check_status_reach(
    config: BridgeConfig,
    index: int,
    route: RouteConfig,
    mappings: dict[str, Mapping],
    locator: KeyLocator,
) -> None:
    """A customer owning the status copies each of its states (but waiting) to the supplier
    call: the supplier's tool must be able to take every state the customer's tool can hold."""
    if route.owners.get("status") != "customer":
        return
    for target in receiving_instances(config, route):
        _check_status_into(config, index, route, target, mappings, locator)


def _check_status_into(
    config: BridgeConfig,
    index: int,
    route: RouteConfig,
    target: str,
    mappings: dict[str, Mapping],
    locator: KeyLocator,
) -> None:
    from .mapping.spec import NOT_FOUND, canonical_text

    write = mappings[target].spec.fields.status if target in mappings else None
    if write is None or write.read_only:
        return  # no status written there at all: the check of the owners entry said so
    for inst in config.instances_of(route.from_unit):
        read = mappings[inst.name].spec.fields.status if inst.name in mappings else None
        if read is None or read.values is None:
            continue
        held = sorted({canonical_text(state) for state in read.values.values()})
        missing = [s for s in held if not s.startswith("waiting") and write.raw_for(s) is NOT_FOUND]
        if missing:
            raise ConfigurationError(
                f"status is given to the customer, but instance {target!r} cannot be written "
                f"the state(s) {', '.join(missing)} that instance {inst.name!r} can hold",
                where=locator.where(("routes", index, "owners", "status")),
                expected=f"a 'write' entry for each in {mappings[target].path}, or no owner",
            )


def _locator(config: BridgeConfig) -> KeyLocator:
    # The config's own locator names the variable of a value the environment gave.
    if config.path is None:
        return config.locator("")
    try:
        return config.locator(config.path.read_text(encoding="utf-8"))
    except OSError:
        return config.locator("")
