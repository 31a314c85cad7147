"""With workers, a cycle with news enqueues the cycle of each event-driven instance that
receives its unit's supplier calls (as the daemon hints it): one waiting at most, whatever
the number of cycles that asked, and a broker that does not answer is logged, not raised."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from celery_workers.conftest import delete_queues
from celery_workers.test_serve import redis_url
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.sync.chain_hints import event_driven, supplier_instances
from usm_bridge.workers.app import make_app
from usm_bridge.workers.backlog import waiting
from usm_bridge.workers.tasks import wake_suppliers

__all__ = ["redis_url"]

CONFIG = """\
[store]
url = "sqlite:///bridge.db"

[units.fac]
[units.it]

[instances.fac-jira]
unit = "fac"
kind = "memory"
mapping = "m.yaml"

[instances.it-snow]
unit = "it"
kind = "servicenow"
mapping = "snow.yaml"
webhook_secret = "a-secret-for-the-test-0123456789"

[instances.it-snow.settings]
instance_url = "https://it.example.service-now.com"
tables = ["sc_req_item"]
username = "bridge"
password = "${{SNOW_PASSWORD_NOT_SET}}"

[[routes]]
from = "fac"
to = "it"
when = {{ call_type = ["service_request"] }}

[workers]
broker_url = "{broker_url}"
queue_prefix = "{prefix}"
"""


def _config(tmp_path: Path, broker_url: str) -> BridgeConfig:
    path = tmp_path / "usm-bridge.toml"
    prefix = f"t{uuid.uuid4().hex[:10]}.tool."
    path.write_text(CONFIG.format(broker_url=broker_url, prefix=prefix), encoding="utf-8")
    return load_config(path, tool_secrets=False, webhook_secrets=True)


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Iterator[BridgeConfig]:
    found = _config(tmp_path, redis_url)
    try:
        yield found
    finally:
        delete_queues(found)


def test_news_at_facilities_enqueues_one_cycle_of_its_event_driven_supplier(
    config: BridgeConfig,
) -> None:
    suppliers = supplier_instances(config, list(config.instances), event_driven(config))
    assert suppliers == {"fac-jira": frozenset({"it-snow"}), "it-snow": frozenset()}
    app = make_app(config)
    for _ in range(3):  # three cycles with news: still one cycle waiting
        wake_suppliers(app, config, sorted(suppliers["fac-jira"]))
    assert waiting(app, config, "it-snow") == 1
    assert waiting(app, config, "fac-jira") == 0


def test_a_broker_that_does_not_answer_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    app = make_app(config)
    app.conf.broker_connection_timeout = 1
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    caplog.set_level(logging.WARNING)
    wake_suppliers(app, config, ["it-snow"])
    found = [r for r in caplog.records if getattr(r, "event", None) == "wake_enqueue_failed"]
    assert len(found) == 1 and getattr(found[0], "instance", None) == "it-snow"
