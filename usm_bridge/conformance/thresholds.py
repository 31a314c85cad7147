"""The ``[conformance]`` section of the config: exception-rate thresholds per check and unit.

::

    [conformance.thresholds]
    "data.priority" = { pass_up_to = 0.02, warn_up_to = 0.10 }  # then warn; above 10% fail
    "data.transitions" = 0.0                          # a number: pass up to it, fail above

    [conformance.units.hr.thresholds]
    "data.service-agreement" = 0.05                   # HR only; wins over the lines above

A check's own default (``threshold`` on the check class) applies where the file says nothing.
Rates are fractions from 0 to 1. The file is validated when it is loaded; the check ids are
validated when a report runs, against the checks installed then.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import ConfigurationError
from .api import Threshold

if TYPE_CHECKING:
    from ..plugins import PluginHost

__all__ = [
    "ConformanceSettings",
    "UnitConformance",
    "check_threshold_ids",
    "thresholded_checks",
    "unit_problems",
]


def _shorthand(value: Any) -> Any:
    # A bare number is the common case: no warn band, so pass up to it and fail above.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"pass_up_to": value, "warn_up_to": value}
    return value


ConfiguredThreshold = Annotated[Threshold, BeforeValidator(_shorthand)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnitConformance(_Section):
    thresholds: dict[str, ConfiguredThreshold] = Field(default_factory=dict)


class ConformanceSettings(_Section):
    thresholds: dict[str, ConfiguredThreshold] = Field(default_factory=dict)
    units: dict[str, UnitConformance] = Field(default_factory=dict)
    #: The accepted-exceptions register (:mod:`usm_bridge.conformance.register`), relative
    #: to the config file.
    exceptions_register: Path | None = None

    def threshold(self, check_id: str, unit: str | None, default: Threshold) -> Threshold:
        """The unit's own threshold, else the file's for every unit, else the check's."""
        return self.threshold_and_source(check_id, unit, default)[0]

    def threshold_and_source(
        self, check_id: str, unit: str | None, default: Threshold
    ) -> tuple[Threshold, str]:
        """The threshold and where it comes from: the config table that sets it, or
        ``the check's default``."""
        own = self.units.get(unit) if unit is not None else None
        if own is not None and check_id in own.thresholds:
            return own.thresholds[check_id], f"[conformance.units.{unit}.thresholds]"
        if check_id in self.thresholds:
            return self.thresholds[check_id], "[conformance.thresholds]"
        return default, "the check's default"

    def configured(self) -> list[tuple[tuple[str, ...], str]]:
        """Every configured threshold as (its key in the file, the check id)."""
        found: list[tuple[tuple[str, ...], str]] = [
            (("conformance", "thresholds", check), check) for check in self.thresholds
        ]
        for unit, settings in self.units.items():
            found += [
                (("conformance", "units", unit, "thresholds", check), check)
                for check in settings.thresholds
            ]
        return found


def unit_problems(settings: ConformanceSettings, units: set[str]) -> list[tuple[str, str]]:
    """(unit, problem) for each ``[conformance.units.NAME]`` naming no configured unit."""
    return [
        (unit, f"[conformance.units.{unit}] names unit {unit!r}, which is not defined")
        for unit in settings.units
        if unit not in units
    ]


def check_threshold_ids(
    settings: ConformanceSettings, thresholded: set[str], path: Path | None
) -> None:
    """Refuse a threshold for a check that is not installed or takes none.

    :param thresholded: the ids of the checks that judge an exception rate.
    :raises ConfigurationError: naming the file, the line and the key.
    """
    from ..config import KeyLocator

    wrong = [(key, check) for key, check in settings.configured() if check not in thresholded]
    if not wrong:
        return
    key, check = wrong[0]
    where = ".".join(key)
    if path is not None:
        try:
            where = KeyLocator(path, path.read_text(encoding="utf-8")).where(key)
        except OSError:
            where = f"{path}: key {where}"
    raise ConfigurationError(
        f"no installed check {check!r} takes a threshold",
        where=where,
        expected=f"one of {', '.join(sorted(thresholded))}",
    )


def thresholded_checks(host: PluginHost) -> set[str]:
    """The ids of the host's checks that judge an exception rate (they declare a
    ``threshold``)."""
    return {
        check.id
        for check in host.conformance_checks()
        if isinstance(getattr(check, "threshold", None), Threshold)
    }
