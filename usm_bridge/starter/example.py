"""The enterprise the starter config describes, read from ``templates/starter-example.toml``:
HR on a mailbox, Facilities on Jira Service Management, IT on ServiceNow, and the routes
HR -> Facilities -> IT.

The mapping files it names are the shipped ones, which ``init`` copies into
:data:`MAPPINGS_FOLDER` beside the config.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["MAPPINGS_FOLDER", "ExampleRoute", "ExampleUnit", "example_routes", "example_units"]

#: The folder, beside the config, that ``init`` copies the shipped mappings into and that the
#: starter's ``mapping`` paths name.
MAPPINGS_FOLDER = "mappings"


@dataclass(frozen=True)
class ExampleUnit:
    """One unit of the example with its one connector instance."""

    name: str
    title: str
    about: str
    kind: str
    instance: str
    #: The name of a shipped mapping file (found in :data:`MAPPINGS_FOLDER`).
    mapping: str
    #: The connector settings set; the starter lists the others, commented.
    settings: dict[str, Any]
    allowed_domains: tuple[str, ...] = ()

    @property
    def mapping_path(self) -> str:
        return f"{MAPPINGS_FOLDER}/{self.mapping}"


@dataclass(frozen=True)
class ExampleRoute:
    """A route of the example, with the reason it exists."""

    from_unit: str
    to_unit: str
    when: dict[str, Any]
    about: str


@cache
def _example() -> dict[str, Any]:
    text = files("usm_bridge").joinpath("templates", "starter-example.toml").read_text("utf-8")
    return tomllib.loads(text)


def example_units() -> tuple[ExampleUnit, ...]:
    """The example's units, in chain order."""
    return tuple(
        ExampleUnit(**{**unit, "allowed_domains": tuple(unit.get("allowed_domains", ()))})
        for unit in _example()["units"]
    )


def example_routes() -> tuple[ExampleRoute, ...]:
    """The example's routes, in chain order."""
    return tuple(
        ExampleRoute(
            from_unit=route["from"], to_unit=route["to"], when=route["when"], about=route["about"]
        )
        for route in _example()["routes"]
    )
