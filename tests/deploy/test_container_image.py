"""The image itself, where a container engine answers (`docker info` succeeds): it builds, runs
as its fixed non-root user, and its HEALTHCHECK turns the container healthy with the
container's config shape (tests/deploy/mailbox-usm-bridge.toml: one mailbox on a Maildir,
since no real tool answers in a test). Elsewhere these skip and say why; the Dockerfile is
still read and its steps run by test_dockerfile.py and test_container_runtime.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_files import IMAGE_MAPPINGS, ROOT, container_config, machine_cannot, mailbox_config

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
    buildx = _docker("buildx", "version")
    if buildx.returncode != 0:
        reason = (buildx.stderr.strip().splitlines() or ["no answer"])[0]
        machine_cannot(f"build with BuildKit, which RUN --mount needs: no buildx ({reason})")
    tag = f"usm-bridge-test:{uuid.uuid4().hex[:12]}"
    built = _docker("buildx", "build", "--load", "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    yield tag
    _docker("image", "rm", "--force", tag)


def test_the_image_runs_as_its_fixed_user(image: str) -> None:
    ran = _docker("run", "--rm", "--entrypoint", "id", image)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:2] == ["uid=10001(usm-bridge)", "gid=10001(usm-bridge)"]


def test_the_healthcheck_turns_the_container_healthy(image: str, tmp_path: Path) -> None:
    listen = container_config()["daemon"]["listen"]
    folder = mailbox_config(tmp_path / "etc", "sqlite:////var/lib/usm-bridge/usm-bridge.db").parent
    name = f"usm-bridge-test-{uuid.uuid4().hex[:12]}"
    started = _docker(
        "run", "--detach", "--name", name, "--health-interval=2s",
        # Beside /etc/usm-bridge, whose mappings link the config names.
        "--volume", f"{folder}:/srv/usm-bridge",
        "--env", "USM_BRIDGE_CONFIG=/srv/usm-bridge/usm-bridge.toml",
        "--env", f"USM_BRIDGE_TEST_MAPPINGS={IMAGE_MAPPINGS}",
        "--env", f"USM_BRIDGE_TEST_LISTEN={listen}",
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
        # The daemon logs one JSON object per line on standard error.
        records = [json.loads(line) for line in logs.stderr.splitlines()]
        assert "listening" in [record.get("event") for record in records]
    finally:
        _docker("rm", "--force", "--volumes", name)
