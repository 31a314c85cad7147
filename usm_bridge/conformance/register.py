"""The accepted-exceptions register: a YAML file of exceptions an approver has accepted.

::

    # accepted-exceptions.yaml, kept with the config
    accepted:
      - check: data.priority
        reference: IT-1                 # one record, by its key in its tool
        reason: VIP call, priority set by the service desk manager
        approver: J. Smit
        approved: 2026-01-10
        expires: 2026-06-30
      - check: data.service-agreement
        filter: {unit: hr, detail: "no agreement"}   # every record the filter matches
        reason: HR has no agreements until the contract is signed
        approver: A. Jansen
        approved: 2026-02-01
        expires: 2026-12-31

An entry covers records either by ``reference`` (the key or id of the record in its tool) or
by ``filter``: ``unit``, ``instance``, ``detail`` (a case-insensitive substring of the
finding), ``opened_since`` and ``opened_until`` (dates, inclusive); every key given must
match. No pattern language and no code: what an entry accepts can be read off the file.
The file is read with the mapping files' safe loader (:mod:`usm_bridge.mapping.loader`), so
every mistake is named by file, line and key.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigurationError
from ..mapping.loader import LocatedData, located_error, parse_located, read_mapping_text

__all__ = ["EntryFilter", "ExceptionsRegister", "RegisterEntry", "load_register"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EntryFilter(_Model):
    """Which records an entry covers when it names no single reference."""

    unit: str | None = None
    instance: str | None = None
    detail: str | None = Field(default=None, min_length=1)
    opened_since: date | None = None
    opened_until: date | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> EntryFilter:
        if not self.model_dump(exclude_none=True):
            raise ValueError(
                "a filter needs at least one of unit, instance, detail, opened_since, opened_until"
            )
        return self


class RegisterEntry(_Model):
    """One accepted exception (or class of them), who accepted it and until when."""

    check: str = Field(min_length=1)
    reference: str | None = Field(default=None, min_length=1)
    filter: EntryFilter | None = None
    reason: str = Field(min_length=1)
    approver: str = Field(min_length=1)
    approved: date
    expires: date

    @model_validator(mode="after")
    def _coherent(self) -> RegisterEntry:
        if (self.reference is None) == (self.filter is None):
            raise ValueError("give either reference or filter (exactly one)")
        if self.expires < self.approved:
            raise ValueError("expires is before approved")
        return self


class _File(_Model):
    accepted: list[RegisterEntry]


class ExceptionsRegister(BaseModel):
    """A loaded register: its entries and the line each starts on."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    entries: list[RegisterEntry]
    lines: list[int | None]

    def check_ids(self, known: set[str]) -> None:
        """Refuse an entry naming a check that is not installed.

        :raises ConfigurationError: naming the file, the line and the key.
        """
        for index, entry in enumerate(self.entries):
            if entry.check not in known:
                line = self.lines[index]
                where = f"{self.path}:{line}" if line else str(self.path)
                raise ConfigurationError(
                    f"key accepted.{index}.check: no installed check {entry.check!r}",
                    where=where,
                    expected=f"one of {', '.join(sorted(known))}",
                )


def load_register(path: Path) -> ExceptionsRegister:
    """Read and validate a register file.

    :raises ConfigurationError: the file is missing, not YAML, or an entry is wrong (file,
        line and key named).
    """
    if not path.is_file():
        raise ConfigurationError("exceptions register not found", where=str(path))
    text = read_mapping_text(path)
    located: LocatedData = parse_located(text, str(path))
    try:
        parsed = _File.model_validate(located.data)
    except ValidationError as exc:
        error = located_error(exc, located, _VOCABULARY)
        raise ConfigurationError(error.message, where=error.where) from None
    lines = [located.lines.get(("accepted", str(i))) for i in range(len(parsed.accepted))]
    return ExceptionsRegister(path=path, entries=parsed.accepted, lines=lines)


_VOCABULARY = {"accepted", *RegisterEntry.model_fields, *EntryFilter.model_fields}
