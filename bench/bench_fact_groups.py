"""What the report's SQL path (issue #17, stage 2) would cost: grouped queries over the fact
columns of store revision 0016, timed on a filled store.

    .venv/bin/python bench/bench_fact_groups.py --store sqlite:///store-100k.db
    .venv/bin/python bench/bench_fact_groups.py --store postgresql+psycopg://127.0.0.1/test

Not the report: the queries a data check would send instead of judging every call in Python.
For each check whose verdict is a function of some columns (its *judgement key*: the fields its
rule and the registry's answers read, as ``checks.py`` and ``registry_answers.py`` key them),
one ``GROUP BY unit, key`` gives every distinct key with its number of calls: each key would be
judged once, on a representative call, and the counts give the population and the metrics.
Then the evidence rows of one kind of finding (the calls naming no agreement), in the pass's
order, as a check would read them only for its failing keys. Printed per query: the rows it
returns, the wall time and this process's CPU (on PostgreSQL the server's is not counted).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import sqlalchemy as sa

from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store import schema as t

_c = t.calls.c

#: Each data check's judgement key (the columns its verdict reads besides the unit).
KEYS: dict[str, tuple[sa.ColumnElement[object], ...]] = {
    # _priority_key: the registry's fields, then impact, urgency, priority.
    "data.priority": (
        _c.agreement, _c.customer_unit, _c.service, _c.impact, _c.urgency, _c.priority
    ),
    # ServiceAgreementCheck.tally: the registry's fields and the call's type.
    "data.service-agreement": (_c.agreement, _c.customer_unit, _c.service, _c.call_type),
    # ClassifiedCheck: the type (the age of each unclassified call is its own: evidence rows).
    "data.classified": (_c.call_type,),
}  # fmt: skip

#: The columns of a finding's evidence (``ReportContext._evidence_fields``).
EVIDENCE = (
    _c.id, _c.source_remote_key, _c.source_remote_id, _c.source_url, _c.title,
    _c.source_instance, _c.tool_created, _c.tool_closed, _c.tool_updated, _c.status,
)  # fmt: skip


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(conn: sa.Connection, name: str, query: sa.Select[tuple[object, ...]]) -> None:
    wall, cpu = time.perf_counter(), _cpu()
    rows = conn.execute(query).all()
    figures = {
        "query": name,
        "rows": len(rows),
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(_cpu() - cpu, 3),
    }
    if rows and isinstance(rows[0][-1], int):
        figures["calls"] = sum(int(row[-1]) for row in rows)
    print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", metavar="URL", required=True, help="a store at revision 0016")
    args = parser.parse_args()
    with (
        Store.open(args.store, schema=SchemaPolicy.INSPECT) as store,
        store.engine.connect() as conn,
    ):
        total = conn.execute(sa.select(sa.func.count()).select_from(t.calls)).scalar_one()
        print(json.dumps({"store": store.display_url, "calls": total}), flush=True)
        for check, key in KEYS.items():
            grouped = (
                sa.select(_c.unit, *key, sa.func.count())
                .group_by(_c.unit, *key)
                .where(_c.facts.is_not(None))
            )
            _timed(conn, f"{check}: GROUP BY unit + key", grouped)
        evidence = (
            sa.select(*EVIDENCE)
            .where(_c.agreement.is_(None), _c.facts.is_not(None))
            .order_by(_c.created_at, _c.id)
        )
        _timed(conn, "evidence: calls naming no agreement, in the pass's order", evidence)


if __name__ == "__main__":
    main()
