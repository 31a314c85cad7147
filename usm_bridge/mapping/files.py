"""The mapping files shipped with usm-bridge, one per tool flavour.

They are package data (``usm_bridge/data/mappings``), so every install has them next to the
code: a source checkout, an editable install and a wheel alike. ``init`` copies them next to a
new config, the demo's sample enterprise names them, and connector tests load them from here.
Wheels install unpacked, so these are plain files that a config's ``mapping`` path can name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = [
    "SHIPPED_MAPPINGS_DIR",
    "copy_shipped_mappings",
    "shipped_mapping",
    "shipped_mappings",
    "shipped_mappings_dir",
]

#: The folder of the shipped mapping files.
SHIPPED_MAPPINGS_DIR = Path(__file__).resolve().parents[1] / "data" / "mappings"


def shipped_mappings_dir() -> Path | None:
    """The folder holding the shipped mapping files, or None if this install has none."""
    if SHIPPED_MAPPINGS_DIR.is_dir() and any(SHIPPED_MAPPINGS_DIR.glob("*.yaml")):
        return SHIPPED_MAPPINGS_DIR
    return None


def shipped_mappings() -> list[Path]:
    """Every shipped mapping file, sorted by name."""
    folder = shipped_mappings_dir()
    return sorted(folder.glob("*.yaml")) if folder else []


def shipped_mapping(name: str) -> Path:
    """The shipped mapping file ``name`` (``jira-software.yaml``, say).

    :raises LookupError: no shipped mapping has that name; the message lists those there are.
    """
    path = SHIPPED_MAPPINGS_DIR / name
    if not path.is_file():
        known = ", ".join(p.name for p in shipped_mappings()) or "none"
        raise LookupError(f"no shipped mapping is called {name!r} (shipped: {known})")
    return path


def copy_shipped_mappings(target: Path) -> list[Path]:
    """Copy the shipped mappings into ``target``; files already there are left alone."""
    copied = []
    files = shipped_mappings()
    if files:
        target.mkdir(parents=True, exist_ok=True)
    for source in files:
        destination = target / source.name
        if not destination.exists():
            shutil.copyfile(source, destination)
            copied.append(destination)
    return copied
