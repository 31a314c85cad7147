"""The image itself, where a container engine answers (`docker info` succeeds): it builds, runs
as its fixed non-root user, and its HEALTHCHECK turns the container healthy with the
container's config shape (a mailbox on a Maildir as the one instance, since no real tool
answers in a test). Elsewhere these skip and say why; the Dockerfile is still read and its
steps run by test_dockerfile.py and test_container_runtime.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_files import IMAGE_PREFIX, ROOT, container_config, machine_cannot

#: A hang, not a slow machine: building the image fetches every dependency once.
BUILD_TIMEOUT = 1800
#: How long the container may take to turn healthy or unhealthy (its start period and more).
HEALTH_DEADLINE = 180


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        machine_cannot("no docker CLI, so no image can be built")
    return subprocess.run(
        [docker, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        machine_cannot(f"no container engine answers `docker info` ({reason})")
    tag = f"usm-bridge-test:{uuid.uuid4().hex[:12]}"
    built = _docker("build", "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    yield tag
    _docker("image", "rm", "--force", tag)


def test_the_image_runs_as_its_fixed_user(image: str) -> None:
    ran = _docker("run", "--rm", "--entrypoint", "id", image)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:2] == ["uid=10001(usm-bridge)", "gid=10001(usm-bridge)"]


def test_the_healthcheck_turns_the_container_healthy(image: str, tmp_path: Path) -> None:
    port = container_config()["daemon"]["listen"].rsplit(":", 1)[1]
    secrets, mail = tmp_path / "secrets", tmp_path / "mail"
    for folder in (secrets, mail / "cur", mail / "new", mail / "tmp"):
        folder.mkdir(parents=True)
        folder.chmod(0o777)  # the container's user (UID 10001) writes the Maildir's marks
    (secrets / "store-url").write_text(
        "sqlite:////var/lib/usm-bridge/usm-bridge.db\n", encoding="utf-8"
    )
    (secrets / "store-url").chmod(0o644)
    config = tmp_path / "usm-bridge.toml"
    config.write_text(
        f"""\
[store]
url = {{ file = "/run/secrets/store-url" }}
[units.hr]
[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "{IMAGE_PREFIX}/share/usm-bridge/mappings/email-service-desk.yaml"
interval = "5s"
[instances.hr-mail.settings]
address = "servicedesk@hr.example"
maildir = {{ path = "/srv/mail" }}
[daemon]
listen = "0.0.0.0:{port}"
log_format = "json"
""",
        encoding="utf-8",
    )
    config.chmod(0o644)
    name = f"usm-bridge-test-{uuid.uuid4().hex[:12]}"
    started = _docker(
        "run", "--detach", "--name", name, "--health-interval=2s",
        "--volume", f"{config}:/etc/usm-bridge/usm-bridge.toml:ro",
        "--volume", f"{secrets}:/run/secrets:ro",
        "--volume", f"{mail}:/srv/mail",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        status = "starting"
        deadline = time.monotonic() + HEALTH_DEADLINE
        while status == "starting" and time.monotonic() < deadline:
            time.sleep(1)
            inspected = _docker("inspect", "--format", "{{json .State.Health}}", name)
            assert inspected.returncode == 0, inspected.stderr
            status = json.loads(inspected.stdout)["Status"]
        logs = _docker("logs", name)
        assert status == "healthy", logs.stdout + logs.stderr
        first = json.loads(logs.stderr.splitlines()[0])  # the daemon logs JSON on stderr
        assert first["level"] == "info"
    finally:
        _docker("rm", "--force", "--volumes", name)
