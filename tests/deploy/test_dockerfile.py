"""The Dockerfile and .dockerignore, read without a container engine: two stages, wheels only
in the runtime, a fixed non-root user, a HEALTHCHECK on the port the container's config
listens on, no secret in the environment, and a build context holding what the COPYs need."""

from __future__ import annotations

import re
import shlex

from deploy_files import (
    IMAGE_MAPPINGS,
    build_context,
    container_config,
    exec_form,
    healthcheck_command,
    mappings_link,
    option,
    stages,
)

from usm_bridge.config import parse_listen


def test_it_is_multi_stage_on_python_3_11_slim() -> None:
    found = stages()
    assert [stage.name for stage in found] == ["builder", "runtime"]
    assert {stage.image for stage in found} == {"python:3.11-slim"}


def test_the_builder_makes_wheels_of_the_core_with_postgresql_and_the_three_connectors() -> None:
    builder = stages()[0]
    argv = builder.run_with("pip", "wheel")
    assert option(argv, "--wheel-dir")
    assert {".[postgresql]", "./connectors/email", "./connectors/jira"} <= set(argv)
    assert "./connectors/servicenow" in argv
    assert "--no-deps" not in argv  # every dependency becomes a wheel for the offline install


def test_the_runtime_installs_only_the_builders_wheels() -> None:
    builder, runtime = stages()
    (mount_run,) = [v for v in runtime.values("RUN") if "pip" in v]
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in mount_run
    argv = runtime.run_with("pip", "install")
    assert "--no-index" in argv
    assert option(argv, "--find-links") == "/wheels"
    assert option(builder.run_with("pip", "wheel"), "--wheel-dir") == "/wheels"
    requirements = [word for word in argv[argv.index("install") + 1 :] if word[0] != "-"]
    assert sorted(requirements) == sorted(
        ["usm-bridge[postgresql]", "usm-bridge-email", "usm-bridge-jira", "usm-bridge-servicenow"]
    )
    # Nothing from the build context reaches the runtime stage but through those wheels.
    assert runtime.values("COPY") == []
    assert runtime.values("ADD") == []


def test_the_final_stage_runs_as_a_fixed_non_root_user() -> None:
    runtime = stages()[-1]
    *_, user = runtime.values("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user}: a numeric UID:GID, fixed"
    assert int(uid) != 0 and int(gid) != 0
    (made,) = [v for v in runtime.values("RUN") if "useradd" in v]
    assert f"--uid {uid}" in made and f"--gid {gid}" in made


def test_the_healthcheck_asks_healthz_on_the_port_the_containers_config_listens_on() -> None:
    command, options = healthcheck_command()
    listen = container_config()["daemon"]["listen"]
    host, port = parse_listen(listen) or ("", 0)
    assert host == "0.0.0.0", "in a container the daemon listens on every interface"
    assert command[:2] == ["python", "-c"]
    urls = re.findall(r"http://[^'\"\s]+", command[2])
    assert urls == [f"http://127.0.0.1:{port}/healthz"]
    assert "urllib.request" in command[2]
    for flag in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert flag in options
    assert str(port) in stages()[-1].values("EXPOSE")


def test_no_secret_is_set_in_the_environment() -> None:
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
    for stage in stages():
        for value in stage.values("ENV") + stage.values("ARG"):
            for word in shlex.split(value):
                name = word.split("=", 1)[0]
                assert not secretish.search(name), f"{stage.name}: {name} looks like a secret"


def test_config_state_entrypoint_and_command() -> None:
    runtime = stages()[-1]
    env = " ".join(runtime.values("ENV"))
    assert "USM_BRIDGE_CONFIG=/etc/usm-bridge/usm-bridge.toml" in shlex.split(env)
    assert exec_form(runtime.values("VOLUME")[-1]) == ["/var/lib/usm-bridge"]
    assert exec_form(runtime.values("ENTRYPOINT")[-1]) == ["usm-bridge"]
    assert exec_form(runtime.values("CMD")[-1]) == ["daemon"]
    assert runtime.values("WORKDIR")[-1] == "/var/lib/usm-bridge"


def test_every_copied_path_is_in_the_build_context_and_not_ignored() -> None:
    context = build_context()
    copied = [shlex.split(value) for stage in stages() for value in stage.values("COPY")]
    assert copied
    for *sources, _target in copied:
        assert not any(s.startswith("--from") for s in sources), sources
        for source in sources:
            assert source == "." or source in context, f"COPY {source}: not in the context"


def test_the_shipped_mappings_are_linked_beside_the_config() -> None:
    script, link = mappings_link()
    assert "shipped_mappings_dir" in script
    (env,) = [v for v in stages()[-1].values("ENV") if "USM_BRIDGE_CONFIG=" in v]
    config_path = env.split("USM_BRIDGE_CONFIG=", 1)[1].split()[0]
    assert link == config_path.rsplit("/", 1)[0] + "/mappings" == IMAGE_MAPPINGS


def test_the_build_context_holds_the_packages_and_nothing_else() -> None:
    context = build_context()
    for needed in (
        "usm_bridge/__init__.py",
        "usm_bridge/py.typed",
        "connectors/email/pyproject.toml",
        "connectors/email/LICENSE",
        "connectors/jira/usm_bridge_jira/__init__.py",
        "connectors/servicenow/README.md",
    ):
        assert needed in context, needed
    left_out = ("tests/", ".venv/", ".git/", "deploy/", "bench/", "examples/", "demo-run/")
    assert not [path for path in context if path.startswith(left_out)]
    assert not [path for path in context if "/tests/" in path or "__pycache__" in path]
    assert not [path for path in context if ".egg-info" in path]
