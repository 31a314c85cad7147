"""TOML snippets the registry tests share: services and agreements, a priority matrix of three
classes, an instance."""

from __future__ import annotations

#: Facilities provides the workplace, IT laptops and the network; HR has an agreement with
#: Facilities for the workplace, Facilities one with IT for all of IT's (with its own classes
#: p1..p3), and an outside party (acme) one with IT for laptops.
REGISTRY = """\
[services.workplace]
provider = "facilities"
title = "Workplace and desks"

[services.laptops]
provider = "it"

[services.network]
provider = "it"

[agreements.hr-facilities]
provider = "facilities"
customer = "hr"
kind = "written"
services = ["workplace"]
implicit_confirmation = "3d"
targets.high = { response = "1h", fulfilment = "1d" }
targets.low = { fulfilment = "10d" }

[agreements.facilities-it]
provider = "it"
customer = "facilities"
priority.classes = ["p1", "p2", "p3"]
priority.table.high = { high = "p1", medium = "p1", low = "p2" }
priority.table.medium = { high = "p1", medium = "p2", low = "p3" }
priority.table.low = { high = "p2", medium = "p3", low = "p3" }
priority.table.nil = { high = "p3", medium = "p3", low = "p3" }
targets.p1 = { fulfilment = "4h" }

[agreements.acme-it-laptops]
provider = "it"
customer = "acme"
services = ["laptops"]
"""


def matrix_toml(prefix: str, classes: tuple[str, str, str]) -> str:
    """A ``[{prefix}.priority]`` table: a three-class matrix, the most pressing class where
    impact and urgency are both high or one is high and the other medium, the least for nil."""
    one, two, three = classes
    rows = {
        "high": (one, one, two),
        "medium": (one, two, three),
        "low": (two, three, three),
        "nil": (three, three, three),
    }
    lines = [f"\n[{prefix}.priority]", f"classes = {list(classes)!r}".replace("'", '"')]
    for impact, (high, medium, low) in rows.items():
        lines.append(f'table.{impact} = {{ high = "{high}", medium = "{medium}", low = "{low}" }}')
    return "\n".join(lines) + "\n\n"


def servicenow_instance(name: str, unit: str, mapping: str) -> str:
    """A ServiceNow instance table (offline-checkable settings, no real secret)."""
    return (
        f'[instances.{name}]\nunit = "{unit}"\nkind = "servicenow"\nmapping = "{mapping}"\n'
        f'[instances.{name}.settings]\ninstance_url = "https://{name}.service-now.example"\n'
        'username = "u"\npassword = "p"\n\n'
    )
