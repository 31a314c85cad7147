"""What every check receives: one consistent snapshot of the store, the config and the period.

The snapshot is read in one read-only unit of work, so all checks of a report see the same data
even while the daemon keeps syncing. Checks ask it questions (``calls_of(unit)``,
``transitions_of(call_id)``, ``evidence(call, detail)``) instead of querying the store, which
keeps plugin checks short and makes them work on any back end.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import ValidationError
from pydantic_core import to_json

from ..agreements import Agreements
from ..call_view import CallView, StoredCallView
from ..config import BridgeConfig, RouteConfig
from ..connector import Vocabulary
from ..errors import ConfigurationError, UsmBridgeError
from ..http import redact_text
from ..lifecycle import PriorityMatrix
from ..mapping import Mapping
from ..model import Status, Unit, utcnow
from ..plugins import PluginHost
from ..store import AuditEvent, ChainLink, DeadLetter, Identity, Store, StoredCall
from ..store import schema as tables
from .api import Evidence
from .call_stream import CallPage, CallSource, LinkedBy, Transition
from .evidence_spool import EvidenceSpool, SpooledEvidence
from .period import Period
from .registry_answers import RegistryAnswers, remember
from .related_rows import EventView, IdentityView, LinkView
from .sampling import SampleRequest
from .stored_rows import UnreadableCall
from .thresholds import ConformanceSettings

if TYPE_CHECKING:
    from ..sync.instances import InstanceRegistry

__all__ = [
    "InstanceInfo",
    "ReportContext",
    "Transition",
    "build_context",
    "discover_vocabularies",
    "load_discovery",
    "parsed_safe_link",
    "safe_link",
    "save_discovery",
]

log = logging.getLogger(__name__)

#: Largest discovery file read (a vocabulary is a few hundred values per instance).
MAX_DISCOVERY_BYTES = 20_000_000


#: ``http(s)://`` and a host of plain characters, then a path, query or fragment or nothing:
#: what ``urlsplit`` would take as such a URL (no brackets, no user info, nothing to strip),
#: with no character anywhere that makes a link unsafe.
_PLAIN_LINK = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#][^\x00\r\n\t ]*)?\Z")


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an absolute ``http``/``https`` URL, else ``None`` (never a link).

    Ticket data decides these URLs: ``javascript:``, ``data:`` and relative URLs must never
    become clickable in a report.
    """
    if url and _PLAIN_LINK.match(url):
        # The shape nearly every tool's link has (a report lists a link per exception, up
        # to millions): plainly an absolute http(s) URL with a host, no need to parse it.
        return url
    return parsed_safe_link(url)


def parsed_safe_link(url: str | None) -> str | None:
    """:func:`safe_link` without its quick path: ``url`` parsed whatever its shape."""
    if not url or any(ch in url for ch in "\x00\r\n\t "):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


@dataclass
class InstanceInfo:
    """A connector instance as the report sees it: its mapping and the tool's vocabulary."""

    name: str
    unit: str
    kind: str
    mapping: Mapping | None = None
    #: Why the mapping could not be loaded, when it could not.
    mapping_error: str | None = None
    vocabulary: Vocabulary | None = None
    #: ``live`` (asked through ``discover()``), ``file`` (a saved discovery) or ``none``.
    vocabulary_source: str = "none"
    #: Why there is no vocabulary, when there is none.
    vocabulary_note: str | None = None
    #: Seconds between the instance's sync cycles (what "older than a cycle" means).
    interval: float = 60.0


#: How :meth:`ReportContext.evidence_json` starts, up to the detail's value, and where that
#: value ends in the text of an evidence with an empty detail ("": two characters).
_DETAIL_START = '{\n  "detail": '
_DETAIL_END = len(_DETAIL_START) + 2
#: How that text ends when the evidence has no time of its own.
_AT_NULL = "null\n}"


@dataclass
class ReportContext:
    """The snapshot checks read. Build it with :func:`build_context` (or directly in tests)."""

    period: Period
    now: datetime
    units: dict[str, Unit]
    instances: dict[str, InstanceInfo]
    routes: list[RouteConfig]
    priority: PriorityMatrix
    calls: list[StoredCall]
    audit: list[AuditEvent]
    dead_letters: list[DeadLetter]
    chain_links: list[ChainLink]
    identities: list[Identity]
    host: PluginHost | None = None
    store_url: str | None = None
    #: The ``[conformance]`` settings (thresholds per check and unit).
    conformance: ConformanceSettings = field(default_factory=ConformanceSettings)
    #: ``--sample N --seed S``: checks list a sample of their population.
    sample: SampleRequest | None = None
    #: The config's services and agreements (which agreement allows implicit confirmation).
    agreements: Agreements | None = None
    #: Where the calls are read page by page (see :mod:`.call_stream`); ``None``: the lists
    #: above hold the whole snapshot.
    source: CallSource | None = None
    #: Where the checks keep the evidence of their exceptions (on disk, not in memory).
    spool: EvidenceSpool = field(default_factory=EvidenceSpool)
    _by_unit: dict[str, list[CallView]] = field(default_factory=dict, init=False, repr=False)
    _page: CallPage = field(default_factory=lambda: CallPage(calls=[]), init=False, repr=False)
    _page_units: dict[str, list[CallView]] = field(default_factory=dict, init=False, repr=False)
    #: Units the data names, in the order their first call comes (a streamed pass finds them).
    _data_units: list[str] | None = field(default=None, init=False, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    #: The stored calls the model refused, as the last pass found them.
    _unreadable: list[UnreadableCall] = field(default_factory=list, init=False, repr=False)
    _answers: RegistryAnswers | None = field(default=None, init=False, repr=False)
    #: The current page's calls' evidence as JSON after its detail (:meth:`evidence_json`).
    _evidence_tails: dict[str, tuple[CallView, str]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Each detail's JSON, opening brace before it (:meth:`evidence_json`): a check's findings
    #: mostly read alike ("no service"), so each is written once, not once per finding.
    _evidence_heads: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.agreements is None:
            self.agreements = Agreements(
                services={}, agreements={}, units=self.units, default_matrix=self.priority
            )
        if self.source is not None:
            return
        # The whole snapshot is one page.
        self._set_page(
            CallPage.of(
                self.calls,
                self.audit,
                self.identities,
                [LinkedBy(order, link) for order, link in enumerate(self.chain_links)],
            )
        )
        self._by_unit = self._page_units
        self._data_units = list(dict.fromkeys(stored.call.unit for stored in self.calls))
        self._counts = {unit: len(calls) for unit, calls in self._by_unit.items()}

    @property
    def registry(self) -> Agreements:
        """The registered services and agreements (see :mod:`usm_bridge.agreements`)."""
        assert self.agreements is not None  # set in __post_init__
        return self.agreements

    @property
    def answers(self) -> RegistryAnswers:
        """The registry's answers about calls, kept by the fields each reads (the same as
        asking :attr:`registry`, once per distinct call: :mod:`.registry_answers`)."""
        found = self._answers
        if found is None or found.registry is not self.registry or found.routes is not self.routes:
            found = self._answers = RegistryAnswers(self.registry, self.routes)
        return found

    # -- the pass over the calls ------------------------------------------------------------

    def pages(self) -> Iterator[CallPage]:
        """Every call, a page at a time, oldest first; while a page is out, the questions
        about calls (``transitions_of``, ``identities_of``, ``call``, ``link_of``) are
        answered for its calls and the calls they name."""
        if self.source is None:
            yield self._page
            return
        seen: dict[str, None] = {}
        counts: Counter[str] = Counter()
        unreadable: list[UnreadableCall] = []
        for page in self.source.pages():
            self._set_page(page)
            seen.update((stored.call.unit, None) for stored in page.calls)
            seen.update((bad.unit, None) for bad in page.unreadable)
            counts.update({unit: len(calls) for unit, calls in self._page_units.items()})
            unreadable += page.unreadable
            yield page
        self._data_units, self._counts = list(seen), dict(counts)
        self._unreadable = unreadable
        # The pass read its calls as their facts: a question asked after it (a plugin's
        # check) is answered with whole calls, read for it.
        self._set_page(CallPage(calls=[]))

    def unreadable_calls(self) -> list[UnreadableCall]:
        """The stored calls the model refuses, oldest first (found by a pass over the calls,
        made here if none was): the report lists each as an exception."""
        self._passed()
        return list(self._unreadable)

    def page_stored_calls(self) -> list[StoredCallView]:
        """The current page's calls, in or out of the period."""
        return self._page.calls

    def page_calls(self) -> dict[str, list[CallView]]:
        """The current page's calls whose life in the tool overlaps the period, by unit."""
        return self._page_units

    def _set_page(self, page: CallPage) -> None:
        self._page = page
        self._evidence_tails = {}
        by_unit: dict[str, list[CallView]] = defaultdict(list)
        for stored in page.calls:
            call = stored.call
            if self.period.overlaps(call.created, call.updated):
                by_unit[call.unit].append(call)
        self._page_units = dict(by_unit)

    def _passed(self) -> None:
        # What a pass finds (the units and their counts) is asked before any pass was made.
        if self._data_units is None:
            for _ in self.pages():
                pass

    # -- units and instances --------------------------------------------------------------

    def unit_names(self) -> list[str]:
        """Every unit: those configured, then those only the data names, sorted."""
        self._passed()
        seen = dict.fromkeys(self.units)
        for unit in self._data_units or ():
            seen.setdefault(unit)
        for instance in self.instances.values():
            seen.setdefault(instance.unit)
        return list(seen)

    def unit_title(self, unit: str) -> str:
        configured = self.units.get(unit)
        return (configured.title if configured and configured.title else None) or unit

    def unit_of_instance(self, instance: str) -> str | None:
        info = self.instances.get(instance)
        return info.unit if info is not None else None

    # -- calls ----------------------------------------------------------------------------

    def calls_of(self, unit: str) -> list[CallView]:
        """The unit's calls whose life in the tool overlaps the period, oldest first.

        A streamed snapshot reads them for this question (all of the unit's calls in memory):
        the built-in checks take them page by page through :meth:`pages` instead.
        """
        if self.source is None:
            return list(self._by_unit.get(unit, []))
        self._set_page(self.source.unit_page(unit))
        return list(self._page_units.get(unit, []))

    def call_count(self, unit: str) -> int:
        """How many of the unit's calls overlap the period."""
        self._passed()
        return self._counts.get(unit, 0)

    def all_calls_in_period(self) -> list[CallView]:
        if self.source is None:
            return [call for unit in self._by_unit.values() for call in unit]
        return [call for _ in self.pages() for calls in self._page_units.values() for call in calls]

    def call(self, call_id: str) -> CallView | None:
        """Any stored call by canonical id (in the period or not)."""
        found = self._page.by_id.get(call_id)
        if found is None and self.source is not None and call_id:
            found = self.source.call(call_id)
        return found

    def transitions_of(self, call_id: str) -> list[Transition]:
        """The call's status changes in the audit log, in the order they were recorded."""
        return list(self._page.transitions.get(call_id, []))

    def identities_of(self, call_id: str) -> list[IdentityView]:
        return list(self._page.identities.get(call_id, []))

    def transitions_view(self, call_id: str) -> Sequence[Transition]:
        """:meth:`transitions_of` without the copy, for a caller that only reads it (the
        report's own feeds ask it of every call)."""
        return self._page.transitions.get(call_id, ())

    def identities_view(self, call_id: str) -> Sequence[IdentityView]:
        """:meth:`identities_of` without the copy, for a caller that only reads it."""
        return self._page.identities.get(call_id, ())

    def audit_of(self, call_id: str) -> list[EventView]:
        """The call's audit events, in the order they were appended."""
        return list(self._page.audit.get(call_id, []))

    def page_events(self) -> Iterator[EventView]:
        """The audit events of the current page's calls (each call's in the order appended)."""
        return self._page.events()

    def link_of(self, supplier_call_id: str) -> LinkView | None:
        """The chain link that names the call as a supplier call, if one does."""
        linked = self.linked_by(supplier_call_id)
        return linked.link if linked is not None else None

    def linked_by(self, supplier_call_id: str) -> LinkedBy | None:
        """The call's chain link as a supplier call, with its place among all links."""
        return self._page.links.get(supplier_call_id)

    def dead_letters_in_period(self, status: str = "open") -> list[DeadLetter]:
        """Dead letters created in the period with this status (open, resolved, dismissed)."""
        return [
            letter
            for letter in self.dead_letters
            if letter.status.value == status and self.period.contains(letter.created_at)
        ]

    # -- evidence -------------------------------------------------------------------------

    def evidence_list(self) -> SpooledEvidence:
        """An empty list of evidence kept in the report's spool (:mod:`.evidence_spool`):
        for a check that may find as many exceptions as there are calls."""
        return self.spool.new_list()

    def evidence(self, call: CallView, detail: str) -> Evidence:
        """Evidence naming the call by its key in its tool, linked to the tool's page."""
        return Evidence(**self._evidence_fields(call, detail))

    def evidence_json(self, call: CallView, detail: str, at: datetime | None = None) -> str:
        """``evidence(call, detail)`` with ``at`` set, as ``model_dump_json(indent=2)`` writes
        it (what the spool keeps), without building the model (a report over a million calls
        writes well over a million of these, several checks' of one call).

        pydantic-core's serializer given the same values in the model's field order writes the
        same text; JSON writes each value on its own, so the text after the detail, the same
        for every finding about the call, is written once per call of the page.
        """
        kept = self._evidence_tails.get(call.id)
        if kept is None or kept[0] is not call:
            written = to_json(self._evidence_fields(call, ""), indent=2).decode()
            # '{\n  "detail": ""' then the rest: ',\n  "call_id": ...,\n  "at": null\n}'
            kept = self._evidence_tails[call.id] = (call, written[_DETAIL_END:])
        tail = kept[1]
        if at is not None:
            tail = tail[: -len(_AT_NULL)] + to_json(at).decode() + "\n}"
        head = self._evidence_heads.get(detail)
        if head is None:
            # Bounded: a detail may name its call (an age, an audit event), then no two agree.
            head = remember(self._evidence_heads, detail, _DETAIL_START + to_json(detail).decode())
        return head + tail

    def _evidence_fields(self, call: CallView, detail: str) -> dict[str, Any]:
        """The fields of the call's evidence, in :class:`Evidence`'s order (``at`` last)."""
        key = url = None
        source = call.source
        if source is not None:
            key = source.remote_key or source.remote_id
            url = source.url
        if url is None or key is None:
            for identity in self.identities_view(call.id):
                key = key or identity.remote_key or identity.remote_id
                url = url or identity.url
        return {
            "detail": detail,
            "call_id": call.id,
            "remote_key": key,
            "url": safe_link(url),
            "title": call.title[:200],
            "instance": source.instance if source is not None else None,
            "opened": call.created,
            # A tool that does not say when it closed a call closed it at its last change.
            "closed": call.closed
            or (call.updated if call.status in (Status.CLOSED, Status.CANCELLED) else None),
            "at": None,
        }


# -- discovery --------------------------------------------------------------------------------


def load_discovery(path: Path) -> dict[str, Vocabulary]:
    """A saved discovery: ``{"INSTANCE": <Vocabulary as JSON>, ...}``.

    :raises ConfigurationError: the file cannot be read or is not in that shape.
    """
    try:
        if path.stat().st_size > MAX_DISCOVERY_BYTES:
            raise ConfigurationError(f"larger than {MAX_DISCOVERY_BYTES} bytes", where=str(path))
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read: {exc.strerror}", where=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"not a JSON file: {exc}", where=str(path)) from None
    if not isinstance(raw, dict):
        raise ConfigurationError(
            "a discovery file is an object of vocabularies by instance name",
            where=str(path),
            expected='{"it-servicenow": {"statuses": [{"value": "1", "label": "New"}]}}',
        )
    found = {}
    for name, body in raw.items():
        try:
            found[str(name)] = Vocabulary.model_validate(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(part) for part in first["loc"])
            raise ConfigurationError(
                f"instance {name!r}: {loc}: {first['msg']}", where=str(path)
            ) from None
    return found


def save_discovery(vocabularies: dict[str, Vocabulary], path: Path) -> None:
    """Write vocabularies in the shape :func:`load_discovery` reads."""
    data = {name: vocab.model_dump(mode="json") for name, vocab in sorted(vocabularies.items())}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def discover_vocabularies(
    config: BridgeConfig,
    host: PluginHost,
    saved: dict[str, Vocabulary] | None = None,
    *,
    live: bool = True,
    instances: InstanceRegistry | None = None,
) -> dict[str, tuple[Vocabulary | None, str, str | None]]:
    """Each instance's vocabulary as ``(vocabulary, source, note)``.

    A saved discovery is used for the instances it names (the auditor asked for it, and it
    works offline); the others are asked live through ``discover()``. A connector that cannot
    be built or reached leaves the instance without a vocabulary, with the reason.

    :param instances: the registry whose connectors to ask (one is built, and its connectors
        closed, when not given).
    """
    saved = saved or {}
    result: dict[str, tuple[Vocabulary | None, str, str | None]] = {}
    registry = instances if instances is not None else _registry(config, host)
    try:
        for name in config.instances:
            if name in saved:
                result[name] = (saved[name], "file", None)
            elif not live:
                result[name] = (None, "none", "no saved discovery for this instance")
            else:
                result[name] = _discover_live(name, registry)
    finally:
        if instances is None:  # built here: its connectors are closed here
            registry.close()
    return result


def _registry(config: BridgeConfig, host: PluginHost | None) -> InstanceRegistry:
    # Imported here: the sync package is not needed to read a report's snapshot otherwise.
    from ..plugins import default_host
    from ..sync.instances import InstanceRegistry

    return InstanceRegistry(config, host or default_host())


def _discover_live(
    name: str, instances: InstanceRegistry
) -> tuple[Vocabulary | None, str, str | None]:
    try:
        # Invalid settings are a ConfigurationError that names each setting, never its value
        # (pydantic's own message quotes the values, secrets among them, into the report).
        connector = instances.connector(name)
    except UsmBridgeError as exc:
        return None, "none", f"connector not available: {_first_line(exc)}"
    except Exception as exc:  # a connector's constructor bug must not stop the audit report
        log.warning(
            "building the connector of %s failed: %s", name, _first_line(exc), exc_info=_debug()
        )
        return None, "none", f"connector not available: {_first_line(exc)}"
    try:
        with instances.lock(name):
            return connector.discover(), "live", None
    except Exception as exc:  # a connector's bug must not stop the audit report
        # A tool that is down is no bug: one line; the traceback only with --debug.
        log.warning("discover() of %s failed: %s", name, _first_line(exc), exc_info=_debug())
        return None, "none", f"discover() failed: {_first_line(exc)}"


def _debug() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def _first_line(exc: BaseException) -> str:
    # A connector's own message may quote a URL with its credentials: the report is read by
    # auditors, so it gets what the logs get, masked.
    text = redact_text(str(exc)).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- building the snapshot ----------------------------------------------------------------------


def _instances(
    config: BridgeConfig,
    vocabularies: dict[str, tuple[Vocabulary | None, str, str | None]],
    registry: InstanceRegistry,
) -> dict[str, InstanceInfo]:
    infos = {}
    for name, inst in config.instances.items():
        info = InstanceInfo(name=name, unit=inst.unit, kind=inst.kind, interval=inst.interval)
        try:
            info.mapping = registry.mapping(name)
        except ConfigurationError as exc:
            info.mapping_error = str(exc)
        vocab, source, note = vocabularies.get(name, (None, "none", "not discovered"))
        info.vocabulary, info.vocabulary_source, info.vocabulary_note = vocab, source, note
        infos[name] = info
    return infos


def _all(rows: Iterable[sa.RowMapping]) -> Iterator[dict[str, object]]:
    for row in rows:
        yield dict(row)


def build_context(
    store: Store,
    config: BridgeConfig,
    period: Period,
    *,
    host: PluginHost | None = None,
    vocabularies: dict[str, tuple[Vocabulary | None, str, str | None]] | None = None,
    now: datetime | None = None,
    only_units: Collection[str] | None = None,
    instances: InstanceRegistry | None = None,
) -> ReportContext:
    """The snapshot every check works on: its calls are read page by page when the report is
    built (:mod:`.call_stream`, one read-only unit of work), through the store's engine.

    :param only_units: keep only these units' calls, and the dead letters of their instances.
    :param instances: the registry whose mappings to check (one is built when not given).
    """
    source = None if _in_memory(store) else CallSource(store.engine, units=only_units)
    calls: list[StoredCall] = []
    audit: list[AuditEvent] = []
    links: list[ChainLink] = []
    identities: list[Identity] = []
    with store.begin(readonly=True) as tx:
        letters = tx.list_dead_letters(status=None)
        if source is None:
            calls, audit = tx.list_calls(), tx.list_audit()
            links, identities = _links_and_identities(tx.connection)
    if only_units is not None:
        wanted = set(only_units)
        calls = [stored for stored in calls if stored.call.unit in wanted]
        mine = {name for name, inst in config.instances.items() if inst.unit in wanted}
        letters = [letter for letter in letters if letter.instance in mine]
    return ReportContext(
        period=period,
        now=now or utcnow(),
        units=dict(config.units),
        instances=_instances(config, vocabularies or {}, instances or _registry(config, host)),
        routes=list(config.routes),
        priority=config.priority,
        calls=calls,
        audit=audit,
        dead_letters=letters,
        chain_links=links,
        identities=identities,
        host=host,
        store_url=store.display_url,
        conformance=config.conformance,
        agreements=Agreements.of(config),
        source=source,
    )


def _in_memory(store: Store) -> bool:
    """Whether the store lives in its engine's memory (gone once the store is closed, so the
    snapshot is read whole while it is open)."""
    url = store.engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _links_and_identities(conn: sa.Connection) -> tuple[list[ChainLink], list[Identity]]:
    links = [
        ChainLink.from_row(row)
        for row in _all(
            conn.execute(sa.select(tables.chain_links).order_by(tables.chain_links.c.id)).mappings()
        )
    ]
    identities = [
        Identity.model_validate(row)
        for row in _all(
            conn.execute(sa.select(tables.identities).order_by(tables.identities.c.id)).mappings()
        )
    ]
    return links, identities
