"""``usm-bridge export wif`` and ``usm-bridge import wif``: the work behind the commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import BridgeConfig
from ..errors import ConfigurationError
from .documents import document_json
from .export import unit_documents
from .placing import Adopted, adopt
from .reader import WifDocumentError, read_document
from .to_config import config_snippet

__all__ = ["check_documents", "export_wif", "import_wif"]

#: Documents named in one refusal; the count of the others follows.
_MAX_REPORTED = 10


def export_wif(config: BridgeConfig, units: Sequence[str], out_dir: Path) -> list[Path]:
    """Write the documents of ``units`` (every unit when empty) into ``out_dir`` (created if
    missing), replacing files of the same names; the paths written, in order.

    :raises ConfigurationError: for a unit the config does not define, or a folder that
        cannot be written.
    """
    for unit in units:
        if unit not in config.units:
            raise ConfigurationError(
                f"unit {unit!r} is not defined",
                where="--unit",
                expected=f"one of {sorted(config.units)}",
            )
    chosen = dict.fromkeys(units or config.units)  # a unit named twice is written once
    documents = [doc for unit in chosen for doc in unit_documents(config, unit)]
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for exported in documents:
            path = out_dir / exported.file_name
            path.write_text(document_json(exported.document), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write: {exc.strerror}", where=str(exc.filename or out_dir)
        ) from None
    return written


def check_documents(files: Sequence[Path], unit: str | None = None) -> list[Adopted]:
    """Read and place every file, then refuse them all at once if any is not valid.

    :raises WifDocumentError: naming each invalid file and where in it.
    """
    adopted: list[Adopted] = []
    problems: list[str] = []
    for path in files:
        try:
            adopted.append(adopt(str(path), read_document(path), unit))
        except WifDocumentError as exc:
            problems.append(str(exc))
    if problems:
        message = "; also ".join(problems[:_MAX_REPORTED])
        if len(problems) > _MAX_REPORTED:
            message += f"; and {len(problems) - _MAX_REPORTED} more"
        raise WifDocumentError(f"{len(problems)} of {len(files)} not imported: {message}")
    return adopted


def import_wif(files: Sequence[Path], unit: str | None = None) -> str:
    """The config (TOML) that reproduces the documents in ``files``.

    :raises WifDocumentError: as :func:`check_documents`, or for documents that contradict
        each other (one pattern twice, one profile with two names).
    """
    return config_snippet(check_documents(files, unit))
