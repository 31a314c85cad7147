"""The IT unit of the demo from the real ServiceNow event log (UCI data set 498, CC BY 4.0).

Until the ServiceNow connector replays the log, the IT unit's store is filled here by the ingest
stage a sync cycle runs (:mod:`usm_bridge.sync.ingest`): every row of the export (one row per
update of an incident) is mapped through ``mappings/servicenow-incident-event-log.yaml`` and
stored in order, so the audit log
holds the incidents' real status history; a row that cannot be mapped is dead-lettered with
its reason. The tool's vocabulary is what the export itself shows (its display values).

The config has a second instance on the shipped default mapping
(``mappings/servicenow-incident.yaml``), checked against the same vocabulary: the report shows
what that default does not foresee.

Run as a script to regenerate ``docs/conformance-example.md``::

    .venv/bin/python tests/conformance/conformance_eventlog.py
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.context import build_context
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.report import ConformanceReport
from usm_bridge.connector import RawRecord, Vocabulary, VocabularyValue
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import open_runtime
from usm_bridge.store import Store

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "it-servicenow"
DEFAULT_INSTANCE = "it-servicenow-default"
_CSV_NAME = "servicenow-incident-event-log.csv"


def csv_path() -> Path:
    """The connector's copy of the log when it ships one, else the shared data set."""
    bundled = ROOT / "connectors" / "servicenow" / "usm_bridge_servicenow" / "data" / _CSV_NAME
    return bundled if bundled.exists() else ROOT.parent / "shared" / "data" / _CSV_NAME


def rows(limit: int | None = None) -> Iterator[dict[str, str]]:
    with csv_path().open(encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            if limit is not None and index >= limit:
                return
            yield row


CONFIG = f"""\
[store]
url = "{{url}}"

[units.it]
title = "IT service desk"

[instances.{INSTANCE}]
unit = "it"
kind = "servicenow"
mapping = "{SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml"}"

[instances.{DEFAULT_INSTANCE}]
unit = "it"
kind = "servicenow"
mapping = "{SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml"}"
enabled = false
"""


def vocabulary(limit: int | None = None) -> Vocabulary:
    """The values the export shows for the fields a mapping translates."""

    def distinct(column: str) -> list[VocabularyValue]:
        seen = dict.fromkeys(row[column] for row in rows(limit) if row[column] not in ("", "?"))
        return [VocabularyValue(value=value) for value in sorted(seen)]

    return Vocabulary(
        statuses=distinct("incident_state"),
        priorities=distinct("priority"),
        other={"impact": distinct("impact"), "urgency": distinct("urgency")},
    )


def build(root: Path, url: str, limit: int | None = None) -> BridgeConfig:
    """Write the config into ``root`` and fill the store at ``url`` from the log."""
    config_path = root / "usm-bridge.toml"
    config_path.write_text(CONFIG.format(url=url), encoding="utf-8")
    config = load_config(config_path)
    records = [
        RawRecord(remote_id=row["number"], remote_key=row["number"], data=dict(row))
        for row in rows(limit)
    ]
    # The ingest stage a sync cycle runs (map, merge, store, echo, route), on the whole log.
    with open_runtime(config) as runtime:
        for outcome in runtime.engine.ingest.ingest_page(INSTANCE, records):
            if outcome.stage is not None and outcome.reason is not None:
                payload = outcome.record.model_dump(mode="json")
                with runtime.store.begin() as tx:
                    tx.add_dead_letter(INSTANCE, outcome.stage, payload, outcome.reason)
    return config


def report(config: BridgeConfig, limit: int | None = None) -> ConformanceReport:
    """The report over the whole log, the vocabulary taken from the export."""
    vocab = vocabulary(limit)
    vocabularies = {name: (vocab, "file", None) for name in config.instances}
    host = PluginHost()
    with Store.open(config.store.url) as store:
        context = build_context(store, config, Period(), host=host, vocabularies=vocabularies)
    return build_report(context, host)


def main(out: Path = ROOT / "docs" / "conformance-example.md") -> None:
    import tempfile

    from usm_bridge.conformance.renderers import MarkdownRenderer

    with tempfile.TemporaryDirectory() as folder:
        config = build(Path(folder), f"sqlite:///{folder}/it.db")
        text = MarkdownRenderer().render(report(config))
    intro = (
        "# Conformance report: the IT unit on a real service desk's data\n\n"
        "What `usm-bridge report conformance --format markdown` says about the IT unit of the\n"
        "demo, whose data is the real ServiceNow incident event log in `shared/data` (UCI\n"
        "Machine Learning Repository data set 498, Amaral et al. 2018, CC BY 4.0): every row\n"
        "mapped through `mappings/servicenow-incident-event-log.yaml` and stored in order, so\n"
        "the audit log holds each incident's real status history. The tool's vocabulary is what\n"
        "the export shows. A second, disabled instance checks the shipped default mapping\n"
        "`mappings/servicenow-incident.yaml` against the same vocabulary.\n\n"
        "Regenerate with `.venv/bin/python tests/conformance/conformance_eventlog.py` (a test\n"
        "fails when this page no longer matches the code). Evidence lists show the first 50\n"
        "items; the JSON format and the exceptions export (`--exceptions FILE.csv` or `.xlsx`)\n"
        "list every one.\n\n"
        "## How to read it\n\n"
        "- **Population.** Each check says what it tested and how many (*Tested*): calls,\n"
        "  observed status moves (2,507 here for 890 incidents), a tool's values, a mapping's\n"
        "  fields, dead letters. *Exceptions* are the items that failed it; *Rate* is exceptions\n"
        "  over tested.\n"
        "- **Threshold and verdict.** A check on data passes while its rate is at most its\n"
        "  `pass_up_to`, warns up to `warn_up_to`, and fails above; each outcome names the\n"
        "  thresholds it used and where they came from (the check's default, or the config's\n"
        "  `[conformance.thresholds]` or `[conformance.units.NAME.thresholds]`). The defaults\n"
        "  accept no exception, except unclassified calls, which warn until they are two days\n"
        "  old. A mapping check keeps its own rule, which it states.\n"
        "- **Score and weight.** The rule is printed under *Scores*: an outcome judged on a rate\n"
        "  scores 100 x (1 - rate); its weight grows with its severity and with the log of its\n"
        "  population, so 890 unconfirmed closures weigh more than one missing optional field,\n"
        "  and every score can be recomputed from the table. More in\n"
        "  [conformance-scoring.md](conformance-scoring.md).\n"
        "- **Over time.** This page covers all time, so it has no previous period. A report for\n"
        "  a month or a quarter (`--period 2016-03`) compares each unit and check with the\n"
        "  period before it (from the scores `--record` kept in the store, else computed from\n"
        "  the data) and draws a trend line of up to 12 recorded periods in the HTML.\n"
        "- **Accepted exceptions.** A finding an unexpired entry of the accepted-exceptions\n"
        "  register (`[conformance] exceptions_register`, or `--register FILE`) covers is shown\n"
        "  apart, with its reason, approver and expiry, and leaves the rate, verdict and score;\n"
        "  expired and unmatched entries are listed as findings of their own. This page uses\n"
        "  none.\n"
        "- **Provenance.** The HTML and JSON name the versions, the SHA-256 of the config and\n"
        "  of each mapping, and the command; `-o FILE` also writes `FILE.sha256` for\n"
        "  `sha256sum -c`.\n\n"
        "## The report\n\n"
    )
    body = text.split("\n", 1)[1].replace("\n## ", "\n### ").replace("\n# ", "\n## ")
    out.write_text(intro + body.lstrip("\n"), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "conformance-example.md")
