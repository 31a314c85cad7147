"""``bench/fill_store.py`` writes calls the product reads back as they were written: every call
validates against the model, keeps the store's content hash, is found by its identity and
agrees with its chain links (the scale benchmarks measure nothing the store could not hold)."""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa

from usm_bridge.store import Store
from usm_bridge.store import schema as t
from usm_bridge.store.store import content_hash

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store, validate_sample


def test_every_filled_call_reads_back_through_the_store(store_url: str) -> None:
    summary = fill_store(store_url, 300, seed=5)
    assert summary.calls == 300
    assert summary.rows["chain_links"] > 0
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        rows = tx.connection.execute(sa.select(t.calls.c.id, t.calls.c.content_hash)).all()
        assert len(rows) == 300
        for call_id, stored_hash in rows:
            stored = tx.get_call(call_id)
            assert stored is not None
            assert content_hash(stored.call) == stored_hash
            source = stored.call.source
            assert source is not None
            found = tx.find_call(source.instance, source.remote_id)
            assert found is not None and found.call.id == call_id
            link = tx.upstream_of(call_id)
            assert (link.upstream_call_id if link else None) == stored.call.chain.upstream
            assert [s.supplier_call_id for s in tx.suppliers_of(call_id)] == (
                stored.call.chain.suppliers
            )
    assert validate_sample(store_url, sample=50) > 0
