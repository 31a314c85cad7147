"""Where the shipped mapping files are, so ``init`` can copy them next to a new config.

From a source checkout (the usual editable install) they are the repository's ``mappings/``;
from a wheel they are installed as data files under ``<prefix>/share/usm-bridge/mappings``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["copy_shipped_mappings", "shipped_mappings", "shipped_mappings_dir"]


def shipped_mappings_dir() -> Path | None:
    """The folder holding the shipped mapping files, or None if this install has none."""
    candidates = (
        Path(__file__).resolve().parents[2] / "mappings",
        Path(sys.prefix) / "share" / "usm-bridge" / "mappings",
    )
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return None


def shipped_mappings() -> list[Path]:
    """Every shipped mapping file, sorted by name."""
    folder = shipped_mappings_dir()
    return sorted(folder.glob("*.yaml")) if folder else []


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
