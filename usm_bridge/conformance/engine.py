"""Running the checks over a context and assembling the report (scores and the chain view)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from ..plugins import PluginHost
from .acceptance import apply_register
from .api import CheckOutcome, ConformanceCheck
from .call_feeds import CallFeed, FedCheck, read_pages
from .chain_feed import ChainFeed
from .context import ReportContext
from .process_views import ProcessViews
from .register import ExceptionsRegister
from .report import (
    ChainView,
    CheckInfo,
    ConformanceReport,
    InstanceSummary,
    PeriodInfo,
    UnitSummary,
)
from .scoring import rule, score, weigh
from .unreadable_calls import unreadable_check_info, unreadable_outcomes

__all__ = ["build_report", "chain_view", "run_checks"]

log = logging.getLogger(__name__)


def _describe(check: ConformanceCheck, plugin: str | None) -> CheckInfo:
    description = getattr(check, "description", None)
    if not isinstance(description, str):
        doc = (type(check).__doc__ or "").strip()
        description = doc.split("\n\n")[0].replace("\n", " ") if doc else ""
    return CheckInfo(id=check.id, title=check.title, description=description, plugin=plugin)


def _plugin_names(host: PluginHost) -> dict[str, str]:
    names: dict[str, str] = {}
    for impl in host.pm.hook.usm_bridge_conformance_checks.get_hookimpls():
        contributed = cast("list[ConformanceCheck]", impl.function())
        for check in contributed:
            names.setdefault(check.id, impl.plugin_name)
    return names


def run_checks(
    context: ReportContext,
    checks: Sequence[ConformanceCheck],
    feeds: Sequence[CallFeed] = (),
) -> list[CheckOutcome]:
    """Every outcome of every check. A check that crashes fails with the reason, visibly.

    An audit report must not stop because one organisation's rule has a bug, and must not
    hide that the rule did not run either. The checks that read the calls as a feed
    (:class:`.call_feeds.FedCheck`, the built-in data checks) and ``feeds`` share one pass
    over the calls; the other checks run after it, each on its own.
    """
    fed = [check for check in checks if isinstance(check, FedCheck)]
    failures: dict[int, Exception] = {}

    def failed(feed: CallFeed, exc: Exception) -> None:
        if not any(feed is check for check in fed):
            raise exc  # a view of the report, not a check: the report cannot be made
        failures[id(feed)] = exc

    read_pages(context, [*fed, *feeds], failed)
    outcomes: list[CheckOutcome] = []
    for check in checks:
        try:
            if id(check) in failures:
                raise failures[id(check)]
            produced = list(
                check.finish(context) if isinstance(check, FedCheck) else check.run(context)
            )
            bad = [item for item in produced if not isinstance(item, CheckOutcome)]
            if bad:
                raise TypeError(f"run() returned {type(bad[0]).__name__}, not CheckOutcome")
        except Exception as exc:
            log.warning(
                "conformance check %s failed: %s: %s",
                check.id,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            outcomes.append(
                CheckOutcome(
                    check_id=check.id,
                    title=check.title,
                    verdict="fail",
                    summary=f"the check could not run: {type(exc).__name__}: {exc}"[:500],
                )
            )
            continue
        for outcome in produced:
            if outcome.check_id != check.id:
                outcome = outcome.model_copy(update={"check_id": check.id})
            outcomes.append(outcome)
    return outcomes


def chain_view(context: ReportContext, unit_scores: dict[str, float | None]) -> ChainView:
    """The units as links and the routes between them, with volume and median hand-off time.

    A route's hand-off time for one supplier call is the time from the upstream call's
    registration in its tool to the supplier call's registration in the supplier's tool.
    """
    chain = ChainFeed()
    run_checks(context, [], [chain])
    return chain.view(context, unit_scores)


def build_report(
    context: ReportContext,
    host: PluginHost | None = None,
    checks: Sequence[ConformanceCheck] | None = None,
    register: ExceptionsRegister | None = None,
) -> ConformanceReport:
    """Run the checks (the host's, unless given) and assemble the report.

    :param register: the accepted-exceptions register to apply before scoring (expiry is
        judged on the context's ``now``).
    """
    if checks is None:
        host = host or context.host or PluginHost()
        checks = host.conformance_checks()
    plugins = _plugin_names(host) if host is not None else {}
    views, chain = ProcessViews(), ChainFeed()
    ran = run_checks(context, checks, [views, chain])
    unreadable = unreadable_outcomes(context)
    ran += unreadable
    applied = apply_register(ran, register, context.now.date()) if register else None
    outcomes = [weigh(outcome) for outcome in ran]
    units = []
    scores: dict[str, float | None] = {}
    for name in context.unit_names():
        unit_score = score(o for o in outcomes if o.unit == name)
        scores[name] = unit_score.score
        units.append(
            UnitSummary(
                name=name,
                title=context.unit_title(name),
                score=unit_score,
                calls=context.call_count(name),
                instances=[
                    InstanceSummary(
                        name=info.name,
                        kind=info.kind,
                        mapping=info.mapping.name if info.mapping is not None else None,
                        vocabulary_source=info.vocabulary_source,
                        vocabulary_note=info.vocabulary_note,
                    )
                    for info in context.instances.values()
                    if info.unit == name
                ],
            )
        )
    return ConformanceReport(
        generated_at=context.now,
        period=PeriodInfo(
            since=context.period.since, until=context.period.until, label=context.period.label
        ),
        store=context.store_url,
        enterprise=score(outcomes),
        units=units,
        checks=[_describe(check, plugins.get(check.id)) for check in checks]
        + ([unreadable_check_info()] if unreadable else []),
        outcomes=outcomes,
        chain=chain.view(context, scores),
        process_views=views.views(context),
        scoring=rule(),
        sampling=context.sample.info() if context.sample is not None else None,
        exceptions_register=applied,
    )
