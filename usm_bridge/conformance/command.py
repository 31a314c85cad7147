"""``usm-bridge report conformance``: everything the command does, apart from printing.

Kept out of :mod:`usm_bridge.cli` so that the command's logic is testable without Click and
the CLI module stays a thin layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO

from ..config import BridgeConfig
from ..errors import ConfigurationError
from ..model import utcnow
from ..plugins import PluginHost
from .api import ReportRenderer, ReportWriter
from .context import build_context, discover_vocabularies, load_discovery, save_discovery
from .engine import build_report
from .exceptions_export import check_export_paths
from .period import Period, parse_period
from .provenance import SignOff, build_provenance
from .register import load_register
from .report import ConformanceReport
from .sampling import SampleRequest
from .thresholds import check_threshold_ids, thresholded_checks
from .trends import build_trends, check_recordable

__all__ = [
    "EXIT_BELOW_THRESHOLD",
    "ReportRun",
    "register_of",
    "run_conformance_report",
    "write_output",
]

#: The exit code of ``report conformance`` when the score is below ``--fail-under``.
EXIT_BELOW_THRESHOLD = 3


@dataclass
class ReportRun:
    """What one run produced: the report, its renderer, and whether it met ``--fail-under``."""

    report: ConformanceReport
    renderer: ReportRenderer
    format: str
    below_threshold: bool

    @cached_property
    def text(self) -> str:
        """The rendered report, whole (:meth:`write` streams it where the renderer can)."""
        return self.renderer.render(self.report)

    def write(self, stream: TextIO) -> None:
        """Write the rendered report to ``stream``: piece by piece with a renderer that
        writes (the JSON one), else its text."""
        if isinstance(self.renderer, ReportWriter):
            self.renderer.write(self.report, stream)
        else:
            stream.write(self.text)


def run_conformance_report(
    config: BridgeConfig,
    *,
    format: str = "html",
    period: str | None = None,
    since: str | None = None,
    until: str | None = None,
    units: tuple[str, ...] = (),
    discovery: Path | None = None,
    save_discovery_to: Path | None = None,
    live: bool = True,
    fail_under: float | None = None,
    host: PluginHost | None = None,
    exceptions: tuple[Path, ...] = (),
    record: bool = False,
    prepared_by: str | None = None,
    argv: Sequence[str] = (),
    sample_size: int | None = None,
    seed: str = "0",
    sample_files: tuple[Path, ...] = (),
    register: Path | None = None,
) -> ReportRun:
    """Build and render a conformance report for the config's store.

    :param units: report on these units only (all when empty).
    :param discovery: a saved discovery (vocabularies by instance) for offline mapping checks.
    :param live: ask the connectors of instances the saved discovery does not cover.
    :param fail_under: the enterprise score below which ``below_threshold`` is set.
    :param sample_size: list this many items of each check's population per unit, drawn
        reproducibly with ``seed`` (:mod:`usm_bridge.conformance.sampling`).
    :param exceptions: the exceptions export files the caller will write
        (:func:`usm_bridge.conformance.exceptions_export.write_exports`); the report names them.
    :param record: keep the scores in the store for later trends
        (:mod:`usm_bridge.conformance.trends`); needs a period with both ends.
    :param prepared_by: the name in the sign-off block's "prepared by".
    :param register: the accepted-exceptions register to apply; without it, the one the
        config names (``[conformance] exceptions_register``), if any.
    :param argv: the command line, recorded (secret-like values masked) in the provenance.
    :raises ConfigurationError: an unknown format or unit, a bad period or discovery file, an
        export file whose suffix is neither ``.csv`` nor ``.xlsx``, a threshold for a check
        that takes none, a sample size below 1.
    """
    host = host or PluginHost()
    renderers = host.report_renderers()
    renderer = renderers.get(format)
    if renderer is None:
        raise ConfigurationError(
            f"no report renderer for format {format!r}",
            expected=f"one of {', '.join(sorted(renderers)) or 'none installed'}",
        )
    check_export_paths(exceptions)
    check_threshold_ids(config.conformance, thresholded_checks(host), config.path)
    register_path = register or register_of(config)
    accepted = load_register(register_path) if register_path is not None else None
    if accepted is not None:
        accepted.check_ids({check.id for check in host.conformance_checks()})
    if sample_size is not None and sample_size < 1:
        raise ConfigurationError(f"--sample {sample_size}: a sample holds at least one item")
    check_export_paths(sample_files, "--samples")
    if sample_files and sample_size is None:
        raise ConfigurationError("--samples FILE writes the samples: say how many with --sample N")
    if fail_under is not None and not 0 <= fail_under <= 100:
        raise ConfigurationError(f"--fail-under {fail_under:g} is not a score from 0 to 100")
    now = utcnow()
    chosen = parse_period(period, since, until, now=now)
    if record:
        check_recordable(chosen, whole=not units)
    unknown = [unit for unit in units if unit not in config.units]
    if unknown:
        raise ConfigurationError(
            f"unknown unit {unknown[0]!r}", expected=f"one of {', '.join(config.units)}"
        )
    if units:
        config = config.model_copy(
            update={
                "units": {name: u for name, u in config.units.items() if name in units},
                "instances": {n: i for n, i in config.instances.items() if i.unit in units},
                "routes": [r for r in config.routes if {r.from_unit, r.to_unit} & set(units)],
            }
        )
    # Imported here: the composition root brings the sync engine, which a report never runs.
    from ..runtime import open_runtime

    saved = load_discovery(discovery) if discovery is not None else {}
    with open_runtime(config, host=host, readonly=True) as runtime:
        vocabularies = discover_vocabularies(
            config, host, saved, live=live, instances=runtime.instances
        )
        if save_discovery_to is not None:
            save_discovery(
                {name: vocab for name, (vocab, _, _) in vocabularies.items() if vocab is not None},
                save_discovery_to,
            )

        def report_of(span: Period) -> ConformanceReport:
            context = build_context(
                runtime.store,
                config,
                span,
                host=host,
                vocabularies=vocabularies,
                now=now,
                only_units=units or None,
                instances=runtime.instances,
            )
            if sample_size is not None and span is chosen:  # the previous periods draw none
                context.sample = SampleRequest(size=sample_size, seed=seed)
            return build_report(context, host, register=accepted)

        report = report_of(chosen)
        provenance = build_provenance(config, argv, register_path)
        report.trends = build_trends(
            report,
            chosen,
            runtime.store,
            now=now,
            compute=report_of,
            record=record,
            config_digest=provenance.config_digest,
            whole=not units,
        )
    report.provenance = provenance
    report.sign_off = SignOff(prepared_by=prepared_by)
    report.exception_exports = [str(path) for path in exceptions]
    score = report.enterprise.score
    below = fail_under is not None and (score is None or score < fail_under)
    return ReportRun(report=report, renderer=renderer, format=format, below_threshold=below)


def register_of(config: BridgeConfig) -> Path | None:
    """The register the config names, relative to the config file's folder."""
    named = config.conformance.exceptions_register
    if named is None:
        return None
    base = config.base_dir
    return named if base is None or named.is_absolute() else base / named


def write_output(path: Path, text: str | ReportRun) -> None:
    """Write a rendered report (a run's is streamed: :meth:`ReportRun.write`), creating its
    folder.

    :raises ConfigurationError: the file cannot be written (exit code 2).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as stream:
            if isinstance(text, ReportRun):
                text.write(stream)
            else:
                stream.write(text)
    except OSError as exc:
        raise ConfigurationError(f"cannot write: {exc.strerror}", where=str(path)) from None
