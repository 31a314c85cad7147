"""The manifest of a written report: the SHA-256 of every output file, ``sha256sum`` style.

``report conformance -o report.html`` also writes ``report.html.sha256`` beside it, listing the
report and every ``--exceptions`` export, one ``<hex>  <path>`` line each, with paths relative
to the manifest's folder. ``cd`` there and run ``sha256sum -c report.html.sha256`` to check
that nothing was altered; :func:`verify_manifest` does the same in Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError
from .provenance import file_sha256

__all__ = ["manifest_path", "verify_manifest", "write_manifest"]

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def manifest_path(report: Path) -> Path:
    """Where the manifest of ``report`` goes: beside it, with ``.sha256`` appended."""
    return report.with_name(report.name + ".sha256")


def write_manifest(report: Path, outputs: Sequence[Path]) -> Path:
    """Write the manifest of ``report`` listing ``report`` and ``outputs``; its path.

    :raises ConfigurationError: the manifest cannot be written (exit code 2).
    """
    target = manifest_path(report)
    folder = target.parent.absolute()
    lines = []
    for path in dict.fromkeys([report, *outputs]):
        shown = os.path.relpath(path.absolute(), folder)
        if "\n" in shown or "\\" in shown:
            # sha256sum escapes such names; none of ours need it, so refuse rather than mis-list.
            raise ConfigurationError(
                "cannot list a file name with a newline or backslash", where=repr(shown)
            )
        lines.append(f"{file_sha256(path)}  {shown}\n")
    try:
        target.write_text("".join(lines), encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write: {exc.strerror}", where=str(target)) from None
    return target


def verify_manifest(manifest: Path) -> dict[str, bool]:
    """Each file the manifest lists and whether its SHA-256 still matches (a missing file does
    not). Paths are relative to the manifest's folder.

    :raises ConfigurationError: a line is not ``<64 hex>  <path>``.
    """
    results: dict[str, bool] = {}
    text = manifest.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if match is None:
            raise ConfigurationError("not a sha256sum line", where=f"{manifest}:{number}")
        expected, name = match.groups()
        path = manifest.parent / name
        results[name] = path.is_file() and file_sha256(path) == expected
    return results
