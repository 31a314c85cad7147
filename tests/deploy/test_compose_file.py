"""compose.yaml against the Compose Specification's own JSON schema (vendored, see SOURCES.md),
and what it promises: the bridge waits for a healthy PostgreSQL and a finished schema upgrade,
secrets are files, the metrics port is on the host's loopback only, and the container's config
it mounts is valid and names only the secrets the services get."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from deploy_files import (
    CONTAINER_CONFIG,
    ROOT,
    compose,
    container_config,
    secret_files,
    stages,
)

from usm_bridge.cli import cli
from usm_bridge.mapping.files import shipped_mappings_dir

SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text(encoding="utf-8"))


def validate(document: dict[str, Any]) -> None:
    validator_class = jsonschema.validators.validator_for(SCHEMA)
    validator_class.check_schema(SCHEMA)
    validator_class(SCHEMA).validate(document)


def test_compose_yaml_follows_the_compose_specification() -> None:
    validate(compose())


def test_the_schema_refuses_what_compose_would_refuse() -> None:
    # The check above could only pass if the validator let anything through; it does not.
    broken = copy.deepcopy(compose())
    broken["services"]["bridge"]["depends_on"]["db"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError, match="service_ready"):
        validate(broken)
    misspelt = copy.deepcopy(compose())
    misspelt["services"]["bridge"]["secret"] = ["store-url"]
    with pytest.raises(jsonschema.ValidationError, match="secret"):
        validate(misspelt)


def test_postgresql_is_the_official_image_with_a_volume_and_a_pg_isready_healthcheck() -> None:
    document = compose()
    db = document["services"]["db"]
    assert db["image"].split(":")[0] == "postgres"
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready"
    (volume,) = db["volumes"]
    name, target = volume.split(":")[:2]
    assert name in document["volumes"]
    assert target == "/var/lib/postgresql/data"


def test_the_bridge_waits_for_a_healthy_db_and_a_finished_schema_upgrade() -> None:
    services = compose()["services"]
    assert services["bridge"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    assert services["bridge"]["command"] == ["daemon"]
    # The two run the same image, built from this repository's Dockerfile.
    assert migrate["image"] == services["bridge"]["image"]
    assert migrate["build"] == services["bridge"]["build"] == "."


def test_every_secret_is_a_file_and_the_password_never_an_environment_value() -> None:
    document = compose()
    for name, secret in document["secrets"].items():
        assert set(secret) == {"file"}, f"secret {name}: a file, not an environment variable"
        assert secret["file"].startswith("./deploy/compose/secrets/")
    for name, service in document["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert key.endswith("_FILE"), f"{name}: {key} holds a password"
                assert value.startswith("/run/secrets/")
                assert value.removeprefix("/run/secrets/") in service["secrets"]


def test_the_config_is_mounted_where_the_image_reads_it() -> None:
    document = compose()
    (env,) = [v for v in stages()[-1].values("ENV") if "USM_BRIDGE_CONFIG=" in v]
    config_path = env.split("USM_BRIDGE_CONFIG=", 1)[1].split()[0]
    for name in ("bridge", "migrate"):
        (mount,) = document["services"][name]["configs"]
        assert mount["target"] == config_path
        source = document["configs"][mount["source"]]["file"]
        assert (ROOT / source).resolve() == CONTAINER_CONFIG


def test_the_services_get_every_secret_the_config_names() -> None:
    services = compose()["services"]
    named = secret_files(container_config())
    assert named, "the container's config names its secrets as files"
    for path in named:
        assert path.startswith("/run/secrets/"), path
        for name in ("bridge", "migrate"):
            assert path.removeprefix("/run/secrets/") in services[name]["secrets"], (name, path)


def test_the_metrics_port_is_published_on_loopback_only() -> None:
    services = compose()["services"]
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert published, "the bridge publishes /healthz and /metrics"
    for name, port in published:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
        assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert "127.0.0.1:9464:9464" in services["bridge"]["ports"]


def test_the_state_lives_in_a_named_volume() -> None:
    document = compose()
    (volume,) = document["services"]["bridge"]["volumes"]
    name, target = volume.split(":")
    assert name in document["volumes"]
    assert target == "/var/lib/usm-bridge"


def test_the_containers_config_listens_on_every_interface_and_logs_json() -> None:
    daemon = container_config()["daemon"]
    assert daemon == {"listen": "0.0.0.0:9464", "log_format": "json"}
    assert container_config()["store"]["url"] == {"file": "/run/secrets/store-url"}


def test_the_containers_config_passes_check_offline(tmp_path: Path) -> None:
    # Its secrets and the image's mapping folder, moved to where this machine has them.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for path in secret_files(container_config()):
        (secrets / Path(path).name).write_text("not-a-real-secret\n", encoding="utf-8")
    store = tmp_path / "state" / "usm-bridge.db"
    (secrets / "store-url").write_text(f"sqlite:///{store}\n", encoding="utf-8")
    text = CONTAINER_CONFIG.read_text(encoding="utf-8").replace("/run/secrets/", f"{secrets}/")
    shipped = shipped_mappings_dir()
    assert shipped is not None
    (tmp_path / "mappings").symlink_to(shipped)  # as the image links them beside its config
    config = tmp_path / "usm-bridge.toml"
    config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--offline", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 units, 2 instances, 1 routes: valid" in result.output
    assert "not-a-real-secret" not in result.output


def test_the_workers_profile_runs_redis_a_scheduler_and_workers_on_the_same_db() -> None:
    services = compose()["services"]
    assert "profiles" not in services["bridge"]  # `docker compose up` still runs the daemon
    for name in ("redis", "scheduler", "worker"):
        assert services[name]["profiles"] == ["workers"], name
    assert services["scheduler"]["command"] == ["scheduler", "--wait"]
    assert services["worker"]["command"][0] == "worker"
    for name in ("scheduler", "worker"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }, name
        assert services[name]["image"] == services["bridge"]["image"]
        assert services[name]["secrets"] == services["bridge"]["secrets"]
    assert "ports" not in services["redis"]  # the broker stays on the compose network
    assert container_config()["workers"] == {"broker_url": "redis://redis:6379/0"}


def test_the_workers_profile_receives_events_with_serve_beside_the_workers() -> None:
    services = compose()["services"]
    events = services["events"]
    assert events["profiles"] == ["workers"]
    assert events["command"] == ["serve"]  # on [daemon] listen: the image's HEALTHCHECK port
    assert container_config()["daemon"]["listen"] == "0.0.0.0:9464"
    # The broker only: serve never opens the store.
    assert events["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert events["ports"] == ["127.0.0.1:9465:9464"]
    assert events["image"] == services["bridge"]["image"]
    assert events["secrets"] == services["bridge"]["secrets"]
    # The secret it checks deliveries with is a mounted file, as every other secret.
    jira = container_config()["instances"]["facilities-jira"]
    assert jira["webhook_secret"] == {"file": "/run/secrets/jira-webhook-secret"}
